# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: the network resources every HA master cluster needs.

* the regional reserved external address ``{cluster}-master-ip`` (labelled as the cluster's);
* the firewall rule ``{cluster}-master-https``: TCP to the API servers from the given ranges, plus
  the ranges of GCE's health checkers when those are narrower than everyone;
* the firewall rule ``{cluster}-master-etcd``: etcd traffic from master to master, by network tag: the
  client port 2379 (each member's health is read at its own client URL; etcd asks for a client
  certificate there), the peer port 2380, and the events etcd's peer port 2381 and client port 4002;
* optionally ``{cluster}-master-ssh``: SSH from the given ranges.

Firewall rules take no labels: they are the cluster's by the owner marker in their description.
Everything is read and checked first; then what is missing is made, what drifted is patched
(only the fields that differ) and what matches is left alone. The address is never deleted
unless asked for, and never while anything uses it.
"""

from __future__ import annotations

import ipaddress
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import ComputeApi, GceError, with_fingerprint
from ansible_collections.kubeha.gce.plugins.module_utils._gce.converger import Converger
from ansible_collections.kubeha.gce.plugins.module_utils._gce.names import (
    CLUSTER_LABEL,
    ROLE_LABEL,
    ROLE_MASTER,
    InvalidInput,
    address_name,
    check_name,
    check_region,
    firewall_names,
    has_owner_marker,
    is_master_of,
    master_labels,
    master_tag,
    owner_marker,
    short,
)
from ansible_collections.kubeha.gce.plugins.module_utils._gce.replica import cluster_instances, describe_user

STATES = ("present", "absent")
#: Where Compute Engine's health checkers (and legacy network load balancer checks) send from.
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22", "130.211.0.0/22")
ETCD_PORTS = ("2379-2381", "4002")
SSH_PORT = ("22",)
#: The firewall fields that are compared and patched, in the order they are reported.
FIREWALL_FIELDS = ("allowed", "sourceRanges", "sourceTags", "targetTags", "disabled")


class Rule(t.NamedTuple):
    """One firewall rule as the cluster needs it."""

    name: str
    purpose: str
    ports: tuple[str, ...]
    source_ranges: tuple[str, ...]
    source_tags: tuple[str, ...]
    target_tags: tuple[str, ...]


class Spec(t.NamedTuple):
    cluster: str
    region: str
    state: str
    address_ip: str | None
    adopt_address: bool
    delete_address: bool
    network: str
    https_port: int
    https_source_ranges: tuple[str, ...]
    ssh_source_ranges: tuple[str, ...]
    wait_timeout: int

    @property
    def address(self) -> str:
        return address_name(self.cluster)

    @property
    def tag(self) -> str:
        """The network tag of the cluster's replicas (kube-up's MASTER_TAG)."""
        return master_tag(self.cluster)

    @property
    def marker(self) -> str:
        return owner_marker(self.cluster)

    def description(self, purpose: str) -> str:
        return "kubeha.gce: %s of cluster %s (%s)" % (purpose, self.cluster, self.marker)

    @property
    def firewall_names(self) -> tuple[str, str, str]:
        return firewall_names(self.cluster)

    def rules(self) -> list[Rule]:
        """The firewall rules the cluster needs, in the order they are made."""
        https, etcd, ssh = self.firewall_names
        rules = [
            Rule(https, "HTTPS to the API servers of the masters", (str(self.https_port),), self.https_source_ranges,
                 (), (self.tag,)),
            Rule(etcd, "etcd client and peer traffic between the masters", ETCD_PORTS, (), (self.tag,), (self.tag,)),
        ]
        if self.ssh_source_ranges:
            rules.append(Rule(ssh, "SSH to the masters", SSH_PORT, self.ssh_source_ranges, (), (self.tag,)))
        return rules


def spec_from_params(params: t.Mapping[str, t.Any]) -> Spec:
    """Build and check a :class:`Spec`; raises InvalidInput naming the problem, before any API call."""
    cluster = check_name(params["cluster_name"], "cluster_name")
    check_name(firewall_names(cluster)[0], "the firewall rule name (cluster_name + '-master-https')")
    region = check_region(params["region"])
    address_ip = params.get("address")
    if address_ip:
        try:
            parsed = ipaddress.ip_address(address_ip)
        except ValueError:
            raise InvalidInput("address '%s' is not an IP address; give the external IPv4 address to reserve, or "
                               "leave it out to get any free one" % address_ip) from None
        if parsed.version != 4:
            raise InvalidInput("address '%s' is an IPv6 address; a regional external address is reserved by its "
                               "IPv4 address" % address_ip)
        address_ip = str(parsed)
    network = params["network"] or ""
    if "/" in network:
        check_name(short(network) or "", "network")
    else:
        check_name(network, "network")
    port = params["https_port"]
    if not 1 <= port <= 65535:
        raise InvalidInput("https_port is %d; it must be between 1 and 65535" % port)
    https = _ranges(params.get("https_source_ranges"), "https_source_ranges")
    if not https:
        raise InvalidInput("https_source_ranges is empty; name the ranges that may reach the API servers "
                           "(0.0.0.0/0 for everyone): a rule without sources would admit everyone")
    https = https + tuple(r for r in HEALTH_CHECK_RANGES if not _covered(r, https))
    timeout = params["wait_timeout"]
    if timeout < 1:
        raise InvalidInput("wait_timeout is %d; it must be at least 1 second" % timeout)
    return Spec(
        cluster=cluster, region=region, state=params["state"], address_ip=address_ip,
        adopt_address=params["adopt_address"], delete_address=params["delete_address"], network=network,
        https_port=port, https_source_ranges=https,
        ssh_source_ranges=_ranges(params.get("ssh_source_ranges"), "ssh_source_ranges"), wait_timeout=timeout,
    )


def _ranges(values: t.Iterable[str] | None, option: str) -> tuple[str, ...]:
    """CIDR ranges in their normal form, each once, in the order given."""
    found: list[str] = []
    for value in values or []:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise InvalidInput("%s: '%s' is not a CIDR range (%s)" % (option, value, exc)) from None
        if str(network) not in found:
            found.append(str(network))
    return tuple(found)


def _covered(cidr: str, ranges: t.Iterable[str]) -> bool:
    network = ipaddress.ip_network(cidr)
    for other in ranges:
        given = ipaddress.ip_network(other)
        if given.version == network.version and network.subnet_of(given):  # type: ignore[arg-type]
            return True
    return False


# -- comparing firewall rules ----------------------------------------------------------------------------

def _normal_range(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def _normal_ports(ports: t.Iterable[str]) -> tuple[str, ...]:
    """``["443-443", "22"]`` -> ``("22", "443")``."""
    found = set()
    for port in ports:
        low, _sep, high = str(port).partition("-")
        found.add(low if not high or high == low else "%s-%s" % (low, high))
    return tuple(sorted(found))


def normal_firewall(firewall: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The compared fields of a firewall rule in a form that compares equal however GCE orders them."""
    return {
        "allowed": sorted((str(a.get("IPProtocol", "")).lower(), _normal_ports(a.get("ports") or []))
                          for a in firewall.get("allowed") or []),
        "sourceRanges": sorted({_normal_range(r) for r in firewall.get("sourceRanges") or []}),
        "sourceTags": sorted(set(firewall.get("sourceTags") or [])),
        "targetTags": sorted(set(firewall.get("targetTags") or [])),
        "disabled": bool(firewall.get("disabled", False)),
    }


def firewall_view(firewall: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """A firewall rule as the module returns it."""
    return {
        "name": firewall.get("name"),
        "direction": firewall.get("direction", "INGRESS"),
        "allowed": [{"protocol": a.get("IPProtocol"), "ports": list(a.get("ports") or [])}
                    for a in firewall.get("allowed") or []],
        "source_ranges": list(firewall.get("sourceRanges") or []),
        "source_tags": list(firewall.get("sourceTags") or []),
        "target_tags": list(firewall.get("targetTags") or []),
        "self_link": firewall.get("selfLink"),
    }


def address_view(address: t.Mapping[str, t.Any] | None) -> dict[str, t.Any] | None:
    """The reserved address as the module returns it; ``None`` when there is none."""
    if address is None:
        return None
    return {"name": address.get("name"), "ip": address.get("address"), "self_link": address.get("selfLink"),
            "users": list(address.get("users") or [])}


# -- the network resources -----------------------------------------------------------------------------

class MasterNetwork(Converger):
    """Reads the address and the firewall rules, checks everything, then makes only what differs."""

    def __init__(self, api: ComputeApi, spec: Spec, check_mode: bool = False,
                 warn: t.Callable[[str], None] = lambda msg: None) -> None:
        super().__init__(api, spec, check_mode, warn)
        self.address: dict[str, t.Any] | None = None
        self.firewalls: dict[str, dict[str, t.Any]] = {}

    # -- reading ------------------------------------------------------------------------------------------
    def read(self) -> None:
        spec = self.spec
        self.address = self.api.get("addresses", region=spec.region, address=spec.address)
        self.firewalls = {}
        for name in spec.firewall_names:
            firewall = self.api.get("firewalls", firewall=name)
            if firewall is not None:
                self.firewalls[name] = firewall

    def check(self) -> None:
        """Everything that would make a change fail or touch what is not the cluster's, before any change."""
        spec = self.spec
        for name, firewall in sorted(self.firewalls.items()):
            if not has_owner_marker(firewall, spec.cluster):
                raise GceError("firewall '%s' exists but was not made by kubeha.gce for cluster '%s' (no %s in its "
                               "description); refusing to manage it: rename or delete it, or use another "
                               "cluster_name" % (name, spec.cluster, spec.marker), status=409, reason="notOwned")
        if spec.state == "present":
            self._check_address_present()
            for rule in spec.rules():
                if rule.name in self.firewalls:
                    self._check_immutable(self.firewalls[rule.name])
        elif spec.delete_address and self.address is not None:
            self._check_address_deletable()

    def _address_label(self, quoted: bool = True) -> str:
        return "address %s (%s%s)" % ("'%s'" % self.spec.address if quoted else self.spec.address, self.spec.region,
                                      ", %s" % self.address["address"] if self.address else "")

    def _address_is_ours(self) -> bool:
        address = self.address or {}
        return is_master_of(address, self.spec.cluster) or has_owner_marker(address, self.spec.cluster)

    def _check_address_present(self) -> None:
        spec = self.spec
        address = self.address
        if address is None:
            return
        if address.get("addressType", "EXTERNAL") != "EXTERNAL":
            raise GceError("%s is an internal address; the API servers need an external one: delete it or use "
                           "another cluster_name" % self._address_label(), status=400, reason="invalid")
        if spec.address_ip and address.get("address") != spec.address_ip:
            raise GceError("%s has IP %s, the task asks for %s; a reserved address keeps its IP: leave out address "
                           "or give %s" % (self._address_label(), address.get("address"), spec.address_ip,
                                           address.get("address")), status=409, reason="invalid")
        if self._address_is_ours():
            return
        labels = address.get("labels") or {}
        found = "its labels %s=%s, %s=%s" % (CLUSTER_LABEL, labels.get(CLUSTER_LABEL, "<unset>"),
                                             ROLE_LABEL, labels.get(ROLE_LABEL, "<unset>"))
        if labels.get(CLUSTER_LABEL, spec.cluster) != spec.cluster or labels.get(ROLE_LABEL, ROLE_MASTER) != ROLE_MASTER:
            raise GceError("%s belongs to something else (%s), not to the masters of cluster '%s'; refusing to take "
                           "it: use another cluster_name" % (self._address_label(), found, spec.cluster),
                           status=409, reason="notOwned")
        if not spec.adopt_address:
            raise GceError("%s exists but is not the reserved address of cluster '%s' (%s); set adopt_address=true "
                           "to make it the cluster's (it gets the cluster's labels and keeps its IP), or delete it, "
                           "or use another cluster_name" % (self._address_label(), spec.cluster, found),
                           status=409, reason="notOwned")

    def _check_address_deletable(self) -> None:
        spec = self.spec
        address = self.address or {}
        if not self._address_is_ours():
            raise GceError("%s is not the reserved address of cluster '%s' (it has neither the cluster's labels nor "
                           "%s in its description); not deleting it"
                           % (self._address_label(), spec.cluster, spec.marker), status=409, reason="notOwned")
        users = address.get("users") or []
        if users:
            raise GceError("%s is in use by %s; not deleting it: the address is deleted only when nothing uses it"
                           % (self._address_label(), ", ".join(describe_user(u, with_zone=True) for u in users)),
                           status=409, reason="resourceInUseByAnotherResource")
        replicas = cluster_instances(self.api, spec.cluster, spec.region)
        if replicas:
            names = sorted("%s (%s)" % (i.get("name"), short(i.get("zone"))) for i in replicas)
            raise GceError("%s is the reserved address of cluster '%s', which still has %d replica(s) in region %s "
                           "(%s); not deleting it: it is deleted only after the last replica"
                           % (self._address_label(), spec.cluster, len(names), spec.region, ", ".join(names)),
                           status=409, reason="resourceInUseByAnotherResource")

    def _check_immutable(self, firewall: t.Mapping[str, t.Any]) -> None:
        spec = self.spec
        name = firewall.get("name")
        network = short(firewall.get("network")) or "default"
        if network != short(spec.network):
            raise GceError("firewall '%s' is on network '%s', the task asks for network '%s'; Compute Engine cannot "
                           "move a firewall rule to another network: delete it (state=absent) and run again"
                           % (name, network, short(spec.network)), status=409, reason="immutableField")
        direction = firewall.get("direction", "INGRESS")
        if direction != "INGRESS" or firewall.get("denied"):
            raise GceError("firewall '%s' is an %s rule that %s, the cluster needs an INGRESS rule that allows; "
                           "Compute Engine cannot change that: delete it (state=absent) and run again"
                           % (name, direction, "denies" if firewall.get("denied") else "allows"),
                           status=409, reason="immutableField")

    # -- doing -----------------------------------------------------------------------------------------------
    def converge(self) -> None:
        if self.spec.state == "present":
            self._ensure_address()
            wanted = {rule.name for rule in self.spec.rules()}
            for rule in self.spec.rules():
                self._ensure_firewall(rule)
            for name in sorted(set(self.firewalls) - wanted):
                self._delete_firewall(name)
        else:
            for name in sorted(self.firewalls):
                self._delete_firewall(name)
            if self.spec.delete_address and self.address is not None:
                self._act("delete %s" % self._address_label(quoted=False), lambda: self.api.delete(
                    "addresses", self.spec.wait_timeout, "deleting address %s" % self.spec.address,
                    region=self.spec.region, address=self.spec.address))

    # address
    def _ensure_address(self) -> None:
        spec = self.spec
        labels = ", ".join("%s=%s" % item for item in sorted(master_labels(spec.cluster).items()))
        if self.address is None:
            at = " at %s" % spec.address_ip if spec.address_ip else ""
            self._act("reserve address %s (%s)%s" % (spec.address, spec.region, at), self._reserve)
            self._act("label address %s (%s) with %s" % (spec.address, spec.region, labels), lambda: self._label(None))
        elif not is_master_of(self.address, spec.cluster):
            adopt = "" if has_owner_marker(self.address, spec.cluster) else "adopt and "
            self._act("%slabel %s with %s" % (adopt, self._address_label(quoted=False), labels), lambda: self._label(self.address))

    def _reserve(self) -> None:
        spec = self.spec
        body = {"name": spec.address, "description": spec.description("reserved address of the API servers"),
                "addressType": "EXTERNAL"}
        if spec.address_ip:
            body["address"] = spec.address_ip
        self.api.insert("addresses", body, spec.wait_timeout, "reserving address %s" % spec.address,
                        region=spec.region)

    def _label(self, address: t.Mapping[str, t.Any] | None) -> None:
        """Give the address the cluster's labels (keeping others); Compute Engine sets labels of an address only
        through setLabels, with the fingerprint of the labels it has."""
        spec = self.spec

        def read() -> dict[str, t.Any] | None:
            return self.api.get("addresses", region=spec.region, address=spec.address)

        def apply(fresh: t.Mapping[str, t.Any]) -> None:
            current = dict(fresh.get("labels") or {})
            wanted = dict(current, **master_labels(spec.cluster))
            if wanted == current:
                return
            body = {"labels": wanted, "labelFingerprint": fresh.get("labelFingerprint")}
            self._wait(self.api.call("addresses", "setLabels", region=spec.region, resource=spec.address, body=body),
                       "setting the labels of address %s" % spec.address)

        current = address if address is not None else read()
        if current is None:
            raise GceError("address '%s' (%s) disappeared while it was being labelled" % (spec.address, spec.region),
                           status=404, reason="notFound")
        with_fingerprint(current, read, apply)

    # firewalls
    def _firewall_body(self, rule: Rule) -> dict[str, t.Any]:
        spec = self.spec
        network = spec.network if "/" in spec.network else "projects/%s/global/networks/%s" % (
            self.api.project, spec.network)
        body: dict[str, t.Any] = {"name": rule.name, "description": spec.description(rule.purpose), "network": network,
                                  "direction": "INGRESS", "allowed": [{"IPProtocol": "tcp", "ports": list(rule.ports)}]}
        if rule.source_ranges:
            body["sourceRanges"] = list(rule.source_ranges)
        if rule.source_tags:
            body["sourceTags"] = list(rule.source_tags)
        body["targetTags"] = list(rule.target_tags)
        return body

    def _ensure_firewall(self, rule: Rule) -> None:
        body = self._firewall_body(rule)
        current = self.firewalls.get(rule.name)
        label = "firewall %s" % rule.name
        if current is None:
            self._act("create %s (tcp:%s to tag %s)" % (label, ",".join(rule.ports), ", ".join(rule.target_tags)),
                      lambda: self.api.insert("firewalls", body, self.spec.wait_timeout, "creating %s" % label))
            return
        fields = self.differs(current, body)
        if fields:
            patch: dict[str, t.Any] = {"name": rule.name}
            for field in fields:
                patch[field] = body.get(field, False if field == "disabled" else [])
            self._act("update %s (%s)" % (label, ", ".join(fields)), lambda: self._wait(
                self.api.call("firewalls", "patch", firewall=rule.name, body=patch), "updating %s" % label))

    @staticmethod
    def differs(current: t.Mapping[str, t.Any], wanted: t.Mapping[str, t.Any]) -> list[str]:
        """The compared fields in which ``current`` is not ``wanted``."""
        now, want = normal_firewall(current), normal_firewall(wanted)
        return [field for field in FIREWALL_FIELDS if now[field] != want[field]]

    def _delete_firewall(self, name: str) -> None:
        self._act("delete firewall %s" % name, lambda: self.api.delete(
            "firewalls", self.spec.wait_timeout, "deleting firewall %s" % name, firewall=name))

    # -- the result ------------------------------------------------------------------------------------------
    def view(self) -> dict[str, t.Any]:
        return {"address": address_view(self.address),
                "firewalls": {name: firewall_view(f) for name, f in sorted(self.firewalls.items())}}

    def predicted_view(self) -> dict[str, t.Any]:
        spec = self.spec
        address = address_view(self.address)
        firewalls: dict[str, dict[str, t.Any]] = {}
        if spec.state == "present":
            if address is None:
                address = {"name": spec.address, "ip": spec.address_ip, "self_link": None, "users": []}
            for rule in spec.rules():
                body = self._firewall_body(rule)
                predicted = dict(self.firewalls.get(rule.name) or {"name": rule.name, "direction": "INGRESS"})
                predicted.update({field: body.get(field, False if field == "disabled" else [])
                                  for field in FIREWALL_FIELDS})
                firewalls[rule.name] = firewall_view(predicted)
        elif spec.delete_address:
            address = None
        return {"address": address, "firewalls": dict(sorted(firewalls.items()))}

    def run(self) -> dict[str, t.Any]:
        self.read()
        self.check()
        before = self.view()
        self.converge()
        if not self.actions:
            after = before
        elif self.check_mode:
            after = self.predicted_view()
        else:
            self.read()
            after = self.view()
        return {
            "changed": bool(self.actions), "actions": self.actions,
            "address": after["address"], "firewalls": list(after["firewalls"].values()),
            "diff": {"before": before, "after": after},
        }


__all__ = ["MasterNetwork", "Spec", "spec_from_params", "STATES", "HEALTH_CHECK_RANGES"]
