# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.kubeha.gce.plugins.filter.rolling import FilterModule, rolling_report


def test_each_replica_says_what_was_issued_and_restarted():
    refreshed = [{"name": "k-master", "restarted": ["kube-scheduler"], "drained": False, "ready_after": 3.04,
                  "back_after": None},
                 {"name": "k-master-c", "restarted": ["etcd"], "drained": True, "ready_after": 1.0, "back_after": 2.0},
                 {"name": "k-master-c", "restarted": ["etcd", "kube-apiserver"], "drained": True, "ready_after": 21.26,
                  "back_after": 33.0}]
    issued = {"k-master": ["scheduler"], "k-master-c": ["apiserver", "etcd-peer"], "k-master-d": []}
    assert rolling_report(["k-master-d", "k-master-c", "k-master", "k-master-e"], issued, refreshed) == [
        "k-master-d: no certificate issued again; nothing restarted",
        "k-master-c: issued again apiserver, etcd-peer; restarted etcd, kube-apiserver (out of the load balancer: ready "
        "after 21.3 s, back after 33.0 s)",
        "k-master: issued again scheduler; restarted kube-scheduler (ready after 3.0 s)",
        "k-master-e: nothing restarted"]
    assert FilterModule().filters()["rolling_report"] is rolling_report
