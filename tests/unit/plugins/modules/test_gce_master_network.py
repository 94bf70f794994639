# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kubeha.gce.plugins.modules import gce_master_network
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import (
    BASE,
    PROJECT,
    error,
    fake_gce,
    instance,
    not_found,
    ok,
    op_done,
    op_pending,
    run_module,
    zone_url,
)

ARGS = {"cluster_name": "k", "region": "europe-west1"}
IP = "203.0.113.20"
REGION_URL = "%sprojects/%s/regions/europe-west1" % (BASE, PROJECT)
GLOBAL_URL = "%sprojects/%s/global" % (BASE, PROJECT)
NETWORK_URL = "%s/networks/default" % GLOBAL_URL
ADDRESS_LINK = "%s/addresses/k-master-ip" % REGION_URL
MASTER_LINK = "%s/instances/k-master" % zone_url("europe-west1-b")
RULE_LINK = "%s/forwardingRules/k-master" % REGION_URL
LABELS = {"kubeha-cluster": "k", "kubeha-role": "master"}
ADDRESS_DESCRIPTION = "kubeha.gce: reserved address of the API servers of cluster k (kubeha-cluster=k)"
HTTPS_DESCRIPTION = "kubeha.gce: HTTPS to the API servers of the masters of cluster k (kubeha-cluster=k)"
ETCD_DESCRIPTION = "kubeha.gce: etcd client and peer traffic between the masters of cluster k (kubeha-cluster=k)"
SSH_DESCRIPTION = "kubeha.gce: SSH to the masters of cluster k (kubeha-cluster=k)"

#: The reads of every run, in order.
READ_NAMES = ["addresses.get", "firewalls.get", "firewalls.get", "firewalls.get"]


def run(http, check_mode=False, diff=False, **args):
    return run_module(gce_master_network.main, dict(ARGS, **args), http, check_mode=check_mode, diff=diff)


def address(labels=None, users=None, ip=IP, description=ADDRESS_DESCRIPTION, kind="EXTERNAL"):
    return {"kind": "compute#address", "id": "7", "name": "k-master-ip", "address": ip, "addressType": kind,
            "status": "IN_USE" if users else "RESERVED", "users": users or [], "region": REGION_URL,
            "description": description, "labels": dict(LABELS) if labels is None else labels,
            "labelFingerprint": "addr-fp-1", "selfLink": ADDRESS_LINK}


def firewall(name, description, ports, source_ranges=None, source_tags=None, target_tags=None, **extra):
    body = {"kind": "compute#firewall", "id": "9", "name": name, "description": description, "network": NETWORK_URL,
            "priority": 1000, "direction": "INGRESS", "disabled": False,
            "allowed": [{"IPProtocol": "tcp", "ports": ports}], "targetTags": target_tags or ["k-master"],
            "selfLink": "%s/firewalls/%s" % (GLOBAL_URL, name)}
    if source_ranges:
        body["sourceRanges"] = source_ranges
    if source_tags:
        body["sourceTags"] = source_tags
    body.update(extra)
    return body


def https(**kw):
    kw.setdefault("source_ranges", ["0.0.0.0/0"])
    return firewall("k-master-https", kw.pop("description", HTTPS_DESCRIPTION), kw.pop("ports", ["443"]), **kw)


def etcd(**kw):
    kw.setdefault("source_tags", ["k-master"])
    return firewall("k-master-etcd", kw.pop("description", ETCD_DESCRIPTION), kw.pop("ports", ["2379-2381", "4002"]), **kw)


def ssh(**kw):
    return firewall("k-master-ssh", SSH_DESCRIPTION, ["22"], source_ranges=kw.pop("source_ranges", ["127.0.0.0/8"]),
                    **kw)


def existing(the_address=None, firewalls=(https(), etcd(), None)):
    """The answers to the reads: the address (or 404) and the three firewall rules (or 404)."""
    return [ok(the_address) if the_address else not_found()] + [ok(f) if f else not_found() for f in firewalls]


def regional():
    return [op_pending(region="europe-west1"), op_done(region="europe-west1")]


def global_op():
    return [op_pending(zone=None), op_done(zone=None)]


@pytest.mark.parametrize("args, message", [
    ({"cluster_name": "K_8"}, "cluster_name 'K_8' is not a valid Compute Engine name"),
    ({"cluster_name": "k" * 52}, "the firewall rule name (cluster_name + '-master-https')"),
    ({"region": "europe-west1-b"}, "region 'europe-west1-b' is not a Compute Engine region name"),
    ({"https_port": 0}, "https_port is 0; it must be between 1 and 65535"),
    ({"https_source_ranges": ["10.0.0.1/8"]}, "https_source_ranges: '10.0.0.1/8' is not a CIDR range"),
    ({"https_source_ranges": ["anywhere"]}, "https_source_ranges: 'anywhere' is not a CIDR range"),
    ({"https_source_ranges": []}, "https_source_ranges is empty"),
    ({"ssh_source_ranges": ["127.0.0.1/33"]}, "ssh_source_ranges: '127.0.0.1/33' is not a CIDR range"),
    ({"address": "k-master-ip"}, "address 'k-master-ip' is not an IP address"),
    ({"address": "::1"}, "address '::1' is an IPv6 address"),
    ({"network": "Default"}, "network 'Default' is not a valid Compute Engine name"),
    ({"wait_timeout": 0}, "wait_timeout is 0; it must be at least 1 second"),
], ids=["cluster-name", "cluster-name-too-long", "zone-as-region", "port", "host-bits", "not-a-range",
        "no-https-ranges", "ssh-range", "address-name", "ipv6-address", "network", "timeout"])
def test_bad_input_fails_before_any_request(args, message):
    with fake_gce([]) as http:
        result = run(http, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert http.calls == []


def test_create_all_in_order_with_exact_bodies():
    responses = (existing(None, (None, None, None))
                 + regional()  # addresses.insert
                 + [ok(address(labels={}))]  # addresses.get for the label fingerprint
                 + regional()  # addresses.setLabels
                 + global_op()  # firewalls.insert https
                 + global_op()  # firewalls.insert etcd
                 + existing(address(), (https(), etcd(), None)))
    with fake_gce(responses) as http:
        result = run(http, address=IP)
    assert http.done()
    assert http.names == READ_NAMES + [
        "addresses.insert", "regionOperations.wait", "addresses.get", "addresses.setLabels", "regionOperations.wait",
        "firewalls.insert", "globalOperations.wait", "firewalls.insert", "globalOperations.wait"] + READ_NAMES
    assert [c.path for c in http.calls[1:4]] == ["projects/kubeha-test/global/firewalls/k-master-%s" % n
                                                 for n in ("https", "etcd", "ssh")]
    bodies = [c.body for c in http.calls if c.body is not None]
    assert bodies == [
        {"name": "k-master-ip", "description": ADDRESS_DESCRIPTION, "addressType": "EXTERNAL", "address": IP},
        {"labels": LABELS, "labelFingerprint": "addr-fp-1"},
        {"name": "k-master-https", "description": HTTPS_DESCRIPTION,
         "network": "projects/kubeha-test/global/networks/default", "direction": "INGRESS",
         "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}], "sourceRanges": ["0.0.0.0/0"],
         "targetTags": ["k-master"]},
        {"name": "k-master-etcd", "description": ETCD_DESCRIPTION,
         "network": "projects/kubeha-test/global/networks/default", "direction": "INGRESS",
         "allowed": [{"IPProtocol": "tcp", "ports": ["2379-2381", "4002"]}], "sourceTags": ["k-master"],
         "targetTags": ["k-master"]},
    ]
    assert http.calls[len(READ_NAMES)].path == "projects/kubeha-test/regions/europe-west1/addresses"
    assert result["changed"] is True
    assert result["actions"] == [
        "reserve address k-master-ip (europe-west1) at 203.0.113.20",
        "label address k-master-ip (europe-west1) with kubeha-cluster=k, kubeha-role=master",
        "create firewall k-master-https (tcp:443 to tag k-master)",
        "create firewall k-master-etcd (tcp:2379-2381,4002 to tag k-master)",
    ]
    assert result["address"] == {"name": "k-master-ip", "ip": IP, "self_link": ADDRESS_LINK, "users": []}
    assert [f["name"] for f in result["firewalls"]] == ["k-master-etcd", "k-master-https"]
    assert result["firewalls"][0] == {
        "name": "k-master-etcd", "direction": "INGRESS", "allowed": [{"protocol": "tcp", "ports": ["2379-2381", "4002"]}],
        "source_ranges": [], "source_tags": ["k-master"], "target_tags": ["k-master"],
        "self_link": "%s/firewalls/k-master-etcd" % GLOBAL_URL}
    assert "diff" not in result


def test_check_mode_plans_everything_and_changes_nothing():
    with fake_gce(existing(None, (None, None, None))) as http:
        result = run(http, check_mode=True, diff=True, https_source_ranges=["10.132.0.0/20", "35.191.0.0/16"],
                     ssh_source_ranges=["127.0.0.0/8"])
    assert http.names == READ_NAMES
    assert http.mutating == []
    assert http.done()
    assert result["changed"] is True
    assert result["actions"] == [
        "reserve address k-master-ip (europe-west1)",
        "label address k-master-ip (europe-west1) with kubeha-cluster=k, kubeha-role=master",
        "create firewall k-master-https (tcp:443 to tag k-master)",
        "create firewall k-master-etcd (tcp:2379-2381,4002 to tag k-master)",
        "create firewall k-master-ssh (tcp:22 to tag k-master)",
    ]
    assert result["diff"]["before"] == {"address": None, "firewalls": {}}
    after = result["diff"]["after"]
    assert after["address"] == {"name": "k-master-ip", "ip": None, "self_link": None, "users": []}
    assert sorted(after["firewalls"]) == ["k-master-etcd", "k-master-https", "k-master-ssh"]
    # Narrowed ranges: the health checkers' ranges that are not covered are added.
    assert after["firewalls"]["k-master-https"]["source_ranges"] == [
        "10.132.0.0/20", "35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22", "130.211.0.0/22"]
    assert after["firewalls"]["k-master-ssh"]["source_ranges"] == ["127.0.0.0/8"]
    assert result["firewalls"] == list(after["firewalls"].values())
    assert result["address"] == after["address"]


def test_rerun_changes_nothing():
    # GCE's own order and spelling of the same rule ("443-443", ranges in another order) is no difference.
    narrowed = https(ports=["443-443"], source_ranges=["130.211.0.0/22", "209.85.204.0/22", "209.85.152.0/22",
                                                       "35.191.0.0/16", "10.132.0.0/20"])
    with fake_gce(existing(address(), (narrowed, etcd(), None))) as http:
        result = run(http, diff=True, https_source_ranges=["10.132.0.0/20"])
    assert http.names == READ_NAMES
    assert http.done()
    assert result["changed"] is False and result["actions"] == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert result["address"]["ip"] == IP


def test_a_drifted_firewall_is_patched_with_only_the_difference():
    drifted_https = https(ports=["6443"])
    drifted_etcd = etcd(source_ranges=["0.0.0.0/0"])
    responses = (existing(address(), (drifted_https, drifted_etcd, None)) + global_op() + global_op()
                 + existing(address(), (https(), etcd(), None)))
    with fake_gce(responses) as http:
        result = run(http, diff=True)
    assert http.done()
    n = len(READ_NAMES)
    assert http.names[n:n + 4] == ["firewalls.patch", "globalOperations.wait", "firewalls.patch",
                                   "globalOperations.wait"]
    assert http.calls[n].path == "projects/kubeha-test/global/firewalls/k-master-https"
    assert http.calls[n].body == {"name": "k-master-https", "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}]}
    assert http.calls[n + 2].body == {"name": "k-master-etcd", "sourceRanges": []}
    assert result["actions"] == ["update firewall k-master-https (allowed)", "update firewall k-master-etcd (sourceRanges)"]
    before, after = result["diff"]["before"]["firewalls"], result["diff"]["after"]["firewalls"]
    assert before["k-master-https"]["allowed"] == [{"protocol": "tcp", "ports": ["6443"]}]
    assert after["k-master-https"]["allowed"] == [{"protocol": "tcp", "ports": ["443"]}]
    assert before["k-master-etcd"]["source_ranges"] == ["0.0.0.0/0"] and after["k-master-etcd"]["source_ranges"] == []


@pytest.mark.parametrize("foreign", [
    etcd(description="made by hand"),
    etcd(description="kubeha.gce: etcd peer traffic between the masters of cluster k2 (kubeha-cluster=k2)"),
], ids=["no-marker", "another-cluster"])
def test_same_named_firewall_of_someone_else_is_never_touched(foreign):
    with fake_gce(existing(address(), (https(), foreign, None))) as http:
        result = run(http)
    assert result["failed"] is True
    assert ("firewall 'k-master-etcd' exists but was not made by kubeha.gce for cluster 'k' (no kubeha-cluster=k in "
            "its description)" in result["msg"])
    assert http.names == READ_NAMES
    assert http.mutating == []


def test_unlabelled_address_is_refused_without_adopt_address():
    with fake_gce(existing(address(labels={}, description=""), (None, None, None))) as http:
        result = run(http)
    assert result["failed"] is True
    assert ("address 'k-master-ip' (europe-west1, 203.0.113.20) exists but is not the reserved address of cluster 'k' "
            "(its labels kubeha-cluster=<unset>, kubeha-role=<unset>); set adopt_address=true" in result["msg"])
    assert http.mutating == []


def test_adopt_address_labels_it_keeping_its_ip_and_other_labels():
    unlabelled = address(labels={"team": "infra"}, description="")
    responses = (existing(unlabelled, (https(), etcd(), None)) + regional()
                 + existing(address(labels=dict(LABELS, team="infra"), description=""), (https(), etcd(), None)))
    with fake_gce(responses) as http:
        result = run(http, adopt_address=True, address=IP)
    assert http.done()
    assert http.mutating == ["addresses.setLabels"]
    assert http.calls[len(READ_NAMES)].body == {"labels": dict(LABELS, team="infra"), "labelFingerprint": "addr-fp-1"}
    assert result["actions"] == ["adopt and label address k-master-ip (europe-west1, 203.0.113.20) with "
                                 "kubeha-cluster=k, kubeha-role=master"]


def test_address_of_another_cluster_is_refused_even_with_adopt_address():
    other = address(labels={"kubeha-cluster": "k2", "kubeha-role": "master"}, description="")
    with fake_gce(existing(other, (None, None, None))) as http:
        result = run(http, adopt_address=True)
    assert result["failed"] is True
    assert ("address 'k-master-ip' (europe-west1, 203.0.113.20) belongs to something else (its labels "
            "kubeha-cluster=k2, kubeha-role=master)" in result["msg"])
    assert http.mutating == []


def test_address_reserved_but_not_yet_labelled_by_a_killed_run_is_labelled():
    responses = (existing(address(labels={}), (https(), etcd(), None)) + regional()
                 + existing(address(), (https(), etcd(), None)))
    with fake_gce(responses) as http:
        result = run(http)
    assert http.mutating == ["addresses.setLabels"]
    assert result["actions"] == ["label address k-master-ip (europe-west1, 203.0.113.20) with kubeha-cluster=k, "
                                 "kubeha-role=master"]


def test_stale_label_fingerprint_is_reread_and_retried_once():
    responses = (existing(address(labels={}), (https(), etcd(), None))
                 + [error(412, "conditionNotMet", "Invalid fingerprint."),
                    ok(dict(address(labels={}), labelFingerprint="addr-fp-2"))]
                 + regional() + existing(address(), (https(), etcd(), None)))
    with fake_gce(responses) as http:
        run(http)
    assert http.done()
    sets = [c.body for c in http.calls if c.method == "addresses.setLabels"]
    assert [b["labelFingerprint"] for b in sets] == ["addr-fp-1", "addr-fp-2"]


def test_address_with_another_ip_is_refused():
    with fake_gce(existing(address(ip="203.0.113.21"), (None, None, None))) as http:
        result = run(http, address=IP)
    assert result["failed"] is True
    assert ("address 'k-master-ip' (europe-west1, 203.0.113.21) has IP 203.0.113.21, the task asks for 203.0.113.20"
            in result["msg"])
    assert http.mutating == []


def test_ssh_rule_only_when_asked_and_removed_when_no_longer():
    responses = existing(address(), (https(), etcd(), ssh())) + global_op() + existing(address(), (https(), etcd(), None))
    with fake_gce(responses) as http:
        result = run(http)
    assert http.mutating == ["firewalls.delete"]
    assert http.calls[len(READ_NAMES)].path == "projects/kubeha-test/global/firewalls/k-master-ssh"
    assert result["actions"] == ["delete firewall k-master-ssh"]
    with fake_gce(existing(address(), (https(), etcd(), ssh()))) as http:
        again = run(http, ssh_source_ranges=["127.0.0.0/8"])
    assert again["changed"] is False and http.mutating == []


def test_absent_deletes_the_firewalls_and_keeps_the_address():
    responses = (existing(address(users=[MASTER_LINK]), (https(), etcd(), None)) + global_op() + global_op()
                 + existing(address(users=[MASTER_LINK]), (None, None, None)))
    with fake_gce(responses) as http:
        result = run(http, state="absent", diff=True)
    assert http.done()
    assert http.mutating == ["firewalls.delete", "firewalls.delete"]
    assert result["actions"] == ["delete firewall k-master-etcd", "delete firewall k-master-https"]
    assert result["address"] == {"name": "k-master-ip", "ip": IP, "self_link": ADDRESS_LINK, "users": [MASTER_LINK]}
    assert result["firewalls"] == []
    assert result["diff"]["after"] == {"address": result["address"], "firewalls": {}}


def test_delete_address_is_refused_while_it_is_used():
    used = address(users=[MASTER_LINK, RULE_LINK])
    with fake_gce(existing(used, (https(), etcd(), None))) as http:
        result = run(http, state="absent", delete_address=True)
    assert result["failed"] is True
    assert ("address 'k-master-ip' (europe-west1, 203.0.113.20) is in use by instance 'k-master' (europe-west1-b), "
            "forwarding rule 'k-master'; not deleting it" in result["msg"])
    assert http.mutating == []


def test_delete_address_is_refused_while_a_replica_exists():
    replicas = ok({"items": {"zones/europe-west1-c": {"instances": [instance(name="k-master-c",
                                                                             zone="europe-west1-c")]}}})
    with fake_gce(existing(address(), (None, None, None)) + [replicas]) as http:
        result = run(http, state="absent", delete_address=True)
    assert result["failed"] is True
    assert ("which still has 1 replica(s) in region europe-west1 (k-master-c (europe-west1-c)); not deleting it"
            in result["msg"])
    assert http.names == READ_NAMES + ["instances.aggregatedList"]
    assert http.mutating == []


def test_delete_address_when_unused():
    responses = (existing(address(), (None, etcd(), None)) + [ok({"items": {}})] + global_op() + regional()
                 + existing(None, (None, None, None)))
    with fake_gce(responses) as http:
        result = run(http, state="absent", delete_address=True)
    assert http.done()
    assert http.mutating == ["firewalls.delete", "addresses.delete"]
    assert result["actions"] == ["delete firewall k-master-etcd",
                                 "delete address k-master-ip (europe-west1, 203.0.113.20)"]
    assert result["address"] is None
