# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeha.gce.plugins.filter.stamp import FilterModule, role_options, stamp_differences, stamp_digest, stamp_report


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
    def compared(name, ip, **parts):
        return {"item": {"name": name, "internal_ip": ip}, "current": all(not d for d in parts.values()),
                "parts": {p: {"current": not d, "differences": d, "drift": bool(d) and "inputs" not in d[0]}
                          for p, d in parts.items()}}

    results = [
        compared("k-master", "10.0.0.2", pki=[], services=["service kube-scheduler is inactive enabled"]),
        compared("k-master-b", "10.0.0.9", pki=[],
                 services=["the inputs changed (settings, IPs, versions, or the collection itself)"]),
        compared("k-master-c", "10.0.0.3", pki=[], services=["/etc/gce.conf changed", "service etcd is inactive enabled"]),
        {"item": {"name": "k-master-d"}, "unreachable": True, "msg": "Failed to connect"},
        compared("k-master-e", "10.0.0.5", pki=[], services=[]),
        compared("k-master-f", "10.0.0.6", pki=[], services=[]),
        compared("k-master-g", "10.0.0.7", pki=[], services=[]),
        compared("k-master-h", "10.0.0.8", pki=[], services=[]),
    ]

    def member(name, ip, healthy=True, learner=False):
        return {"name": name, "is_learner": learner, "healthy": healthy, "peer_urls": ["https://%s:2380" % ip]}

    members = [member("k-master", "10.0.0.2"), member("k-master-b", "10.0.0.9"), member("k-master-c", "10.0.0.3"),
               member("k-master-e", "10.0.0.5", learner=True), member("k-master-f", "10.0.0.6", healthy=False),
               member("k-master-g", "10.0.0.99"), member("k-master-h", "10.0.0.8")]
    assert stamp_report(results, members, certificates_only=["k-master", "k-master-b"],
                        expected=["k-master", "k-master-x"]) == {
        "current": ["k-master", "k-master-b", "k-master-h"],
        "why": {"k-master-c": "services: /etc/gce.conf changed, service etcd is inactive enabled",
                "k-master-d": "could not be compared: Failed to connect",
                "k-master-e": "it is not a voting etcd member",
                "k-master-f": "its etcd member is not healthy",
                "k-master-g": "its etcd member's peer URLs https://10.0.0.99:2380 are not at its internal IP",
                "k-master-x": "not compared: its VM is not running, or it did not answer over SSH"},
        "not_converged": {"k-master": "services: service kube-scheduler is inactive enabled"}}
    # With an events etcd, a replica must be a healthy voter there too, at its internal IP.
    events = [dict(member("k-master", "10.0.0.2"), peer_urls=["https://10.0.0.2:2381"]),
              dict(member("k-master-b", "10.0.0.9", learner=True), peer_urls=["https://10.0.0.9:2381"])]
    report = stamp_report(results, members, certificates_only=["k-master", "k-master-b"], events_members=events)
    assert report["current"] == ["k-master"]
    assert report["why"]["k-master-b"] == "it is not a voting events etcd member"
    assert report["why"]["k-master-h"] == "it is not a voting events etcd member"


def test_the_options_of_roles_come_from_their_argument_specs_or_defaults():
    options = role_options(["data_disk", "control_plane"])
    assert options[:3] == ["data_disk_device", "data_disk_fstype", "data_disk_mount"]
    assert "control_plane_extra_flags" in options and "control_plane_addon_manager_interval" in options
    with pytest.raises(AnsibleFilterError, match="cannot read the options of role nothing"):
        role_options(["nothing"])


def test_stamp_differences_name_the_parts_that_are_not_current():
    parts = {"services": {"current": False, "differences": ["/etc/gce.conf changed", "service etcd is failed enabled"]},
             "pki": {"current": True, "differences": []}}
    assert stamp_differences(parts) == ["services: /etc/gce.conf changed, service etcd is failed enabled"]
    assert stamp_differences({"pki": {"current": True, "differences": []}}) == []
    assert FilterModule().filters()["stamp_differences"] is stamp_differences
