# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeha.gce.plugins.filter.preflight import (
    etcd_restartable,
    FilterModule,
    bootstrap_problems,
    etcd_problems,
    fault_tolerance,
    member_of,
    quorum,
    recover_problems,
    recover_plan,
    recover_target,
    remove_problems,
    remove_request_problems,
    remove_targets,
    replica_targets,
    unlisted_members,
    replicate_problems,
    restore_problems,
    restore_target,
    reconfigure_problems,
    rolling_problems,
    zone_name_problems,
    zone_problems,
    zone_region,
)


def replica(name, zone):
    return {"name": name, "zone": zone, "region": zone.rsplit("-", 1)[0]}


ONE = [replica("k-master", "europe-west1-b")]
THREE = ONE + [replica("k-master-c", "europe-west1-c"), replica("k-master-d", "europe-west1-d")]


def test_zone_region():
    assert zone_region("europe-west1-c") == "europe-west1"
    with pytest.raises(AnsibleFilterError, match="zone 'europe-west1' is not a Compute Engine zone name"):
        zone_region("europe-west1")


@pytest.mark.parametrize("voters, majority, tolerated", [(1, 1, 0), (2, 2, 0), (3, 2, 1), (4, 3, 1), (5, 3, 2)])
def test_quorum_and_fault_tolerance(voters, majority, tolerated):
    assert quorum(voters) == majority and fault_tolerance(voters) == tolerated


def test_two_zones_in_one_run_take_one_replica_to_three():
    assert replicate_problems(ONE, "europe-west1-c,europe-west1-d") == []
    assert replicate_problems(ONE, ["europe-west1-c", "europe-west1-d"]) == []


def test_one_zone_on_one_replica_is_refused_with_the_reason_and_the_way_forward():
    problems = replicate_problems(ONE, "europe-west1-c")
    assert problems == [
        "this would make 2 replicas, an even number: etcd needs a majority (2 of 2), so 2 replicas survive no more "
        "failures than 1 do; add one more zone in the same run (for example zone=europe-west1-c,<another zone>) "
        "to reach 3, or set allow_even=true to do it anyway"]
    assert replicate_problems(ONE, "europe-west1-c", allow_even=True) == []


def test_zone_rules():
    problems = replicate_problems(THREE, "us-east1-b,europe-west1-b")
    assert any("zone us-east1-b is in region us-east1, but the cluster's masters are in region europe-west1" in p
               for p in problems)
    assert any("zone europe-west1-b already holds replica k-master" in p for p in problems)
    assert replicate_problems(THREE, "europe-west1-b,europe-west1-c", allow_same_zone=True) == []
    assert replicate_problems(THREE, "eu-west,europe-west1-c,europe-west1-c", allow_same_zone=True, allow_even=True) == [
        "zone 'eu-west' is not a Compute Engine zone name such as europe-west1-c",
        "zone europe-west1-c is given twice; give each zone once"]
    assert replicate_problems(THREE, "") == [
        "no zone was given: set zone, for example zone=europe-west1-c (or several: zone=europe-west1-c,europe-west1-d)"]
    # The first replica of a cluster: the region comes from the zone.
    assert replicate_problems([], "europe-west1-b") == []


def test_remove_rules():
    assert remove_problems(THREE, name="k-master-c") == []
    assert remove_problems(THREE, zone="europe-west1-d") == []
    assert remove_problems(ONE, name="k-master") == [
        "k-master is the cluster's last replica: removing it would remove the cluster's control plane and its data; "
        "it is never removed"]
    assert remove_problems(THREE, name="nope") == [
        "the cluster has no replica named nope; its replicas: k-master (europe-west1-b), k-master-c (europe-west1-c), "
        "k-master-d (europe-west1-d)"]
    two_in_b = THREE + [replica("k-master-b2", "europe-west1-b")]
    assert remove_problems(two_in_b, zone="europe-west1-b") == [
        "zone europe-west1-b holds 2 replicas (k-master, k-master-b2): set replica_name to say which one"]
    assert remove_problems(THREE) == [
        "say which replica to remove: set replica_name, or zone when the zone holds only one replica"]


def test_the_member_of_a_replica_by_name_or_else_by_its_internal_ip_in_either_etcd():
    target = dict(replica("k-master-d", "europe-west1-d"), internal_ip="10.132.0.4")
    main = {"members": [member("k-master", "10.132.0.2"), member("", "10.132.0.4", learner=True)]}
    events = {"members": [dict(member("k-master", "10.132.0.2"), peer_urls=["https://10.132.0.2:2381"]),
                          dict(member("k-master-d", "10.132.0.9"), peer_urls=["https://10.132.0.9:2381"])]}
    # A learner that never started is found by the IP it peers on, whatever the port.
    assert member_of(main, target)["is_learner"] is True
    # The name comes first: a member that kept its name but peers elsewhere (a replica that moved) is still its own.
    assert member_of(events, target)["peer_urls"] == ["https://10.132.0.9:2381"]
    assert member_of({"members": [member("k-master", "10.132.0.2")]}, target) == {}
    assert member_of({}, target) == {}


def test_remove_from_a_zone_that_does_not_answer_is_left_to_etcd():
    listed = [replica("k-master", "europe-west1-b"), replica("k-master-d", "europe-west1-d")]
    # Its replicas are not listed; which one it is, etcd says (unlisted_members).
    assert remove_problems(listed, zone="europe-west1-c", unavailable=["europe-west1-c"]) == []
    assert remove_problems(listed, name="k-master-c", zone="europe-west1-c", unavailable=["europe-west1-c"]) == []
    # A replica must stay to change etcd and the load balancer through.
    assert remove_problems([], zone="europe-west1-c", unavailable=["europe-west1-c"]) == [
        "no replica of the cluster answers outside zone europe-west1-c: nothing would stay to take the replica out of "
        "etcd and the load balancer"]
    # Another zone's outage changes nothing about a zone that answers.
    assert remove_problems(listed, zone="europe-west1-c", unavailable=["europe-west1-d"]) == [
        "the cluster has no replica in zone europe-west1-c; its replicas: k-master (europe-west1-b), k-master-d "
        "(europe-west1-d)"]


def test_the_members_of_replicas_that_could_not_be_listed():
    listed = [dict(replica("k-master", "europe-west1-b"), internal_ip="10.132.0.2"),
              dict(replica("k-master-d", "europe-west1-d"), internal_ip="10.132.0.4")]
    info = {"members": [member("k-master", "10.132.0.2"), member("k-master-c", "10.132.0.3", healthy=False),
                        member("", "10.132.0.4", learner=True)]}  # k-master-d's learner, not started: no name yet
    assert [m["name"] for m in unlisted_members(info, listed)] == ["k-master-c"]
    assert unlisted_members(info, listed + [replica("k-master-c", "europe-west1-c")]) == []


def test_remove_of_a_replica_already_gone_is_fine_only_when_asked_for():
    assert remove_problems(THREE, name="nope", absent_ok=True) == []
    assert remove_problems(ONE, zone="europe-west1-c", absent_ok=True) == []
    assert remove_problems(ONE, zone="europe-west1-c") == [
        "the cluster has no replica in zone europe-west1-c; its replicas: k-master (europe-west1-b)"]
    # The other rules still hold.
    assert remove_problems(ONE, name="k-master", absent_ok=True) != []
    two_in_b = THREE + [replica("k-master-b2", "europe-west1-b")]
    assert remove_problems(two_in_b, zone="europe-west1-b", absent_ok=True) != []
    assert remove_problems(THREE, absent_ok=True) != []


def test_zone_names_are_checked_before_anything_is_read():
    assert zone_name_problems("europe-west1-c") == []
    assert zone_name_problems("europe-west1-c, europe-west1-d") == []
    assert zone_name_problems(["europe-west1-c"]) == []
    assert zone_name_problems("") == ["no zone was given: set zone, for example zone=europe-west1-c"]
    assert zone_name_problems(None) == ["no zone was given: set zone, for example zone=europe-west1-c"]
    assert zone_name_problems("europe-west1,europe-west1-c") == [
        "zone 'europe-west1' is not a Compute Engine zone name such as europe-west1-c"]


KNOWN = [{"name": "europe-west1-b", "status": "UP"}, {"name": "europe-west1-c", "status": "UP"},
         {"name": "europe-west1-d", "status": "DOWN"}]


def test_zones_must_exist_and_be_up():
    assert zone_problems("europe-west1-b,europe-west1-c", KNOWN, "europe-west1") == []
    assert zone_problems("europe-west1-z", KNOWN, "europe-west1") == [
        "zone europe-west1-z does not exist in region europe-west1; its zones: europe-west1-b, europe-west1-c, europe-west1-d"]
    assert zone_problems("us-east1-b", KNOWN, "europe-west1") == [
        "zone us-east1-b is in region us-east1, but the cluster's masters are in region europe-west1: every replica of a "
        "cluster must be in one region; choose a zone of europe-west1 (europe-west1-b, europe-west1-c)"]
    assert zone_problems(["europe-west1-d"], KNOWN, "europe-west1") == [
        "zone europe-west1-d is DOWN; zones of europe-west1 that are up: europe-west1-b, europe-west1-c"]


def test_a_zone_that_does_not_answer_is_named_as_such():
    known = KNOWN[:1] + [{"name": "europe-west1-c", "status": "UNAVAILABLE"}] + KNOWN[2:]
    assert zone_problems("europe-west1-c", known, "europe-west1") == [
        "zone europe-west1-c does not answer Compute Engine (a zone outage): nothing can be made or changed there "
        "until it does; zones of europe-west1 that answer: europe-west1-b"]
    # A run that only takes a replica out may name it (remove).
    assert zone_problems("europe-west1-c", known, "europe-west1", unavailable_ok=True) == []
    assert zone_problems("europe-west1-d", known, "europe-west1", unavailable_ok=True) != []


def test_bootstrap_only_creates_or_checks_the_first_replica():
    assert bootstrap_problems([], "k", "europe-west1-b") == []
    # A re-run finds the first replica where it was made.
    assert bootstrap_problems(ONE, "k", "europe-west1-b") == []
    moved = bootstrap_problems(ONE, "k", "europe-west1-c")
    assert moved == ["cluster k already has replicas (k-master in europe-west1-b): bootstrap only creates or checks "
                     "its first replica k-master in europe-west1-c; use replicate to add replicas, recover to replace "
                     "one, and status to look"]
    assert "k-master-c in europe-west1-c" in bootstrap_problems(THREE, "k", "europe-west1-b")[0]


def test_replica_targets_are_named_after_their_zone_so_a_rerun_finds_them():
    assert replica_targets(ONE, "europe-west1-c,europe-west1-d", "k") == [
        {"name": "k-master-c", "zone": "europe-west1-c", "exists": False},
        {"name": "k-master-d", "zone": "europe-west1-d", "exists": False}]
    assert replica_targets(THREE, "europe-west1-c", "k") == [{"name": "k-master-c", "zone": "europe-west1-c", "exists": True}]
    assert replica_targets(ONE, "europe-west1-c", "k", "k-master-x1") == [
        {"name": "k-master-x1", "zone": "europe-west1-c", "exists": False}]
    with pytest.raises(AnsibleFilterError, match="replica_name names one replica, but 2 zones were given"):
        replica_targets(ONE, "europe-west1-c,europe-west1-d", "k", "k-master-x1")
    with pytest.raises(AnsibleFilterError, match="replica k-master already exists in zone europe-west1-b, not europe-west1-c"):
        replica_targets(ONE, "europe-west1-c", "k", "k-master")


def member(name, ip, healthy=True, learner=False, error=None):
    return {"name": name, "peer_urls": ["https://%s:2380" % ip], "healthy": healthy, "is_learner": learner,
            "error": error}


def etcd(*members):
    voters = [m for m in members if not m["is_learner"]]
    healthy = [m for m in voters if m["healthy"]]
    return {"members": list(members), "has_quorum": len(healthy) >= len(voters) // 2 + 1}


def test_etcd_rules_before_a_membership_change():
    a, b, c = member("k-master", "10.132.0.2"), member("k-master-c", "10.132.0.3"), member("k-master-d", "10.132.0.4")
    assert etcd_problems(etcd(a, b, c)) == []
    sick = member("k-master-c", "10.132.0.3", healthy=False, error="connection refused")
    assert etcd_problems(etcd(a, sick, c)) == [
        "etcd member k-master-c (https://10.132.0.3:2380) is unhealthy (connection refused): membership changes wait "
        "until every other member is healthy; recover it first (recover -e replica_name=k-master-c)"]
    # The member a run is there to replace or finish is no reason to stop.
    assert etcd_problems(etcd(a, sick, c), ["k-master-c"]) == []
    # A learner that has not started has no name yet: found by the IP of the replica it is for.
    pending = member("", "10.132.0.5", healthy=False, learner=True)
    assert "a learner that was never promoted" in etcd_problems(etcd(a, b, c, pending))[0]
    assert etcd_problems(etcd(a, b, c, pending), [{"name": "k-master-e", "internal_ip": "10.132.0.5"}]) == []
    lost = etcd(a, member("k-master-c", "10.132.0.3", healthy=False), member("k-master-d", "10.132.0.4", healthy=False))
    assert etcd_problems(lost)[0].startswith("etcd has no quorum: 1 of 3 voting members are healthy, and 2 are needed")


def test_removal_keeps_a_quorum_of_healthy_voters():
    a, b, c = member("k-master", "10.132.0.2"), member("k-master-c", "10.132.0.3"), member("k-master-d", "10.132.0.4")
    assert etcd_problems(etcd(a, b, c), ["k-master-d"], removing=True) == []
    sick = member("k-master-c", "10.132.0.3", healthy=False)
    # Removing the sick one from three leaves two healthy of two: fine.
    assert etcd_problems(etcd(a, sick, c), ["k-master-c"], removing=True) == []
    # Removing a healthy one while another is sick: refused twice over.
    problems = etcd_problems(etcd(a, sick, c), ["k-master-d"], removing=True)
    assert any("is unhealthy" in p for p in problems)
    assert "after the removal 2 voting members stay, of which 1 are healthy, fewer than the 2" in problems[-1]


def test_the_filters_are_registered():
    names = ["bootstrap_problems", "etcd_problems", "etcd_restartable", "fault_tolerance", "member_of", "quorum",
             "reconfigure_problems", "recover_plan", "recover_problems", "recover_target", "remove_problems",
             "remove_request_problems", "remove_targets", "replica_targets", "replicate_problems", "resource_names",
             "restore_problems", "restore_target", "rolling_problems", "unlisted_members", "zone_name_problems",
             "zone_problems", "zone_region"]
    assert sorted(FilterModule().filters()) == names
    assert FilterModule().filters()["resource_names"]("k")["address"] == "k-master-ip"


def test_recover_rules():
    assert recover_problems(THREE, zone="europe-west1-c") == []
    # A replica whose VM is gone is recovered by name.
    assert recover_problems(ONE + [replica("k-master-d", "europe-west1-d")], name="k-master-c") == []
    assert recover_problems(ONE, zone="europe-west1-c")[0].startswith(
        "the cluster has no replica in zone europe-west1-c; its replicas: k-master (europe-west1-b). If the VM")
    assert recover_problems(ONE, zone="europe-west1-b")[0].startswith("k-master is the cluster's only replica")
    assert recover_problems(ONE, name="k-master")[0].startswith("k-master is the cluster's only replica")
    two_in_c = THREE + [replica("k-master-c2", "europe-west1-c")]
    assert recover_problems(two_in_c, zone="europe-west1-c") == [
        "zone europe-west1-c holds 2 replicas (k-master-c, k-master-c2): set replica_name to say which one"]
    assert recover_problems(THREE)[0].startswith("say which replica to recover")


def test_a_replica_whose_vm_is_gone_is_found_in_its_zone_by_its_data_disk():
    # A recover stopped right after it deleted the VM: the same command finds the replica by its data disk.
    detached = [{"name": "k-master-c-pd", "zone": "europe-west1-c", "replica": "k-master-c"}]
    two = [r for r in THREE if r["name"] != "k-master-c"]
    assert recover_problems(two, zone="europe-west1-c", detached=detached) == []
    assert recover_target(two, zone="europe-west1-c", detached=detached) == "k-master-c"
    assert recover_target(THREE, zone="europe-west1-c", detached=detached) == "k-master-c"
    assert recover_target(two, name="k-master-x", zone="europe-west1-c", detached=detached) == "k-master-x"
    # Two data disks without a VM in the zone: the name is needed.
    both = detached + [{"name": "k-master-c2-pd", "zone": "europe-west1-c", "replica": "k-master-c2"}]
    assert recover_target(two, zone="europe-west1-c", detached=both) == ""
    assert recover_problems(two, zone="europe-west1-c", detached=both)[0].startswith(
        "the cluster has no replica in zone europe-west1-c")


def test_a_replica_has_failed_when_its_vm_its_member_or_the_load_balancer_says_so():
    well = {"name": "k-master-c", "status": "RUNNING"}
    voter = {"name": "k-master-c", "healthy": True, "is_learner": False}
    balanced = {"state": "balanced", "members": [{"name": "k-master"}, {"name": "k-master-c"}]}
    assert recover_plan(well, voter, balanced) == {"failed": False, "why": [], "reuse": True}
    # A single replica's cluster has no load balancer to be out of.
    assert recover_plan(well, voter, {"state": "single", "members": [{"name": "k-master"}]})["failed"] is False
    assert recover_plan(well, voter, dict(balanced, members=[{"name": "k-master"}]))["why"] == [
        "the load balancer does not send it requests"]
    assert recover_plan(dict(well, status="TERMINATED"), dict(voter, healthy=False), balanced)["why"] == [
        "its VM is TERMINATED", "its etcd member is unhealthy"]
    assert recover_plan({"name": "k-master-c"}, {}, balanced) == {
        "failed": True, "why": ["its VM is gone", "its etcd member is missing"], "reuse": False}
    # A learner never became a voter: auto replaces it; reuse_disk is what the user asked for (and refused elsewhere).
    learner = recover_plan(well, dict(voter, is_learner=True), balanced)
    assert learner["why"] == ["its etcd member is only a learner"] and learner["reuse"] is False
    assert recover_plan(well, dict(voter, is_learner=True), balanced, "reuse_disk")["reuse"] is True
    assert recover_plan(well, voter, balanced, "replace")["reuse"] is False
    # With an events etcd, its member there is judged the same way, and the disk is reused only when both are voters.
    assert recover_plan(well, voter, balanced, events=voter) == {"failed": False, "why": [], "reuse": True}
    gone = recover_plan(well, voter, balanced, events={})
    assert gone["why"] == ["its events etcd member is missing"] and gone["reuse"] is False
    assert recover_plan(well, voter, balanced, events=dict(voter, is_learner=True))["why"] == [
        "its events etcd member is only a learner"]


def running(replicas):
    return [dict(r, status="RUNNING") for r in replicas]


def etcd_read(has_quorum, voters=3, healthy=1, names=("k-master", "k-master-c", "k-master-d")):
    return {"has_quorum": has_quorum, "voters": voters, "healthy_voters": healthy,
            "members": [{"name": n, "is_learner": False} for n in names]}


def test_restore_rules():
    lost = etcd_read(False)
    assert restore_problems(running(THREE), zone="europe-west1-b", etcd=lost) == []
    assert restore_target(running(THREE), zone="europe-west1-b")["name"] == "k-master"
    assert restore_target(running(THREE), name="k-master-x") == {}
    # Refused while etcd has its quorum: a restore throws away the writes since the snapshot.
    [problem] = restore_problems(running(THREE), name="k-master", etcd=etcd_read(True, healthy=2))
    assert problem.startswith("etcd has its quorum (2 of 3 voting members healthy, 2 needed): a restore is for a "
                              "majority lost for good")
    # ... unless it finishes a restore: the restored replica alone in its new cluster.
    alone = etcd_read(True, voters=1, healthy=1, names=("k-master",))
    assert restore_problems(running(THREE), name="k-master", etcd=alone, restored=True) == []
    assert restore_problems(running(ONE), name="k-master", etcd=alone)[0].startswith("etcd has its quorum (1 of 1")
    # Grown back after a restore: refused again.
    assert restore_problems(running(THREE), name="k-master", etcd=etcd_read(True, healthy=3), restored=True)
    # The replica: found, running, in a zone that answers.
    stopped = [dict(r, status="TERMINATED") if r["name"] == "k-master" else dict(r, status="RUNNING") for r in THREE]
    assert restore_problems(stopped, zone="europe-west1-b", etcd=lost) == [
        "k-master is TERMINATED: etcd is restored on a running replica; start its VM (or recover it), or name another"]
    [problem] = restore_problems(running(ONE), zone="europe-west1-c", unavailable=["europe-west1-c"], etcd=lost)
    assert problem.startswith("the cluster has no replica in zone europe-west1-c in the zones that answer (zones that "
                              "do not answer: europe-west1-c); its replicas: k-master (europe-west1-b, RUNNING)")
    two_in_c = running(THREE + [replica("k-master-c2", "europe-west1-c")])
    assert restore_problems(two_in_c, zone="europe-west1-c", etcd=lost)[0].startswith("zone europe-west1-c holds 2")
    assert restore_problems(THREE)[0].startswith("say which replica to restore etcd on")
    # A running replica whose etcd could not be read may hold the quorum: refused, naming it.
    [problem] = restore_problems(running(THREE), name="k-master", etcd=lost, unread=["k-master-d"])
    assert problem.startswith("etcd could not be read through the running replica(s) k-master-d, which may still hold")
    assert restore_problems(running(THREE), name="k-master", etcd=alone, restored=True, unread=["k-master-d"]) == []
    # A restore stopped halfway: the replica's own etcd is down for it, which is no reason to refuse.
    assert restore_problems(running(ONE), name="k-master", etcd={}, restored=True, pending=True, unread=["k-master"]) == []
    assert restore_problems(running(ONE), name="k-master", etcd={}, restored=True, unread=["k-master"])


FIVE = [dict(r, status="RUNNING", internal_ip=ip) for r, ip in zip(
    THREE + [replica("k-master-e", "europe-west1-e"), replica("k-master-f", "europe-west1-f")],
    ("10.132.0.2", "10.132.0.3", "10.132.0.4", "10.132.0.5", "10.132.0.6"))]
RUNNING3 = FIVE[:3]


def membership(replicas, leader="k-master", **health):
    info = etcd(*[member(r["name"], r["internal_ip"], healthy=health.get(r["name"].replace("-", "_"), True))
                  for r in replicas])
    info["leader"] = {"name": leader}
    return info


def names(targets):
    return [t["name"] for t in targets]


def test_remove_targets_by_zone_or_name_with_the_leader_last():
    info = membership(FIVE, leader="k-master-d")
    assert names(remove_targets(FIVE, zones="europe-west1-d,europe-west1-e", etcd=info)) == ["k-master-e", "k-master-d"]
    assert names(remove_targets(FIVE, names="k-master-f, k-master-c", zones="europe-west1-b", etcd=info)) == [
        "k-master-f", "k-master-c"]
    healthy = remove_targets(FIVE, names="k-master-c", etcd=info)
    assert healthy == [{"name": "k-master-c", "zone": "europe-west1-c", "internal_ip": "10.132.0.3", "given": "name",
                        "exists": True, "failed": False}]
    # Lost already: its member unhealthy, so it goes first; a name that is not listed keeps the zone given.
    sick = remove_targets(FIVE, names="k-master-d,k-master-c,k-master-x", zones="europe-west1-b",
                          etcd=membership(FIVE, k_master_c=False))
    assert [(t["name"], t["zone"], t["exists"], t["failed"]) for t in sick] == [
        ("k-master-c", "europe-west1-c", True, True), ("k-master-x", "europe-west1-b", False, True),
        ("k-master-d", "europe-west1-d", True, False)]


def test_remove_target_in_a_zone_that_does_not_answer_is_the_member_of_no_listed_replica():
    listed = [r for r in RUNNING3 if r["name"] != "k-master-d"]
    down = membership(RUNNING3, k_master_d=False)
    [target] = remove_targets(listed, zones="europe-west1-d", etcd=down, unavailable=["europe-west1-d"])
    assert target == {"name": "k-master-d", "zone": "europe-west1-d", "internal_ip": None, "given": "zone", "exists": True,
                      "failed": True}
    # Lost already, so removing it from three is no even-count question.
    assert remove_request_problems(listed, [target], down, unavailable=["europe-west1-d"]) == []
    # Only Compute Engine does not answer there: its member is healthy, and leaving two is a choice.
    api_only = remove_targets(listed, zones="europe-west1-d", etcd=membership(RUNNING3), unavailable=["europe-west1-d"])
    assert api_only[0]["failed"] is False
    assert "leave 2 replicas" in remove_request_problems(listed, api_only, membership(RUNNING3), unavailable=["europe-west1-d"])[0]
    # By name alone: the one zone that does not answer holds it.
    assert remove_targets(listed, names="k-master-d", etcd=down, unavailable=["europe-west1-d"]) == [
        {"name": "k-master-d", "zone": "europe-west1-d", "internal_ip": None, "given": "name", "exists": True, "failed": True}]
    # Two members of no listed replica: etcd cannot say which is in the zone.
    two_out = [RUNNING3[0]]
    [unnamed] = remove_targets(two_out, zones="europe-west1-d", etcd=membership(RUNNING3), unavailable=["europe-west1-d"])
    assert unnamed["name"] == "" and "set replica_name to say which replica to remove" in remove_request_problems(
        two_out, [unnamed], membership(RUNNING3), unavailable=["europe-west1-d"])[0]


def test_a_removal_that_leaves_an_even_count_is_refused_with_the_way_forward():
    info = membership(RUNNING3)
    one = remove_targets(RUNNING3, zones="europe-west1-d", etcd=info)
    assert remove_request_problems(RUNNING3, one, info) == [
        "this would leave 2 replicas, an even number: etcd needs a majority (2 of 2), so 2 replicas survive no more "
        "failures than 1 do; remove one more in the same run (for example zone=europe-west1-d,<another zone>) to leave "
        "1, or set allow_even=true to do it anyway"]
    assert remove_request_problems(RUNNING3, one, info, allow_even=True) == []
    two = remove_targets(RUNNING3, zones="europe-west1-c,europe-west1-d", etcd=info)
    assert remove_request_problems(RUNNING3, two, info) == []
    # The events etcd is checked step by step as the main one is: a member of it that is down stops the run first.
    assert remove_request_problems(RUNNING3, two, info, events=membership(RUNNING3)) == []
    sick = membership(RUNNING3, k_master=False)
    assert remove_request_problems(RUNNING3, two, info, events=sick)[0].startswith(
        "before k-master-c is removed: events etcd: etcd member k-master (https://10.132.0.2:2380) is unhealthy")
    five = membership(FIVE)
    assert remove_request_problems(FIVE, remove_targets(FIVE, zones="europe-west1-e,europe-west1-f", etcd=five), five) == []
    assert "leave 4 replicas" in remove_request_problems(FIVE, remove_targets(FIVE, zones="europe-west1-f", etcd=five), five)[0]
    by_name = remove_targets(FIVE, names="k-master-f", etcd=five)
    assert "(for example replica_name=k-master-f,<another replica>) to leave 3" in remove_request_problems(FIVE, by_name, five)[0]
    # From two to one: odd.
    assert remove_request_problems(RUNNING3[:2], remove_targets(RUNNING3[:2], zones="europe-west1-c"), None) == []
    # A failed replica goes without the question: the cluster lives with one fewer either way.
    sick = membership(RUNNING3, k_master_d=False)
    assert remove_request_problems(RUNNING3, remove_targets(RUNNING3, zones="europe-west1-d", etcd=sick), sick) == []


def test_a_remove_request_is_checked_whole_before_anything_changes():
    info = membership(RUNNING3)
    assert remove_request_problems(RUNNING3, remove_targets(RUNNING3, names="k-master,k-master-c,k-master-d", etcd=info),
                                   info) == [
        "this would leave no running replica that answers Compute Engine (k-master, k-master-c, k-master-d would go): "
        "the last one is never removed, and etcd is changed through one that stays"]
    mistyped = remove_targets(RUNNING3, zones="europe-west1-c,europe-west1-x", etcd=info)
    assert remove_request_problems(RUNNING3, mistyped, info)[0].startswith("the cluster has no replica in zone europe-west1-x")
    assert remove_request_problems(RUNNING3, mistyped, info, absent_ok=True) == [
        "this would leave 2 replicas, an even number: etcd needs a majority (2 of 2), so 2 replicas survive no more "
        "failures than 1 do; remove one more in the same run (for example zone=europe-west1-c,<another zone>) to "
        "leave 1, or set allow_even=true to do it anyway"]
    twice = remove_targets(RUNNING3, names="k-master-c,k-master-c", etcd=info)
    assert "k-master-c is given twice; give each replica once" in remove_request_problems(RUNNING3, twice, info)
    assert remove_request_problems(RUNNING3, [], info)[0].startswith("say which replicas to remove")


def test_a_remove_request_is_checked_against_etcd_step_by_step():
    # Two of five lost: etcd changes wait until every member but the one changed is healthy, so the run could remove
    # neither; it is refused before the first.
    two_lost = membership(FIVE, k_master_e=False, k_master_f=False)
    targets = remove_targets(FIVE, zones="europe-west1-e,europe-west1-f", etcd=two_lost)
    [problem] = remove_request_problems(FIVE, targets, two_lost)
    assert problem.startswith("before k-master-e is removed: etcd member k-master-f (https://10.132.0.6:2380) is unhealthy")
    # One lost, one healthy: the lost one goes first, and every step keeps a quorum of healthy voters.
    one_lost = membership(FIVE, k_master_e=False)
    targets = remove_targets(FIVE, zones="europe-west1-d,europe-west1-e", etcd=one_lost)
    assert names(targets) == ["k-master-e", "k-master-d"] and remove_request_problems(FIVE, targets, one_lost) == []


def test_a_learner_that_never_started_is_found_by_its_ip_and_may_go():
    pending = dict(member("", "10.132.0.4", healthy=False, learner=True), name="")
    info = etcd(member("k-master", "10.132.0.2"), member("k-master-c", "10.132.0.3"), pending)
    info["leader"] = {"name": "k-master"}
    targets = remove_targets(RUNNING3, zones="europe-west1-d", etcd=info)
    assert targets[0]["name"] == "k-master-d" and targets[0]["failed"] is True
    assert remove_request_problems(RUNNING3, targets, info) == []


def test_an_etcd_member_without_its_vm_is_recovers_not_removes():
    info = membership(RUNNING3)
    listed = RUNNING3[:2]
    targets = remove_targets(listed, names="k-master-d", zones="europe-west1-b", etcd=info)
    assert remove_request_problems(listed, targets, info, absent_ok=True) == [
        "k-master-d has no VM, but etcd still has its member: that is a failed replica, which recover makes again "
        "(recover -e replica_name=k-master-d); remove it once it runs"]


def cluster_read(unit, voters, healthy, own=None):
    members = [{"name": "k-master-c", "is_learner": False, "healthy": True}] if own is None else [own]
    return {"item": {"unit": unit}, "voters": voters, "healthy_voters": healthy, "quorum": voters // 2 + 1,
            "members": members}


def test_etcd_restartable_when_its_cluster_can_do_without_it():
    assert etcd_restartable([cluster_read("etcd", 3, 3), cluster_read("etcd-events", 3, 2)], "k-master-c") == ["etcd"]
    # One or two voters, all healthy: the restart is the only way (two lose their majority for seconds).
    assert etcd_restartable([cluster_read("etcd", 1, 1), cluster_read("etcd-events", 2, 2)], "k-master-c") == [
        "etcd", "etcd-events"]
    assert etcd_restartable([cluster_read("etcd", 2, 1)], "k-master-c") == []
    # Not a healthy voter itself: restarting it costs the cluster nothing.
    unhealthy = {"name": "k-master-c", "is_learner": False, "healthy": False}
    learner = {"name": "k-master-c", "is_learner": True, "healthy": True}
    assert etcd_restartable([cluster_read("etcd", 3, 2, unhealthy), cluster_read("etcd-events", 3, 2, learner)],
                            "k-master-c") == ["etcd", "etcd-events"]
    # A cluster that could not be read through the member is not judged safe.
    assert etcd_restartable([{"item": {"unit": "etcd"}, "failed": True, "msg": "connection refused"}], "k-master-c") == []


def test_a_rolling_change_waits_for_every_replica_and_a_healthy_etcd():
    info = membership(RUNNING3)
    names3 = [r["name"] for r in RUNNING3]
    assert rolling_problems(RUNNING3, "rotate-certs", [], names3, info, info) == []
    stopped = [RUNNING3[0], dict(RUNNING3[1], status="TERMINATED"), RUNNING3[2]]
    sick = membership(RUNNING3, k_master_d=False)
    sick["members"][2]["error"] = "connection refused"
    assert rolling_problems(stopped, "rotate-certs", ["europe-west1-f"], ["k-master"], sick) == [
        "zone europe-west1-f does not answer Compute Engine, and a replica there would be left out: rotate-certs once it "
        "answers",
        "replica k-master-c in zone europe-west1-c is TERMINATED: recover it first (recover -e replica_name=k-master-c)",
        "replica k-master-d in zone europe-west1-d does not answer over SSH: reach it, or recover it (recover -e "
        "replica_name=k-master-d)",
        "etcd member k-master-d (https://10.132.0.4:2380) is unhealthy (connection refused): recover it first (recover -e "
        "replica_name=k-master-d)"]
    learner = etcd(member("k-master", "10.132.0.2"), member("k-master-c", "10.132.0.3", learner=True))
    assert rolling_problems(RUNNING3[:2], "upgrade", events=learner) == [
        "events etcd member k-master-c (https://10.132.0.3:2380) is a learner that was never promoted: run replicate "
        "again to finish it, or remove it (remove -e replica_name=k-master-c)"]
    assert rolling_problems(RUNNING3, "reconfigure", etcd=membership(RUNNING3[:2])) == [
        "replica k-master-d has no etcd member (a replicate that stopped before it joined): run replicate again to "
        "finish it, or remove it (remove -e replica_name=k-master-d)"]
    lost = membership(RUNNING3, k_master_c=False, k_master_d=False)
    assert rolling_problems(RUNNING3, "upgrade", etcd=lost) == ["etcd has no quorum (1 of 3 voting members healthy)"]


UNIT = """# Ansible managed
[Service]
ExecStart=/opt/kubernetes/bin/kube-apiserver \\
  --advertise-address=10.132.0.2 \\
  --service-cluster-ip-range=%s \\
  --tls-cert-file=/etc/kubernetes/pki/apiserver.crt

Restart=always
"""
ETCD_UNIT = """[Service]
ExecStart=/usr/local/bin/etcd \\
  --name=k-master \\
  --data-dir=/mnt/disks/master-pd/var/etcd/data \\
  --listen-peer-urls=https://10.132.0.2:2380 \\
  --listen-client-urls=https://127.0.0.1:2379,https://10.132.0.2:2379
"""
WANTED = {"kube-apiserver": {"service-cluster-ip-range": "10.0.0.0/16"},
          "etcd": {"data-dir": "/mnt/disks/master-pd/var/etcd/data", "listen-peer-urls": 2380},
          "etcd-events": {"data-dir": "/mnt/disks/master-pd/var/etcd/data-events", "listen-peer-urls": 2381}}


def unit_read(name, apiserver, etcd=ETCD_UNIT):
    files = {"/etc/systemd/system/kube-apiserver.service": {"content": apiserver},
             "/etc/systemd/system/etcd.service": {"content": etcd}}
    return {"item": {"name": name}, "files": files}


def test_the_service_range_and_the_etcd_data_and_peer_port_of_a_running_cluster_stay():
    reads = [unit_read("k-master", UNIT % "10.0.0.0/16"), unit_read("k-master-c", UNIT % "10.0.0.0/16")]
    assert reconfigure_problems(reads, WANTED) == []
    assert reconfigure_problems(reads, dict(WANTED, **{"kube-apiserver": {"service-cluster-ip-range": "10.1.0.0/16"}})) == [
        "kube-apiserver on %s runs with --service-cluster-ip-range=10.0.0.0/16, and kubeha_service_cluster_ip_range (or "
        "kube-apiserver's extra flag service-cluster-ip-range) would make it 10.1.0.0/16: a running cluster cannot take "
        "that, as the kubernetes service and every Service's cluster IP were given from it (a new range means a new "
        "cluster); keep 10.0.0.0/16" % name for name in ("k-master", "k-master-c")]
    moved = dict(WANTED, etcd={"data-dir": "/srv/etcd", "listen-peer-urls": 2390})
    assert reconfigure_problems(reads[:1], moved) == [
        "etcd on k-master runs with --data-dir=/mnt/disks/master-pd/var/etcd/data, and kubeha_etcd_data_dir (or the etcd "
        "role's etcd_data_dir) would make it /srv/etcd: the member's data is there, and a member that starts on another "
        "directory starts empty; keep /mnt/disks/master-pd/var/etcd/data",
        "etcd on k-master runs with --listen-peer-urls=https://10.132.0.2:2380, and kubeha_etcd_peer_port would make it "
        "2390: the other members reach it at the peer URL that the membership holds, which a changed unit does not "
        "change; keep 2380"]
    # A unit that could not be read, or without the flag, says nothing.
    assert reconfigure_problems([{"item": {"name": "k-master"}, "failed": True},
                                 unit_read("k-master-c", "[Service]\nExecStart=/bin/true\n", etcd="")], moved) == []
