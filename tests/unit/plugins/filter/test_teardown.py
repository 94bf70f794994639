# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.kubeha.gce.plugins.filter.teardown import FilterModule, teardown_report, teardown_targets

CLUSTER = {"replicas": [{"name": "k-master-c", "zone": "europe-west1-c"}, {"name": "k-master", "zone": "europe-west1-b"}],
           "detached_data_disks": [{"name": "k-master-d-pd", "zone": "europe-west1-d", "replica": "k-master-d"}]}
ADDRESS = {"name": "k-master-ip", "ip": "203.0.113.7", "users": []}


def test_the_replicas_and_the_disks_without_a_vm_sorted_by_name():
    assert teardown_targets(CLUSTER) == [{"name": "k-master", "zone": "europe-west1-b"},
                                         {"name": "k-master-c", "zone": "europe-west1-c"},
                                         {"name": "k-master-d", "zone": "europe-west1-d"}]


def test_nothing_in_a_zone_that_does_not_answer():
    down = dict(CLUSTER, unavailable_zones=[{"name": "europe-west1-c", "reason": "UNREACHABLE"}])
    assert [t["name"] for t in teardown_targets(down)] == ["k-master", "k-master-d"]


def test_kept_data_disks_leave_a_replica_without_a_vm_alone():
    assert [t["name"] for t in teardown_targets(CLUSTER, keep_data_disk=True)] == ["k-master", "k-master-c"]
    assert teardown_targets({"replicas": []}) == []


def test_every_deletion_is_said_in_order_and_the_address_is_kept_by_default():
    lines = teardown_report([{"actions": ["delete forwarding rule k-master"]},
                             {"actions": ["delete instance k-master", "delete disk k-master-pd"]},
                             {"skipped": True},
                             {"actions": ["delete firewall k-master-https"], "address": ADDRESS}], "k", "europe-west1")
    assert lines[0] == ("cluster k in region europe-west1, done: delete forwarding rule k-master; delete instance "
                        "k-master; delete disk k-master-pd; delete firewall k-master-https")
    assert lines[1].startswith("the reserved address k-master-ip (203.0.113.7) is kept, so that a cluster")
    assert lines[-1].startswith("worker nodes")


def test_a_deleted_address_and_kept_disks():
    lines = teardown_report([{"actions": ["delete instance k-master"], "kept_data_disk": {"name": "k-master-pd"}},
                             {"actions": ["delete address k-master-ip (europe-west1, 203.0.113.7)"], "address": None}],
                            "k", "europe-west1", delete_address=True)
    assert "data disks kept (keep_data_disk=true): k-master-pd" in lines
    assert "the reserved address k-master-ip is deleted" in lines


def test_check_mode_says_what_would_go_the_address_too():
    lines = teardown_report([{"actions": ["delete instance k-master"]}, {"actions": [], "address": dict(ADDRESS, users=["x"])}],
                            "k", "europe-west1", delete_address=True, check_mode=True)
    assert lines[0] == ("cluster k in region europe-west1, what a real run would do (check mode): delete instance k-master; "
                        "delete address k-master-ip (203.0.113.7)")


def test_a_zone_that_does_not_answer_keeps_the_address_and_is_named():
    lines = teardown_report([{"actions": []}, {"actions": [], "address": ADDRESS}], "k", "europe-west1",
                            unavailable=["europe-west1-d"], delete_address=True)
    assert lines[0] == "cluster k in region europe-west1: nothing of its masters is left in the zones that answer; nothing to do"
    assert any(line.startswith("the reserved address k-master-ip (203.0.113.7) is kept: a replica in a zone") for line in lines)
    assert any(line.startswith("zones that do not answer Compute Engine: europe-west1-d.") for line in lines)


def test_an_address_in_use_and_one_that_does_not_exist():
    used = teardown_report([{"actions": [], "address": dict(ADDRESS, users=["https://x/zones/z/instances/vm-1"])}], "k", "r")
    assert "the reserved address k-master-ip (203.0.113.7) is kept, in use by vm-1" in used
    assert "the reserved address k-master-ip does not exist" in teardown_report([{"actions": [], "address": None}], "k", "r")


def test_the_filters_are_registered():
    assert set(FilterModule().filters()) == {"teardown_targets", "teardown_report"}
