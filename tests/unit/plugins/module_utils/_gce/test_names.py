# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kubeha.gce.plugins.module_utils._gce import names


@pytest.mark.parametrize("value", ["a", "k-master", "k-master-c1x", "a" * 63, "a1"])
def test_valid_names(value):
    assert names.check_name(value, "name") == value


@pytest.mark.parametrize("value", ["", "1a", "a-", "A", "a_b", "a" * 64, "a.b"])
def test_invalid_names(value):
    with pytest.raises(names.InvalidInput):
        names.check_name(value, "name")


@pytest.mark.parametrize("zone, region", [
    ("europe-west1-c", "europe-west1"), ("us-central1-a", "us-central1"), ("northamerica-northeast2-b", "northamerica-northeast2"),
])
def test_region_of(zone, region):
    assert names.region_of(zone) == region


@pytest.mark.parametrize("zone", ["europe-west1", "europe-west1-", "europe-west1-bb", "EU-west1-b", "zone"])
def test_not_a_zone(zone):
    with pytest.raises(names.InvalidInput):
        names.region_of(zone)


def test_master_labels_add_the_collections_labels():
    assert names.master_labels("k", {"team": "x", "empty": None}) == {
        "team": "x", "empty": "", "kubeha-cluster": "k", "kubeha-role": "master"}
    with pytest.raises(names.InvalidInput, match="label 'kubeha-role' is set by the collection"):
        names.master_labels("k", {"kubeha-role": "worker"})
    with pytest.raises(names.InvalidInput, match="has value 'Big'"):
        names.master_labels("k", {"team": "Big"})


def test_metadata_keys_and_values():
    assert names.check_metadata({"startup-script": "echo", "n": 3}) == {"startup-script": "echo", "n": "3"}
    with pytest.raises(names.InvalidInput, match="metadata key 'a b'"):
        names.check_metadata({"a b": "x"})


def test_resource_names_are_kube_ups():
    assert names.resource_names("demo") == {
        "first_replica": "demo-master", "tag": "demo-master", "address": "demo-master-ip", "load_balancer": "demo-master",
        "health_check": "demo-master-hc",
        "firewall": {"https": "demo-master-https", "etcd": "demo-master-etcd", "ssh": "demo-master-ssh"}}
    assert names.replica_name("demo", "europe-west1-c") == "demo-master-c"
