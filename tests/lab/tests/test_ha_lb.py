# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce.ha_lb against the simulator: transitions, re-runs, bad input, and runs killed at every step.

The module runs as its own process, as Ansible runs it, so that a test can kill
it (SIGKILL) while Compute Engine holds the answer to one of its calls, and then
show that the next run finishes the job and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import time
import typing as t

import pytest

from conftest import PROJECT, ModuleProcess, wait

pytestmark = pytest.mark.playbook

REGION = "europe-west1"
IMAGE = "projects/debian-cloud/global/images/family/debian-12"
LABELS = {"kubeha-cluster": "k", "kubeha-role": "master"}
R1, R2, R3 = "k-master", "k-master-c", "k-master-d"
ZONES = {R1: "europe-west1-b", R2: "europe-west1-c", R3: "europe-west1-d"}
LB_COLLECTIONS = ("forwardingRules", "regionBackendServices", "targetPools", "regionHealthChecks",
                  "httpHealthChecks", "instanceGroups")
FAST_CHECK = {"check_interval_sec": 1, "timeout_sec": 1, "healthy_threshold": 1, "unhealthy_threshold": 2}


@pytest.fixture
def run(lab, tmp_path):
    # Quick operations: these tests are about order and convergence, not about waiting.
    lab.control("PUT", "timing", {"pending": 0.01, "running": 0.03})
    return ModuleProcess(lab, tmp_path, "ha_lb")


@pytest.fixture
def cluster(lab, compute):
    """The reserved address and three replicas of cluster k; the first holds the address (state single)."""
    wait(compute, compute.addresses().insert(project=PROJECT, region=REGION, body={
        "name": "k-master-ip", "labels": LABELS}).execute())
    ip = compute.addresses().get(project=PROJECT, region=REGION, address="k-master-ip").execute()["address"]
    for name, zone in ZONES.items():
        access = {"name": "External NAT", "type": "ONE_TO_ONE_NAT"}
        if name == R1:
            access["natIP"] = ip
        wait(compute, compute.instances().insert(project=PROJECT, zone=zone, body={
            "name": name, "machineType": "zones/%s/machineTypes/e2-standard-2" % zone, "labels": LABELS,
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": IMAGE}}],
            "networkInterfaces": [{"network": "global/networks/default", "accessConfigs": [access]}]}).execute())
    return ip


def args(state: str, members: list[str], backend: str = "backend_service", **extra: t.Any) -> dict[str, t.Any]:
    check = dict(FAST_CHECK, port=8080) if backend == "target_pool" else dict(FAST_CHECK)
    return dict({"cluster_name": "k", "region": REGION, "state": state, "members": members, "backend": backend,
                 "health_check": check}, **extra)


def inventory(compute: t.Any) -> dict[str, t.Any]:
    """What the simulator holds that ha_lb may touch: load-balancer resources, the address, external IPs."""
    found: dict[str, t.Any] = {}
    for collection in LB_COLLECTIONS:
        if collection == "httpHealthChecks":
            items = compute.httpHealthChecks().list(project=PROJECT).execute().get("items", [])
            found[collection] = sorted(i["name"] for i in items)
        elif collection == "instanceGroups":
            scoped = compute.instanceGroups().aggregatedList(project=PROJECT).execute().get("items", {})
            groups = []
            for scope, value in scoped.items():
                for group in value.get("instanceGroups", []):
                    members = compute.instanceGroups().listInstances(
                        project=PROJECT, zone=scope.split("/")[-1], instanceGroup=group["name"], body={}).execute()
                    groups.append("%s/%s:%s" % (scope.split("/")[-1], group["name"], ",".join(sorted(
                        m["instance"].rsplit("/", 1)[-1] for m in members.get("items", [])))))
            found[collection] = sorted(groups)
        else:
            items = getattr(compute, collection)().list(project=PROJECT, region=REGION).execute().get("items", [])
            found[collection] = sorted(i["name"] for i in items)
    pools = compute.targetPools().list(project=PROJECT, region=REGION).execute().get("items", [])
    found["pool_members"] = sorted(i.rsplit("/", 1)[-1] for p in pools for i in p.get("instances", []))
    address = compute.addresses().get(project=PROJECT, region=REGION, address="k-master-ip").execute()
    found["address_users"] = sorted(u.rsplit("/", 1)[-1] for u in address.get("users", []))
    found["external_ips"] = {}
    for name, zone in ZONES.items():
        instance = compute.instances().get(project=PROJECT, zone=zone, instance=name).execute()
        configs = instance["networkInterfaces"][0].get("accessConfigs", [])
        found["external_ips"][name] = [c.get("natIP") for c in configs]
    return found


def expected(state: str, members: list[str], backend: str, ip: str) -> dict[str, t.Any]:
    """The whole inventory a state must leave: nothing more (no orphans), nothing less."""
    want: dict[str, t.Any] = {c: [] for c in LB_COLLECTIONS}
    want["pool_members"] = []
    if state == "balanced":
        want["forwardingRules"] = ["k-master"]
        want["address_users"] = ["k-master"]
        if backend == "backend_service":
            want["regionBackendServices"] = ["k-master"]
            want["regionHealthChecks"] = ["k-master-hc"]
            zones = sorted({ZONES[m] for m in members})
            want["instanceGroups"] = sorted("%s/k-master:%s" % (z, ",".join(sorted(m for m in members if ZONES[m] == z)))
                                            for z in zones)
        else:
            want["targetPools"] = ["k-master"]
            want["httpHealthChecks"] = ["k-master-hc"]
            want["pool_members"] = sorted(members)
    elif state == "single":
        want["address_users"] = members
    else:
        want["address_users"] = []
    return want


def check_inventory(compute: t.Any, state: str, members: list[str], backend: str, ip: str) -> None:
    found = inventory(compute)
    ips = found.pop("external_ips")
    assert found == expected(state, members, backend, ip)
    for name, configs in ips.items():
        # Every replica has exactly one external IP; only the holder's is the reserved address.
        assert len(configs) == 1 and configs[0], "%s has external IPs %s" % (name, configs)
        holder = state == "single" and name == members[0]
        assert (configs[0] == ip) == holder, "%s has %s (reserved %s, state %s)" % (name, configs[0], ip, state)


def converge(lab, run, compute, ip, state, members, backend, rerun=True):
    """Run to a state, check everything, and show that a second run calls nothing that changes anything."""
    result = run(args(state, members, backend))
    assert not result.get("failed"), result.get("msg")
    assert result["state"] == state
    assert len(result["actions"]) == len(set(result["actions"])), result["actions"]
    check_inventory(compute, state, members, backend, ip)
    if not rerun:
        return result
    lab.control("DELETE", "requests")
    again = run(args(state, members, backend))
    assert again["changed"] is False, again["actions"]
    assert lab.mutating() == [], "a re-run called %s" % lab.mutating()
    return result


@pytest.mark.parametrize("backend", ["backend_service", "target_pool"])
def test_single_balanced_grow_shrink_single(lab, run, compute, cluster, backend):
    ip = cluster
    first = converge(lab, run, compute, ip, "single", [R1], backend)
    assert first["changed"] is False and first["holder"] == R1 and first["members"][0]["external_ip"] == ip

    lab.control("DELETE", "requests")
    plan = run(args("balanced", [R1], backend), check=True)
    assert plan["changed"] is True and lab.mutating() == [], "check mode called %s" % lab.mutating()
    assert plan["diff"]["before"]["state"] == "single" and plan["diff"]["after"]["state"] == "balanced"
    assert plan["actions"][-3:] == [
        "free address k-master-ip (%s) from replica %s" % (ip, R1),
        "create forwarding rule k-master (%s) on %s:443" % (REGION, ip),
        "give replica %s an ephemeral external IP" % R1]

    done = converge(lab, run, compute, ip, "balanced", [R1], backend)
    assert done["actions"] == plan["actions"]
    assert done["diff"]["after"]["members"] == [R1] and done["members"][0]["health"] == "HEALTHY"
    assert {r["kind"] for r in done["resources"]} >= {"forwarding rule"}

    grown = converge(lab, run, compute, ip, "balanced", [R1, R2, R3], backend)
    assert [m["health"] for m in grown["members"]] == ["HEALTHY"] * 3
    assert not any("forwarding rule" in a or "address" in a for a in grown["actions"]), grown["actions"]

    lab.control("DELETE", "requests")
    shrunk = converge(lab, run, compute, ip, "balanced", [R1, R3], backend)
    assert [m["name"] for m in shrunk["members"]] == [R1, R3]
    assert not any("forwarding rule" in a for a in shrunk["actions"]), shrunk["actions"]

    back = converge(lab, run, compute, ip, "single", [R3], backend)
    assert back["holder"] == R3 and back["backend"] is None
    assert back["actions"][:3] == [
        "remove the ephemeral external IP %s of replica %s" % (inventory_ip_before(back, R3), R3),
        "delete forwarding rule k-master (%s)" % REGION,
        "give replica %s the address k-master-ip (%s)" % (R3, ip)]


def inventory_ip_before(result: dict[str, t.Any], name: str) -> str:
    action = [a for a in result["actions"] if a.startswith("remove the ephemeral external IP")][0]
    assert action.endswith("of replica %s" % name)
    return action.split()[5]


def test_switching_backends_and_absent(lab, run, compute, cluster):
    ip = cluster
    converge(lab, run, compute, ip, "balanced", [R1, R2], "target_pool")
    switched = converge(lab, run, compute, ip, "balanced", [R1, R2], "backend_service")
    assert "delete forwarding rule k-master (%s)" % REGION in switched["actions"]
    assert switched["warnings"], "making the forwarding rule again must be warned about"
    gone = converge(lab, run, compute, ip, "absent", [], "backend_service")
    assert gone["state"] == "absent" and gone["resources"] == []


def test_single_moves_the_address_between_replicas(lab, run, compute, cluster):
    ip = cluster
    moved = converge(lab, run, compute, ip, "single", [R2], "backend_service")
    assert moved["actions"][1:3] == ["free address k-master-ip (%s) from replica %s" % (ip, R1),
                                     "give replica %s the address k-master-ip (%s)" % (R2, ip)]
    assert moved["actions"][-1] == "give replica %s an ephemeral external IP" % R1


BAD = [
    ({"address": "nope-ip"}, "address 'nope-ip' does not exist in region europe-west1"),
    ({"address": "far-ip"}, "address 'far-ip' is in us-central1, not in region europe-west1"),
    ({"members": [R1, "k-master-x"]}, "replica 'k-master-x' was not found in any zone of project kubeha-lab"),
    ({"members": [R1, "far"]}, "replica 'far' is in zone us-central1-a of region us-central1, not in region europe-west1"),
    ({"members": [R1, "stranger"]}, "instance 'stranger' in zone europe-west1-b is not a master of cluster 'k'"),
    ({"members": []}, "state=balanced needs at least one member"),
    ({"state": "single", "members": [R1, R2]}, "state=single needs exactly one member"),
    ({"members": [R1, R1]}, "members lists replica 'k-master' twice"),
    ({"backend": "target_pool", "health_check": {}}, "health_check.port is needed for an HTTP health check"),
    ({"health_check": {"enabled": False}}, "health_check.enabled=false is only possible with backend=target_pool"),
    ({"address": "taken-ip"}, "address 'taken-ip' ("),
]


def test_bad_input_fails_before_any_change(lab, run, compute, cluster):
    wait(compute, compute.addresses().insert(project=PROJECT, region="us-central1", body={"name": "far-ip"}).execute())
    wait(compute, compute.addresses().insert(project=PROJECT, region=REGION, body={"name": "taken-ip"}).execute())
    taken = compute.addresses().get(project=PROJECT, region=REGION, address="taken-ip").execute()["address"]
    for name, zone, labels, nat in (("far", "us-central1-a", LABELS, None), ("stranger", "europe-west1-b", {}, taken)):
        access = {"name": "External NAT", "type": "ONE_TO_ONE_NAT", **({"natIP": nat} if nat else {})}
        wait(compute, compute.instances().insert(project=PROJECT, zone=zone, body={
            "name": name, "machineType": "zones/%s/machineTypes/e2-standard-2" % zone, "labels": labels,
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": IMAGE}}],
            "networkInterfaces": [{"network": "global/networks/default", "accessConfigs": [access]}]}).execute())
    before = inventory(compute)
    lab.control("DELETE", "requests")
    for change, message in BAD:
        result = run(dict(args("balanced", [R1, R2]), **change))
        assert result.get("failed") is True, (change, result)
        assert message in result["msg"], (change, result["msg"])
    taken_msg = run(dict(args("balanced", [R1, R2]), address="taken-ip"))["msg"]
    assert "in use by instance 'stranger' (europe-west1-b)" in taken_msg
    assert lab.mutating() == [], "bad input changed %s" % lab.mutating()
    assert inventory(compute) == before


def test_a_foreign_resource_of_the_same_name_is_left_alone(lab, run, compute, cluster):
    wait(compute, compute.regionHealthChecks().insert(project=PROJECT, region=REGION, body={
        "name": "k-master-hc", "type": "TCP", "tcpHealthCheck": {"port": 22}}).execute())
    lab.control("DELETE", "requests")
    result = run(args("balanced", [R1]))
    assert result.get("failed") and "health check 'k-master-hc' (europe-west1) exists but was not made by kubeha.gce" \
        in result["msg"]
    assert lab.mutating() == []


# -- killed at every step ---------------------------------------------------------------------------------

TRANSITIONS = [
    ("single", [R1], "balanced", [R1]),
    ("balanced", [R1], "balanced", [R1, R2]),
    ("balanced", [R1, R2], "balanced", [R1]),
    ("balanced", [R1, R2], "single", [R2]),
]


def killed_at(lab, run, args_: dict[str, t.Any], step: int) -> int | None:
    """Start a run that GCE holds at its ``step``-th change and kill it there (None); if it finished
    first, the number of changes it made."""
    lab.control("PUT", "faults", {"hold": {"mutating_call": step}})
    process = run.start(args_)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            hold = lab.control("GET", "hold")
            if hold["held"]:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return None
            if process.poll() is not None:
                out = process.stdout.read() if process.stdout else ""
                assert "\"failed\": true" not in out, out
                return lab.control("GET", "hold")["mutating_calls"]
            time.sleep(0.02)
        raise AssertionError("ha_lb neither reached change %d nor finished" % step)
    finally:
        lab.control("POST", "release")
        lab.control("DELETE", "faults")
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)


# make test kills the backend service's runs at every step; make crash-matrix also the target pool's.
@pytest.mark.parametrize("backend", ["backend_service", pytest.param("target_pool", marks=pytest.mark.crash_matrix)])
def test_a_run_killed_at_any_step_is_finished_by_the_next(lab, run, compute, cluster, backend):
    ip = cluster
    steps_seen = {}
    for from_state, from_members, to_state, to_members in TRANSITIONS:
        step = 1
        while True:
            converge(lab, run, compute, ip, from_state, from_members, backend, rerun=step == 1)
            made = killed_at(lab, run, args(to_state, to_members, backend), step)
            if made is not None:
                break
            time.sleep(0.1)  # the held operation finishes on GCE's side, as it would after a client died
            converge(lab, run, compute, ip, to_state, to_members, backend)
            step += 1
        name = "%s%s -> %s%s" % (from_state, from_members, to_state, to_members)
        steps_seen[name] = step - 1
        # It was killed at every one of its changes, and the run that finished made no other.
        assert made == step - 1, (name, made, step - 1)
    assert all(count >= 1 for count in steps_seen.values()), steps_seen
    print(json.dumps({"backend": backend, "steps_killed": steps_seen}))
