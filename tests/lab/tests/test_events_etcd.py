# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kube-up's events etcd (etcd_events) through the lifecycle in the lab: real machines, real etcd (both of them on
each replica), on the custom-mode network. A cluster bootstrapped with it keeps a second membership (client 4002,
peer 2381) that every run changes as it changes the main one: replicate adds a learner to each and promotes it,
recover points a kept member at its new address or replaces it by ID, remove takes each member out, and status
reports both. A later run follows what the cluster runs, and refuses an etcd_events that asks for the other.
"""

from __future__ import annotations

import json
import os

import pytest

from labcli import control
from lifecycle_lab import ETCDCTL

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

ZONES = {"k-master": "europe-west1-b", "k-master-c": "europe-west1-c", "k-master-d": "europe-west1-d"}


def events_members(life, name="k-master"):
    """The events etcd's membership read on ``name``: {member name: (ID, peer URLs, learner)}."""
    done = life.ssh("%s --endpoints https://127.0.0.1:4002 --command-timeout 10s member list -w json" % ETCDCTL, name=name)
    return {m.get("name", ""): (m["ID"], tuple(m.get("peerURLs") or []), bool(m.get("isLearner")))
            for m in json.loads(done.stdout).get("members") or []}


def check_both(life, names):
    """Both etcd clusters have exactly the voting members ``names``, each peering on its replica's internal IP on
    the cluster's own peer port; every replica's kube-apiserver sends events to the local events etcd, and the API
    answers ready through the reserved address."""
    main = {m[1]: m for m in life.members()}
    events = events_members(life)
    assert sorted(main) == sorted(names) and sorted(events) == sorted(names), (main, events)
    for name in names:
        internal = life.instance(name)["internal_ip"]
        assert main[name][2] == ("https://%s:2380" % internal,) and not main[name][3], main[name]
        assert events[name][1] == ("https://%s:2381" % internal,) and not events[name][2], events[name]
        unit = life.ssh("systemctl cat kube-apiserver; systemctl is-active etcd etcd-events", name=name).stdout
        assert "--etcd-servers-overrides=/events#https://127.0.0.1:4002" in unit, unit
        assert unit.split()[-2:] == ["active", "active"], unit
    assert life.readyz()["status"] == 200
    return events


def test_events_etcd_through_the_lifecycle(life):  # pylint: disable=redefined-outer-name
    life.step("bootstrap with the events etcd", "bootstrap", "zone=europe-west1-b", "etcd_events=true")
    check_both(life, ["k-master"])
    # A later run follows the cluster; one that asks for the other is refused before anything changes.
    life.step("bootstrap again, following the cluster", "bootstrap", "zone=europe-west1-b", expect_changed=0)
    life.refused("bootstrap again without the events etcd", "bootstrap",
                 "etcd_events is false, but cluster k runs an events etcd (unit etcd-events on k-master)",
                 "zone=europe-west1-b", "etcd_events=false")

    # -- replicate: a learner in each etcd, promoted once in sync. The first try fails once both learners were added
    # (the main etcd cannot start: its metrics port is sshd's): both are removed again by ID, both data directories
    # cleared, and the VM kept; the next run adds it. ---------------------------------------------------------------
    failed = life.stopped("replicate, etcd failing to start on k-master-c", "replicate",
                          "adding k-master-c in zone europe-west1-c failed at", "zone=europe-west1-c,europe-west1-d",
                          "etcd_metrics_port=22").stdout
    assert "Its etcd member " in failed and " and its events etcd member " in failed, failed[-4000:]
    assert "were removed again, and its etcd data cleared; the VM k-master-c is kept." in failed, failed[-4000:]
    assert list(events_members(life)) == ["k-master"]
    left = life.ssh("sudo sh -c 'ls -A /mnt/disks/master-pd/var/etcd/data-events; systemctl is-active etcd-events'",
                    name="k-master-c", check=False).stdout.split()
    assert left in (["inactive"], ["failed"]), left
    life.step("replicate into two zones", "replicate", "zone=europe-west1-c,europe-west1-d")
    events = check_both(life, list(ZONES))
    status = life.step("status", "status", "zone=europe-west1-b", expect_changed=0).stdout
    assert "EVENTS ETCD (read through" in status and "3 voting members, 3 healthy, quorum 2, has quorum" in status, status
    shots = life.ssh("sudo ls /mnt/disks/master-pd/var/etcd/snapshots").stdout.split()
    assert [s for s in shots if s.startswith("k-events-")] and [s for s in shots if not s.startswith("k-events-")], shots

    # -- a replica crashes: recover keeps its data disk and both members (same IDs, new address) -------------------
    control(life.env, "POST", "zones/europe-west1-c/instances/k-master-c/crash")
    life.step("recover k-master-c with its data disk", "recover", "zone=europe-west1-c")
    kept = check_both(life, list(ZONES))
    assert kept["k-master-c"][0] == events["k-master-c"][0], (events, kept)

    # -- it crashes again and is replaced: new members in both, the old ones removed by ID --------------------------
    control(life.env, "POST", "zones/europe-west1-c/instances/k-master-c/crash")
    life.step("recover k-master-c as new members", "recover", "zone=europe-west1-c", "recover_mode=replace")
    replaced = check_both(life, list(ZONES))
    assert replaced["k-master-c"][0] != kept["k-master-c"][0], (kept, replaced)

    # -- remove two replicas in one run: each leaves both etcds --------------------------------------------------
    life.step("remove two replicas", "remove", "zone=europe-west1-c,europe-west1-d")
    check_both(life, ["k-master"])
    life.refused("restore, which does not rebuild the events etcd", "restore",
                 "cluster k runs an events etcd (etcd_events), and restore rebuilds only the main etcd",
                 "zone=europe-west1-b")
