# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeha.gce.plugins.filter.preflight import (
    FilterModule,
    fault_tolerance,
    quorum,
    remove_problems,
    replicate_problems,
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


def test_the_filters_are_registered():
    names = ["fault_tolerance", "quorum", "remove_problems", "replicate_problems", "zone_region"]
    assert sorted(FilterModule().filters()) == names
