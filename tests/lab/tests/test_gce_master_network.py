# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce.gce_master_network against the simulator: create, re-run, check mode, drift, absent.

The module runs as its own process, as Ansible runs it.
"""

from __future__ import annotations

import typing as t

import pytest
from googleapiclient.errors import HttpError

from conftest import PROJECT, ModuleProcess, wait

pytestmark = pytest.mark.playbook

REGION = "europe-west1"
IMAGE = "projects/debian-cloud/global/images/family/debian-12"
LABELS = {"kubeha-cluster": "k", "kubeha-role": "master"}
ARGS = {"cluster_name": "k", "region": REGION}
HEALTH_CHECK_RANGES = ["35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22", "130.211.0.0/22"]


@pytest.fixture
def run(lab, tmp_path):
    lab.control("PUT", "timing", {"pending": 0.01, "running": 0.03})
    return ModuleProcess(lab, tmp_path, "gce_master_network", ARGS)


def firewalls(compute: t.Any) -> dict[str, dict[str, t.Any]]:
    """The cluster's firewall rules in the simulator, by name (the project's default rules left out)."""
    items = compute.firewalls().list(project=PROJECT).execute().get("items", [])
    return {f["name"]: f for f in items if f["name"].startswith("k-master")}


def get_address(compute: t.Any) -> dict[str, t.Any] | None:
    try:
        return compute.addresses().get(project=PROJECT, region=REGION, address="k-master-ip").execute()
    except HttpError as exc:
        if exc.resp.status == 404:
            return None
        raise


def create_replica(compute: t.Any, ip: str) -> None:
    zone = "europe-west1-b"
    wait(compute, compute.instances().insert(project=PROJECT, zone=zone, body={
        "name": "k-master", "machineType": "zones/%s/machineTypes/e2-standard-2" % zone, "labels": LABELS,
        "tags": {"items": ["k-master"]},
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": IMAGE}}],
        "networkInterfaces": [{"network": "global/networks/default", "accessConfigs": [
            {"name": "External NAT", "type": "ONE_TO_ONE_NAT", "natIP": ip}]}]}).execute())


def rerun_changes_nothing(lab: t.Any, run: ModuleProcess, args: dict[str, t.Any]) -> dict[str, t.Any]:
    lab.control("DELETE", "requests")
    again = run(args)
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False, again["actions"]
    assert lab.mutating() == [], "a re-run called %s" % lab.mutating()
    return again


def test_check_mode_then_present_then_rerun(lab, run, compute):
    lab.control("DELETE", "requests")
    plan = run({}, check=True)
    assert plan["changed"] is True
    assert lab.mutating() == [], "check mode called %s" % lab.mutating()
    assert get_address(compute) is None and firewalls(compute) == {}

    done = run({})
    assert not done.get("failed"), done.get("msg")
    assert done["actions"] == plan["actions"] == [
        "reserve address k-master-ip (europe-west1)",
        "label address k-master-ip (europe-west1) with kubeha-cluster=k, kubeha-role=master",
        "create firewall k-master-https (tcp:443 to tag k-master)",
        "create firewall k-master-etcd (tcp:2379-2381,4002 to tag k-master)",
    ]
    address = get_address(compute)
    assert address["labels"] == LABELS and address["addressType"] == "EXTERNAL"
    assert done["address"] == {"name": "k-master-ip", "ip": address["address"], "self_link": address["selfLink"],
                               "users": []}
    found = firewalls(compute)
    assert sorted(found) == ["k-master-etcd", "k-master-https"]
    assert found["k-master-https"]["allowed"] == [{"IPProtocol": "tcp", "ports": ["443"]}]
    assert found["k-master-https"]["sourceRanges"] == ["0.0.0.0/0"]
    assert found["k-master-https"]["targetTags"] == ["k-master"]
    assert found["k-master-etcd"]["allowed"] == [{"IPProtocol": "tcp", "ports": ["2379-2381", "4002"]}]
    assert found["k-master-etcd"]["sourceTags"] == ["k-master"] and not found["k-master-etcd"].get("sourceRanges")
    assert "kubeha-cluster=k" in found["k-master-etcd"]["description"]
    assert [f["name"] for f in done["firewalls"]] == ["k-master-etcd", "k-master-https"]
    # The plan predicted what the run made.
    for predicted, made in zip(plan["firewalls"], done["firewalls"]):
        assert dict(predicted, self_link=None) == dict(made, self_link=None)

    again = rerun_changes_nothing(lab, run, {})
    assert again["address"] == done["address"]
    lab.control("DELETE", "requests")
    checked = run({}, check=True)
    assert checked["changed"] is False and lab.mutating() == []


def test_narrowed_ranges_ssh_and_drift(lab, run, compute):
    args = {"https_source_ranges": ["10.132.0.0/20"], "ssh_source_ranges": ["10.132.0.0/20"]}
    made = run(args)
    assert not made.get("failed"), made.get("msg")
    found = firewalls(compute)
    assert found["k-master-https"]["sourceRanges"] == ["10.132.0.0/20"] + HEALTH_CHECK_RANGES
    assert found["k-master-ssh"]["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    rerun_changes_nothing(lab, run, args)

    # Someone changes the rules by hand: only what differs is put back, with one patch each.
    wait(compute, compute.firewalls().patch(project=PROJECT, firewall="k-master-https", body={
        "name": "k-master-https", "targetTags": ["k-master", "k-node"]}).execute())
    wait(compute, compute.firewalls().patch(project=PROJECT, firewall="k-master-etcd", body={
        "name": "k-master-etcd", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["2379-2390"]}]}).execute())
    lab.control("DELETE", "requests")
    fixed = run(args)
    assert fixed["actions"] == ["update firewall k-master-https (targetTags)",
                                "update firewall k-master-etcd (allowed, sourceRanges)"]
    assert lab.mutating() == ["compute.firewalls.patch", "compute.firewalls.patch"]
    found = firewalls(compute)
    assert found["k-master-https"]["targetTags"] == ["k-master"]
    assert found["k-master-https"]["sourceRanges"] == ["10.132.0.0/20"] + HEALTH_CHECK_RANGES
    assert found["k-master-etcd"]["allowed"] == [{"IPProtocol": "tcp", "ports": ["2379-2381", "4002"]}]
    assert not found["k-master-etcd"].get("sourceRanges") and found["k-master-etcd"]["sourceTags"] == ["k-master"]
    rerun_changes_nothing(lab, run, args)

    # Without ssh_source_ranges the SSH rule goes.
    dropped = run({"https_source_ranges": ["10.132.0.0/20"]})
    assert dropped["actions"] == ["delete firewall k-master-ssh"]
    assert sorted(firewalls(compute)) == ["k-master-etcd", "k-master-https"]


def test_absent_keeps_the_address_and_delete_address_waits_until_unused(lab, run, compute):
    made = run({"address": "203.0.113.50"})
    assert not made.get("failed"), made.get("msg")
    assert made["address"]["ip"] == "203.0.113.50"
    create_replica(compute, "203.0.113.50")

    gone = run({"state": "absent"})
    assert gone["actions"] == ["delete firewall k-master-etcd", "delete firewall k-master-https"]
    assert firewalls(compute) == {}
    assert gone["address"]["ip"] == "203.0.113.50" and gone["address"]["users"][0].endswith("/instances/k-master")
    assert get_address(compute) is not None
    rerun_changes_nothing(lab, run, {"state": "absent"})

    lab.control("DELETE", "requests")
    refused = run({"state": "absent", "delete_address": True})
    assert refused.get("failed") is True
    assert ("address 'k-master-ip' (europe-west1, 203.0.113.50) is in use by instance 'k-master' (europe-west1-b)"
            in refused["msg"])
    assert lab.mutating() == []

    wait(compute, compute.instances().delete(project=PROJECT, zone="europe-west1-b", instance="k-master").execute())
    deleted = run({"state": "absent", "delete_address": True})
    assert not deleted.get("failed"), deleted.get("msg")
    assert deleted["actions"] == ["delete address k-master-ip (europe-west1, 203.0.113.50)"]
    assert deleted["address"] is None and get_address(compute) is None
    rerun_changes_nothing(lab, run, {"state": "absent", "delete_address": True})


def test_foreign_resources_of_the_same_name(lab, run, compute):
    wait(compute, compute.addresses().insert(project=PROJECT, region=REGION, body={"name": "k-master-ip"}).execute())
    lab.control("DELETE", "requests")
    refused = run({})
    assert refused.get("failed") is True and "set adopt_address=true" in refused["msg"]
    assert lab.mutating() == []

    adopted = run({"adopt_address": True})
    assert not adopted.get("failed"), adopted.get("msg")
    assert adopted["actions"][0].startswith("adopt and label address k-master-ip (europe-west1, ")
    assert get_address(compute)["labels"] == LABELS
    rerun_changes_nothing(lab, run, {})

    run({"state": "absent"})
    wait(compute, compute.firewalls().insert(project=PROJECT, body={
        "name": "k-master-etcd", "description": "made by hand", "allowed": [{"IPProtocol": "tcp"}],
        "sourceTags": ["k-master"]}).execute())
    lab.control("DELETE", "requests")
    for state in ("present", "absent"):
        result = run({"state": state})
        assert result.get("failed") is True
        assert "firewall 'k-master-etcd' exists but was not made by kubeha.gce for cluster 'k'" in result["msg"]
    assert lab.mutating() == []
    assert firewalls(compute)["k-master-etcd"]["description"] == "made by hand"
