# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab network's desired state and its nftables ruleset (a pure function).

Desired state (``NetworkState``, or the same as a dict for ``NetworkState.from_dict``)::

    {
      "instances": [{
          "name": "m1",                 # the key used with Host.cut()/restore()
          "internal_ip": "10.132.0.2",
          "nat_ip": "203.0.113.7",      # external IP (one-to-one NAT) or None
          "tags": ["kube-master"],      # network tags
          "service_accounts": ["sa@p.iam.gserviceaccount.com"],
          "network": "default",         # VPC network name (or its URL)
          "cut": false,                 # network cut: nothing in or out
          "running": true,              # not running: no traffic at all
      }],
      "firewalls": [ ... ],             # Compute Engine firewall resources, as the API returns them
      "forwarding_rules": [{
          "name": "c-master",
          "ip": "203.0.113.10",
          "protocol": "TCP",            # TCP, UDP, SCTP or L3_DEFAULT (all)
          "ports": ["443"],             # "N" or "N-M" items; empty: all ports
          "backends": ["10.132.0.2"],   # internal IPs of the healthy backends; empty: dropped
      }],
    }

Semantics, as on Compute Engine:

* Ingress to an instance is denied unless a rule allows it; egress is allowed
  unless a rule denies it. Rules apply in ``priority`` order (default 1000);
  at equal priority a deny rule wins. Disabled rules are skipped.
  ``targetTags``/``targetServiceAccounts`` select instances (neither: all
  instances of the rule's network). Replies of allowed connections pass.
* ``sourceRanges`` match the source address; ``sourceTags`` and
  ``sourceServiceAccounts`` match instances of the same network talking to
  internal IPs only. An instance reaching another through an external address
  (NAT IP or forwarding rule) is seen from its own external IP, and an
  instance without one reaches no external address (no Cloud NAT here).
* Traffic from the lab namespace itself comes from "the internet":
  ``192.0.2.1`` by default, ``35.191.0.1``/``130.211.0.1`` for health checks.
* Forwarding rules are passthrough: the backend sees the client's address,
  each connection sticks to the backend chosen by a hash of its source.
  (Unlike Compute Engine, the destination address is rewritten to the
  backend's internal IP.)
* The metadata server (169.254.169.254) is always reachable, even when cut.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .config import METADATA_IP

TABLE = "kubeha_lab"
L4_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
OTHER_PROTOCOLS = {"icmp": 1, "esp": 50, "ah": 51, "ipip": 4, "gre": 47}
DEFAULT_PRIORITY = 1000


@dataclasses.dataclass(frozen=True)
class Instance:
    """One instance as the network sees it."""

    name: str
    internal_ip: str
    nat_ip: str | None = None
    tags: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    network: str = "default"
    cut: bool = False
    running: bool = True

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.internal_ip)
        if self.nat_ip is not None:
            ipaddress.IPv4Address(self.nat_ip)


@dataclasses.dataclass(frozen=True)
class ForwardingRule:
    """A passthrough network load balancer frontend."""

    name: str
    ip: str
    protocol: str = "TCP"
    ports: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ipaddress.IPv4Address(self.ip)
        for backend in self.backends:
            ipaddress.IPv4Address(backend)
        if self.protocol.upper() not in ("TCP", "UDP", "SCTP", "L3_DEFAULT"):
            raise ValueError(f"forwarding rule {self.name}: unsupported protocol {self.protocol}")
        for port in self.ports:
            parse_port(port)


@dataclasses.dataclass(frozen=True)
class NetworkState:
    """Everything the lab network enforces."""

    instances: tuple[Instance, ...] = ()
    firewalls: tuple[Mapping[str, Any], ...] = ()
    forwarding_rules: tuple[ForwardingRule, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkState:
        """Build from the dict form described in the module docstring."""
        instances = tuple(
            Instance(
                name=str(item["name"]), internal_ip=str(item["internal_ip"]), nat_ip=item.get("nat_ip") or None,
                tags=tuple(item.get("tags") or ()), service_accounts=tuple(item.get("service_accounts") or ()),
                network=network_name(item.get("network") or "default"), cut=bool(item.get("cut", False)),
                running=bool(item.get("running", True)),
            )
            for item in data.get("instances") or ()
        )
        rules = tuple(
            ForwardingRule(
                name=str(item["name"]), ip=str(item["ip"]), protocol=str(item.get("protocol") or "TCP"),
                ports=tuple(str(p) for p in item.get("ports") or ()), backends=tuple(item.get("backends") or ()),
            )
            for item in data.get("forwarding_rules") or ()
        )
        return cls(instances=instances, firewalls=tuple(data.get("firewalls") or ()), forwarding_rules=rules)

    def to_dict(self) -> dict[str, Any]:
        """The dict form (JSON-serialisable)."""
        return {
            "instances": [dataclasses.asdict(i) for i in self.instances],
            "firewalls": [dict(f) for f in self.firewalls],
            "forwarding_rules": [dataclasses.asdict(r) for r in self.forwarding_rules],
        }

    def with_cuts(self, cut_names: Iterable[str]) -> NetworkState:
        """This state with the named instances cut as well."""
        names = set(cut_names)
        instances = tuple(dataclasses.replace(i, cut=i.cut or i.name in names) for i in self.instances)
        return dataclasses.replace(self, instances=instances)


def network_name(value: str) -> str:
    """'default' from 'default' or from a network URL."""
    return value.rstrip("/").rsplit("/", 1)[-1]


def parse_port(port: str) -> tuple[int, int]:
    """(low, high) of "N" or "N-M"; ValueError when malformed."""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", str(port).strip())
    if not match:
        raise ValueError(f"invalid port or port range {port!r}")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not 0 <= low <= high <= 65535:
        raise ValueError(f"invalid port or port range {port!r}")
    return low, high


def _ports(ports: Sequence[str]) -> str:
    """nft set of ports."""
    items = []
    for port in ports:
        low, high = parse_port(port)
        items.append(str(low) if low == high else f"{low}-{high}")
    return "{ " + ", ".join(items) + " }"


def _addr_set(addresses: Iterable[str]) -> str:
    """nft anonymous set of addresses or prefixes, merged so intervals never overlap."""
    networks = [ipaddress.ip_network(a, strict=False) for a in addresses]
    merged = ipaddress.collapse_addresses(n for n in networks if n.version == 4)
    items = [str(n.network_address) if n.prefixlen == 32 else str(n) for n in merged]
    return "{ " + ", ".join(items) + " }"


def _ip_set(addresses: Iterable[str]) -> str:
    """nft anonymous set of single addresses, sorted."""
    return "{ " + ", ".join(sorted(set(addresses), key=ipaddress.IPv4Address)) + " }"


def _ipv4_ranges(ranges: Iterable[str]) -> list[str]:
    """The IPv4 entries of a list of CIDR ranges (IPv6 ones cannot occur in the lab)."""
    return [r for r in ranges if ipaddress.ip_network(r, strict=False).version == 4]


def _in_ranges(address: str, ranges: Iterable[str]) -> bool:
    """True when address lies in one of the ranges."""
    ip = ipaddress.IPv4Address(address)
    return any(ip in ipaddress.ip_network(r, strict=False) for r in _ipv4_ranges(ranges))


def _comment(text: str) -> str:
    """nft comment clause (only safe characters)."""
    return 'comment "' + re.sub(r"[^A-Za-z0-9 ._:/-]", "_", text)[:120] + '"'


def protocol_matches(entries: Sequence[Mapping[str, Any]], rule: str) -> list[str]:
    """One nft match per allowed/denied entry ({IPProtocol, ports}); '' matches every protocol."""
    matches = []
    for entry in entries:
        proto = str(entry.get("IPProtocol", "all")).lower()
        ports = [str(p) for p in entry.get("ports") or ()]
        if proto == "all":
            if ports:
                raise ValueError(f"firewall {rule}: ports need a protocol")
            matches.append("")
            continue
        number = int(proto) if proto.isdigit() else L4_PROTOCOLS.get(proto, OTHER_PROTOCOLS.get(proto))
        if number is None:
            raise ValueError(f"firewall {rule}: unknown protocol {proto}")
        match = f"meta l4proto {number}"
        if ports:
            if number not in L4_PROTOCOLS.values():
                raise ValueError(f"firewall {rule}: ports given for protocol {proto}")
            match += f" th dport {_ports(ports)}"
        matches.append(match)
    return matches


def _chain_id(address: str) -> str:
    """Chain name part for an instance address."""
    return address.replace(".", "_")


def _applies_to(firewall: Mapping[str, Any], instance: Instance) -> bool:
    """True when the firewall rule targets instance."""
    if firewall.get("disabled"):
        return False
    if firewall.get("network") and network_name(str(firewall["network"])) != instance.network:
        return False
    target_tags = firewall.get("targetTags") or ()
    target_accounts = firewall.get("targetServiceAccounts") or ()
    if target_tags:
        return bool(set(target_tags) & set(instance.tags))
    if target_accounts:
        return bool(set(target_accounts) & set(instance.service_accounts))
    return True


def _ordered(firewalls: Iterable[Mapping[str, Any]], direction: str, instance: Instance) -> list[Mapping[str, Any]]:
    """Rules of direction targeting instance in evaluation order."""
    chosen = [f for f in firewalls if str(f.get("direction", "INGRESS")).upper() == direction and _applies_to(f, instance)]
    return sorted(chosen, key=lambda f: (int(f.get("priority", DEFAULT_PRIORITY)), 0 if f.get("denied") else 1, str(f.get("name", ""))))


def _source_sets(firewall: Mapping[str, Any], target: Instance, active: Sequence[Instance]) -> tuple[list[str], list[str], list[str]]:
    """(internal sources, instances seen via their external IP, other source ranges) a rule allows."""
    ranges = list(firewall.get("sourceRanges") or ())
    tags = set(firewall.get("sourceTags") or ())
    accounts = set(firewall.get("sourceServiceAccounts") or ())
    if not ranges and not tags and not accounts:
        ranges = ["0.0.0.0/0"]
    direct = [
        i.internal_ip for i in active
        if i.network == target.network
        and (_in_ranges(i.internal_ip, ranges) or tags & set(i.tags) or accounts & set(i.service_accounts))
    ]
    via_external = [i.internal_ip for i in active if i.nat_ip and _in_ranges(i.nat_ip, ranges)]
    return direct, via_external, _ipv4_ranges(ranges)


def ingress_chain(target: Instance, firewalls: Sequence[Mapping[str, Any]], active: Sequence[Instance]) -> list[str]:
    """Rules of the chain that decides which new connections may reach target."""
    lines = []
    for firewall in _ordered(firewalls, "INGRESS", target):
        name = str(firewall.get("name", "?"))
        verdict = "drop" if firewall.get("denied") else "accept"
        entries = firewall.get("denied") or firewall.get("allowed") or ()
        direct, via_external, ranges = _source_sets(firewall, target, active)
        sources = []
        if direct:
            sources.append(f"ct status & dnat == 0 ip saddr {_ip_set(direct)}")
        if via_external:
            sources.append(f"ct status dnat ip saddr {_ip_set(via_external)}")
        if ranges:
            match_ranges = "" if _addr_set(ranges) == "{ 0.0.0.0/0 }" else f" ip saddr {_addr_set(ranges)}"
            sources.append(f"ip saddr != @instances{match_ranges}")
        for source in sources:
            for proto in protocol_matches(entries, name):
                lines.append(" ".join(p for p in (source, proto, "counter", verdict, _comment(f"firewall {name}")) if p))
    lines.append(f"counter drop {_comment('implied deny ingress')}")
    return lines


def egress_chain(source: Instance, firewalls: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rules of the chain that decides where source may open connections (falls through: allowed)."""
    lines = []
    for firewall in _ordered(firewalls, "EGRESS", source):
        name = str(firewall.get("name", "?"))
        verdict = "drop" if firewall.get("denied") else "return"
        entries = firewall.get("denied") or firewall.get("allowed") or ()
        ranges = _ipv4_ranges(firewall.get("destinationRanges") or ["0.0.0.0/0"])
        if not ranges:
            continue
        dest = "" if _addr_set(ranges) == "{ 0.0.0.0/0 }" else f"ct original ip daddr {_addr_set(ranges)}"
        for proto in protocol_matches(entries, name):
            lines.append(" ".join(p for p in (dest, proto, "counter", verdict, _comment(f"firewall {name}")) if p))
    return lines


def _lb_lines(rule: ForwardingRule) -> list[str]:
    """DNAT of one forwarding rule to its backends (nothing when it has none: the traffic is dropped)."""
    backends = sorted(set(rule.backends), key=ipaddress.IPv4Address)
    if not backends:
        return []
    protocol = rule.protocol.lower()
    match = f"ip daddr {rule.ip}"
    if protocol != "l3_default":
        match += f" meta l4proto {L4_PROTOCOLS[protocol]}"
        if rule.ports:
            match += f" th dport {_ports(rule.ports)}"
    if len(backends) == 1:
        target = backends[0]
    else:
        key = "ip saddr" if protocol == "l3_default" else "ip saddr . th sport"
        seed = int(hashlib.sha256(rule.name.encode()).hexdigest()[:8], 16)
        mapping = ", ".join(f"{n} : {b}" for n, b in enumerate(backends))
        target = f"jhash {key} mod {len(backends)} seed {seed:#x} map {{ {mapping} }}"
    return [f"{match} dnat to {target} {_comment(f'forwarding rule {rule.name}')}"]


def _vmap(pairs: Sequence[tuple[str, str]]) -> str:
    """nft verdict map literal."""
    return "{ " + ", ".join(f"{k} : {v}" for k, v in pairs) + " }"


def _set_decl(name: str, addresses: Iterable[str]) -> list[str]:
    """A named IPv4 address set."""
    items = sorted(set(addresses), key=ipaddress.IPv4Address)
    lines = [f"\tset {name} {{", "\t\ttype ipv4_addr"]
    if items:
        lines.append(f"\t\telements = {{ {', '.join(items)} }}")
    return lines + ["\t}"]


def _chain(name: str, hook: str | None, rules: Sequence[str]) -> list[str]:
    """A chain (base chain when hook is "TYPE HOOK PRIORITY POLICY")."""
    lines = [f"\tchain {name} {{"]
    if hook:
        kind, hook_name, priority, policy = hook.split()
        lines.append(f"\t\ttype {kind} hook {hook_name} priority {priority}; policy {policy};")
    lines += [f"\t\t{rule}" for rule in rules]
    return lines + ["\t}"]


def render(state: NetworkState, table: str = TABLE) -> str:
    """The lab's table for state, as one `nft -f` script that replaces the previous one atomically."""
    active = [i for i in state.instances if i.running]
    firewalls = list(state.firewalls)
    cut = [i.internal_ip for i in active if i.cut]
    no_external = [i.internal_ip for i in active if not i.nat_ip]
    nat = [(i.nat_ip, i.internal_ip) for i in active if i.nat_ip]
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{"]
    lines += _set_decl("instances", [i.internal_ip for i in active])
    lines += _set_decl("cut", cut)
    lines += _set_decl("no_external", no_external)
    ingress = [(i.internal_ip, f"jump in_{_chain_id(i.internal_ip)}") for i in active]
    egress = []
    for instance in active:
        lines += _chain(f"in_{_chain_id(instance.internal_ip)}", None, ingress_chain(instance, firewalls, active))
        rules = egress_chain(instance, firewalls)
        if rules:
            lines += _chain(f"eg_{_chain_id(instance.internal_ip)}", None, rules)
            egress.append((instance.internal_ip, f"jump eg_{_chain_id(instance.internal_ip)}"))
    lines += _chain("forward", "filter forward 0 drop", _forward_rules(ingress, egress))
    lines += _chain("output", "filter output 0 accept", _output_rules(ingress))
    lines += _chain("input", "filter input 0 accept", _input_rules(egress))
    dnat = [line for rule in state.forwarding_rules for line in _lb_lines(rule)]
    if nat:
        dnat.append(f"dnat to ip daddr map {_vmap(nat)} {_comment('external IPs')}")
    lines += _chain("nat_prerouting", "nat prerouting -100 accept", dnat)
    lines += _chain("nat_output", "nat output -100 accept", dnat)
    snat = [f"ct status dnat snat to ip saddr map {_vmap([(b, a) for a, b in nat])}"] if nat else []
    lines += _chain("nat_postrouting", "nat postrouting 100 accept", snat)
    snat_in = [f"ip daddr != {METADATA_IP} snat to ip saddr map {_vmap([(b, a) for a, b in nat])}"] if nat else []
    lines += _chain("nat_input", "nat input 100 accept", snat_in)
    return "\n".join(lines + ["}"]) + "\n"


def _forward_rules(ingress: Sequence[tuple[str, str]], egress: Sequence[tuple[str, str]]) -> list[str]:
    """Traffic between instances and through external addresses."""
    rules = [
        "ip saddr @cut counter drop comment \"network cut\"",
        "ip daddr @cut counter drop comment \"network cut\"",
        "ct state established,related accept",
        "ct state invalid drop",
        "ct status dnat ip saddr @no_external counter drop comment \"no external IP\"",
    ]
    if egress:
        rules.append(f"ip saddr vmap {_vmap(egress)}")
    if ingress:
        rules.append(f"ip daddr vmap {_vmap(ingress)}")
    return rules


def _output_rules(ingress: Sequence[tuple[str, str]]) -> list[str]:
    """Traffic from the lab namespace (the internet, health checkers) to instances."""
    rules = [
        f"ct original ip daddr {METADATA_IP} accept",
        "ip daddr @cut counter drop comment \"network cut\"",
        "ct state established,related accept",
    ]
    if ingress:
        rules.append(f"ip daddr vmap {_vmap(ingress)}")
    return rules


def _input_rules(egress: Sequence[tuple[str, str]]) -> list[str]:
    """Traffic from instances to the lab namespace: the metadata server always, the rest like the internet."""
    rules = [
        f"ip daddr {METADATA_IP} accept",
        "ip saddr @cut counter drop comment \"network cut\"",
        "ct state established,related accept",
        "ip saddr @no_external counter drop comment \"no external IP\"",
    ]
    if egress:
        rules.append(f"ip saddr vmap {_vmap(egress)}")
    return rules
