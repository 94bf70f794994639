# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab network's nftables renderer (a pure function; only the last test needs root)."""
from __future__ import annotations

import os
import re
import subprocess
import uuid
from typing import Any

import pytest

from kubeha_lab.host import ForwardingRule, Instance, NetworkState, render
from kubeha_lab.host.nft import parse_port, protocol_matches

M1 = Instance("m1", "10.132.0.2", "203.0.113.2", tags=("master",), service_accounts=("sa@p.iam.gserviceaccount.com",))
M2 = Instance("m2", "10.132.0.3", "203.0.113.3", tags=("master",))
NODE = Instance("node", "10.132.0.9", None, tags=("node",))
OTHER_NET = Instance("x", "10.140.0.2", "203.0.113.9", tags=("master",), network="other")


def firewall(name: str, **fields: Any) -> dict[str, Any]:
    """A firewall resource as the API returns it (allow tcp:2380 from 0.0.0.0/0 unless told otherwise)."""
    base: dict[str, Any] = {"name": name, "network": "https://www.googleapis.com/compute/v1/projects/p/global/networks/default",
                            "direction": "INGRESS", "priority": 1000}
    if "denied" not in fields:
        base["allowed"] = [{"IPProtocol": "tcp", "ports": ["2380"]}]
    base.update(fields)
    return base


def chains(state: NetworkState) -> dict[str, list[str]]:
    """{chain: [rules]} of the rendered table (base chain headers left out)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in render(state).splitlines():
        line = line.strip()
        match = re.match(r"chain (\S+) \{", line)
        if match:
            current = found.setdefault(match.group(1), [])
        elif line == "}":
            current = None
        elif current is not None and not line.startswith("type "):
            current.append(line)
    return found


def rules_of(state: NetworkState, chain: str, name: str) -> list[str]:
    """Rules in chain that come from firewall name."""
    return [r for r in chains(state)[chain] if f'"firewall {name}"' in r]


def test_implied_deny_and_priority_order() -> None:
    """Rules run in priority order, deny first at equal priority, implied deny last."""
    state = NetworkState(instances=(M1, M2), firewalls=(
        firewall("late", priority=2000),
        firewall("deny-same", priority=1000, denied=[{"IPProtocol": "tcp", "ports": ["2380"]}]),
        firewall("allow-same", priority=1000),
        firewall("early", priority=10),
    ))
    rules = chains(state)["in_10_132_0_2"]
    order = [re.search(r'"firewall (\S+)"', r).group(1) for r in rules if "firewall" in r]
    assert order == sorted(order, key=["early", "deny-same", "allow-same", "late"].index)
    assert rules[-1].startswith("counter drop") and "implied deny ingress" in rules[-1]
    assert all(r.split(" counter ")[1].startswith("drop") for r in rules if '"firewall deny-same"' in r)


def test_target_tags_service_accounts_network_and_disabled() -> None:
    """A rule reaches only the instances it targets, in its own network; disabled rules do nothing."""
    state = NetworkState(instances=(M1, NODE, OTHER_NET), firewalls=(
        firewall("to-masters", targetTags=["master"]),
        firewall("to-sa", targetServiceAccounts=["sa@p.iam.gserviceaccount.com"]),
        firewall("to-all"),
        firewall("off", disabled=True),
    ))
    assert rules_of(state, "in_10_132_0_2", "to-masters") and rules_of(state, "in_10_132_0_2", "to-sa")
    assert not rules_of(state, "in_10_132_0_9", "to-masters") and not rules_of(state, "in_10_132_0_9", "to-sa")
    assert rules_of(state, "in_10_132_0_9", "to-all")
    assert not rules_of(state, "in_10_140_0_2", "to-masters"), "another network"
    assert not any("firewall off" in r for rules in chains(state).values() for r in rules)


def test_source_tags_match_internal_traffic_only() -> None:
    """sourceTags become the tagged instances' internal IPs for direct (not NATed) traffic."""
    state = NetworkState(instances=(M1, M2, NODE, OTHER_NET), firewalls=(firewall("etcd", sourceTags=["master"]),))
    rules = rules_of(state, "in_10_132_0_3", "etcd")
    assert rules == [
        'ct status & dnat == 0 ip saddr { 10.132.0.2, 10.132.0.3 } meta l4proto 6 th dport { 2380 } counter accept '
        'comment "firewall etcd"'
    ]


def test_source_ranges_cover_internal_external_and_internet_sources() -> None:
    """sourceRanges match internal sources directly, instances through their external IP, and other sources."""
    state = NetworkState(instances=(M1, M2, NODE), firewalls=(
        firewall("internal", sourceRanges=["10.128.0.0/9"]),
        firewall("public", sourceRanges=["203.0.113.0/25", "198.51.100.0/24", "::/0"]),
    ))
    internal = rules_of(state, "in_10_132_0_2", "internal")
    assert internal[0].startswith("ct status & dnat == 0 ip saddr { 10.132.0.2, 10.132.0.3, 10.132.0.9 }")
    assert internal[1].startswith("ip saddr != @instances ip saddr { 10.128.0.0/9 }")
    assert len(internal) == 2
    public = rules_of(state, "in_10_132_0_2", "public")
    assert public[0].startswith("ct status dnat ip saddr { 10.132.0.2, 10.132.0.3 }"), "seen from their external IPs"
    assert public[1].startswith("ip saddr != @instances ip saddr { 198.51.100.0/24, 203.0.113.0/25 }")


def test_no_source_means_everywhere_and_protocols() -> None:
    """No source at all is 0.0.0.0/0; protocols and port lists render as nft matches."""
    state = NetworkState(instances=(M1,), firewalls=(firewall("any", allowed=[
        {"IPProtocol": "tcp", "ports": ["22", "2380-2381"]}, {"IPProtocol": "icmp"}, {"IPProtocol": "all"}]),))
    rules = rules_of(state, "in_10_132_0_2", "any")
    assert any("meta l4proto 6 th dport { 22, 2380-2381 } counter accept" in r for r in rules)
    assert any("meta l4proto 1 counter accept" in r for r in rules)
    assert any(r.startswith("ip saddr != @instances counter accept") for r in rules), "all protocols, from anywhere"


def test_protocol_and_port_validation() -> None:
    """Malformed ports and ports without a port-based protocol are refused."""
    assert parse_port("2380-2381") == (2380, 2381)
    assert protocol_matches([{"IPProtocol": "17", "ports": ["53"]}], "r") == ["meta l4proto 17 th dport { 53 }"]
    for bad in ("", "1-", "70000", "5-3", "http"):
        with pytest.raises(ValueError):
            parse_port(bad)
    with pytest.raises(ValueError):
        protocol_matches([{"IPProtocol": "icmp", "ports": ["1"]}], "r")
    with pytest.raises(ValueError):
        protocol_matches([{"IPProtocol": "bogus"}], "r")


def test_egress_rules() -> None:
    """EGRESS rules go to the source's chain, match the original destination, and fall through when allowed."""
    state = NetworkState(instances=(M1, NODE), firewalls=(
        firewall("block-out", direction="EGRESS", priority=100, destinationRanges=["10.132.0.0/20"],
                 denied=[{"IPProtocol": "tcp", "ports": ["2380"]}], targetTags=["master"]),
    ))
    found = chains(state)
    assert found["eg_10_132_0_2"] == [
        'ct original ip daddr { 10.132.0.0/20 } meta l4proto 6 th dport { 2380 } counter drop comment "firewall block-out"'
    ]
    assert "eg_10_132_0_9" not in found
    assert "ip saddr vmap { 10.132.0.2 : jump eg_10_132_0_2 }" in found["forward"]
    assert not rules_of(state, "in_10_132_0_2", "block-out")


def test_forwarding_rules() -> None:
    """Several backends: sticky hash over the source; one backend: plain DNAT; none: no DNAT (dropped)."""
    rules = (
        ForwardingRule("lb", "203.0.113.100", "TCP", ("443",), ("10.132.0.3", "10.132.0.2")),
        ForwardingRule("one", "203.0.113.101", "UDP", ("53", "1000-1001"), ("10.132.0.2",)),
        ForwardingRule("none", "203.0.113.102", "TCP", (), ()),
        ForwardingRule("all", "203.0.113.103", "L3_DEFAULT", (), ("10.132.0.2", "10.132.0.3")),
    )
    found = chains(NetworkState(instances=(M1, M2), forwarding_rules=rules))
    dnat = found["nat_prerouting"]
    assert dnat == found["nat_output"]
    assert re.match(r"ip daddr 203\.0\.113\.100 meta l4proto 6 th dport \{ 443 \} dnat to jhash ip saddr \. th sport mod 2 "
                    r"seed 0x[0-9a-f]+ map \{ 0 : 10\.132\.0\.2, 1 : 10\.132\.0\.3 \}", dnat[0])
    assert dnat[1].startswith("ip daddr 203.0.113.101 meta l4proto 17 th dport { 53, 1000-1001 } dnat to 10.132.0.2 ")
    assert not any("203.0.113.102" in r for r in dnat)
    assert "ip daddr 203.0.113.103 dnat to jhash ip saddr mod 2" in dnat[2]
    with pytest.raises(ValueError):
        ForwardingRule("bad", "203.0.113.1", "ICMP")


def test_external_nat_and_instances_without_external_ip() -> None:
    """One-to-one NAT both ways for instances with external IPs; the others cannot reach external addresses."""
    found = chains(NetworkState(instances=(M1, NODE)))
    assert "dnat to ip daddr map { 203.0.113.2 : 10.132.0.2 }" in found["nat_prerouting"][0]
    assert found["nat_postrouting"] == ["ct status dnat snat to ip saddr map { 10.132.0.2 : 203.0.113.2 }"]
    assert any("ct status dnat ip saddr @no_external" in r and "drop" in r for r in found["forward"])
    assert "elements = { 10.132.0.9 }" in render(NetworkState(instances=(M1, NODE))).split("set no_external")[1].split("}")[0] + "}"


def test_cut_and_stopped_instances() -> None:
    """Cut instances are in the cut set (dropped first); stopped instances get no chains and no NAT."""
    stopped = Instance("off", "10.132.0.5", "203.0.113.5", running=False)
    state = NetworkState(instances=(M1, M2, stopped)).with_cuts(["m2"])
    text = render(state)
    assert "set cut {\n\t\ttype ipv4_addr\n\t\telements = { 10.132.0.3 }" in text
    assert "10.132.0.5" not in text
    forward = chains(state)["forward"]
    assert forward[0].startswith("ip saddr @cut") and forward[1].startswith("ip daddr @cut")
    assert chains(state)["input"][0] == "ip daddr 169.254.169.254 accept", "metadata stays reachable"


def test_dict_form_round_trip() -> None:
    """The dict form (what the simulator passes) converts both ways."""
    data = {
        "instances": [{"name": "m1", "internal_ip": "10.132.0.2", "nat_ip": "203.0.113.2", "tags": ["a"],
                       "network": "projects/p/global/networks/default"}],
        "firewalls": [firewall("f")],
        "forwarding_rules": [{"name": "lb", "ip": "203.0.113.100", "ports": ["443"], "backends": ["10.132.0.2"]}],
    }
    state = NetworkState.from_dict(data)
    assert state.instances[0].network == "default" and state.instances[0].tags == ("a",)
    assert NetworkState.from_dict(state.to_dict()) == state
    assert render(state).startswith("table ip kubeha_lab\ndelete table ip kubeha_lab\ntable ip kubeha_lab {")


@pytest.mark.machines
def test_rendered_ruleset_loads_into_the_kernel() -> None:
    """nft accepts a ruleset that uses every feature (in a throw-away namespace)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    state = NetworkState(
        instances=(M1, M2, NODE, OTHER_NET, Instance("off", "10.132.0.5", running=False)),
        firewalls=(
            firewall("a", sourceTags=["master"], targetTags=["master"]),
            firewall("b", sourceRanges=["0.0.0.0/0"], allowed=[{"IPProtocol": "all"}], priority=65535),
            firewall("c", sourceRanges=["35.191.0.0/16", "130.211.0.0/22"], denied=[{"IPProtocol": "udp"}]),
            firewall("d", direction="EGRESS", destinationRanges=["0.0.0.0/0"], allowed=[{"IPProtocol": "icmp"}]),
            firewall("e", sourceServiceAccounts=["sa@p.iam.gserviceaccount.com"], allowed=[{"IPProtocol": "sctp", "ports": ["9"]}]),
        ),
        forwarding_rules=(ForwardingRule("lb", "203.0.113.100", "TCP", ("443",), ("10.132.0.2", "10.132.0.3")),
                          ForwardingRule("l3", "203.0.113.101", "L3_DEFAULT", (), ("10.132.0.2", "10.132.0.3", "10.132.0.9"))),
    ).with_cuts(["node"])
    ns = f"khnft-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for text in (render(state), render(state), render(NetworkState())):
            result = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True,
                                    capture_output=True, check=False)
            assert result.returncode == 0, result.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=True)
