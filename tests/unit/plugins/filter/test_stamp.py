# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeha.gce.plugins.filter.stamp import FilterModule, stamp_digest, stamp_report


def test_the_digest_is_of_the_value_in_any_key_order_and_of_the_trees(tmp_path):
    one = stamp_digest({"a": 1, "b": [1, 2]})
    assert one.startswith("sha256:") and len(one) == 71
    assert stamp_digest({"b": [1, 2], "a": 1}) == one
    assert stamp_digest({"a": 2, "b": [1, 2]}) != one
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kube-apiserver").write_bytes(b"v1")
    with_tree = stamp_digest({"a": 1, "b": [1, 2]}, trees=[str(tmp_path / "bin"), ""])
    assert with_tree != one
    (tmp_path / "bin" / "kube-apiserver").write_bytes(b"v2")
    assert stamp_digest({"a": 1, "b": [1, 2]}, trees=[str(tmp_path / "bin")]) != with_tree
    with pytest.raises(AnsibleFilterError, match="does not exist on the controller"):
        stamp_digest({}, trees=[str(tmp_path / "nothing")])
    assert FilterModule().filters()["stamp_digest"] is stamp_digest


def test_the_report_names_each_replica_that_is_not_current_and_why():
    results = [
        {"item": {"name": "k-master"}, "current": True, "parts": {"pki": {"current": True, "differences": []}}},
        {"item": {"name": "k-master-c"}, "current": False,
         "parts": {"pki": {"current": True, "differences": []},
                   "services": {"current": False, "differences": ["/etc/gce.conf changed", "service etcd is inactive enabled"]}}},
        {"item": {"name": "k-master-d"}, "failed": True, "msg": "Failed to connect"},
        {"item": {"name": "k-master-e"}, "current": True, "parts": {}},
    ]
    members = [{"name": "k-master", "is_learner": False}, {"name": "k-master-c", "is_learner": False},
               {"name": "k-master-e", "is_learner": True}]
    assert stamp_report(results, members) == {
        "current": ["k-master"],
        "why": {"k-master-c": "services: /etc/gce.conf changed, service etcd is inactive enabled",
                "k-master-d": "could not be compared: Failed to connect",
                "k-master-e": "it is not a voting etcd member"}}
