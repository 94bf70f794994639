# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.kubeha.gce.plugins.filter.rolling import FilterModule, restarted_units, rolling_order, rolling_report


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
    reconverged = [{"name": "k-master", "restarted": [], "why": [], "drained": False, "ready_after": 2.0},
                   {"name": "k-master-c", "restarted": ["kube-apiserver"], "why": ["services: the inputs changed"],
                    "drained": True, "ready_after": 9.96, "back_after": 20.0}]
    reconverged.append({"name": "k-master-d", "current": True})
    reconverged.append({"name": "k-master-e", "restarted": ["kube-apiserver"], "left": ["etcd"], "drained": False,
                        "ready_after": 5.0})
    assert rolling_report(["k-master-d", "k-master-e"], refreshed=reconverged) == [
        "k-master-d: as it was converged, left as it is",
        "k-master-e: restarted kube-apiserver (ready after 5.0 s, the API down meanwhile: no other replica served it); "
        "still runs with older files: etcd (its cluster could not do without it)"]
    assert rolling_report(["k-master-c", "k-master"], refreshed=reconverged) == [
        "k-master-c: converged again (services: the inputs changed); restarted kube-apiserver (out of the load "
        "balancer: ready after 10.0 s, back after 20.0 s)",
        "k-master: converged again; nothing restarted"]


def test_restarted_units_are_those_with_another_main_process():
    # The same processes read twice: start times a few microseconds apart, the same PIDs.
    before = {"etcd": {"active": True, "pid": 101, "started": "2026-12-06T10:00:00.000001+00:00"},
              "kube-apiserver": {"active": True, "pid": 102, "started": "2026-12-06T10:00:01+00:00"},
              "kube-scheduler": {"active": False, "pid": None, "started": None},
              "kube-controller-manager": {"active": True, "pid": 103, "started": "2026-12-06T10:00:02+00:00"}}
    after = dict(before, **{"etcd": {"active": True, "pid": 101, "started": "2026-12-06T10:00:00.000004+00:00"},
                            "kube-apiserver": {"active": True, "pid": 202, "started": "2026-12-06T11:00:00+00:00"},
                            "kube-scheduler": {"active": True, "pid": 203, "started": "2026-12-06T11:00:01+00:00"},
                            "kube-controller-manager": {"active": False, "pid": None, "started": None},
                            "kube-addon-manager": {"active": True, "pid": 204, "started": "2026-12-06T11:00:02+00:00"}})
    assert restarted_units(after, before) == ["kube-apiserver", "kube-scheduler", "kube-addon-manager"]
    assert FilterModule().filters()["restarted_units"] is restarted_units


def test_the_rolling_order_takes_unhealthy_replicas_first_and_the_leader_last():
    replicas = [{"name": n} for n in ("k-master", "k-master-c", "k-master-d", "k-master-e")]

    def names(order):
        return [r["name"] for r in order]

    assert names(rolling_order(replicas, "k-master")) == ["k-master-c", "k-master-d", "k-master-e", "k-master"]
    assert names(rolling_order(replicas, "k-master-c", ["k-master-e"])) == [
        "k-master-e", "k-master", "k-master-d", "k-master-c"]
    # An unhealthy leader goes first: the change may be what puts it right.
    assert names(rolling_order(replicas, "k-master-d", ["k-master-d"])) == [
        "k-master-d", "k-master", "k-master-c", "k-master-e"]
    assert names(rolling_order(replicas)) == names(replicas)
    assert FilterModule().filters()["rolling_order"] is rolling_order
