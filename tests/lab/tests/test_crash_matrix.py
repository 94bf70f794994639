# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The crash matrix (``make crash-matrix``): every lifecycle playbook killed right after each task that changes
something, and converged by the runs after it (Lifecycle.crash_walk), on the lab's custom network with the etcd
writer and the API poller running. After each walk: the run after it changes nothing, the etcd members are the
replicas with no learner, nothing of the cluster is left over in Compute Engine, the reserved address was never
released, and no write to etcd failed outside a leader hand-over. Last, teardown is walked the same way, and must leave
nothing of the cluster. The matrix (step × kill point → wall time) is
printed and saved in the report directory.
"""

from __future__ import annotations

import json
import os

import pytest

from labcli import control, save_report

pytestmark = [pytest.mark.machines, pytest.mark.crash_matrix,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

CLUSTER = "k"


def reserved_address(life):
    """The reserved address as Compute Engine has it: its IP and its resource ID (made again, it would get a new ID,
    and likely the same IP)."""
    [(path, address)] = [(p, r) for p, r in life.resources().items() if p.endswith("/addresses/%s-master-ip" % CLUSTER)]
    return path, address["id"], address["address"]


def matrix(steps):
    lines = ["crash matrix: each run killed right after a task that changed something, converged by the next",
             "%-34s %4s %7s  %s" % ("step", "#", "wall s", "killed right after")]
    for step in steps:
        for number, point in enumerate(step.get("crash_points", []), 1):
            lines.append("%-34s %4d %7.1f  %s" % (step["step"][:34], number, point["wall_s"],
                                                  ("%s [%s]" % (point["task"], point["item"]) if point["item"]
                                                   else point["task"])[:110]))
    return "\n".join(lines)


def test_every_run_killed_after_every_change_converges(life, capsys):  # pylint: disable=redefined-outer-name
    # The matrix so far, saved after each walk: a long run that is stopped still leaves what it found.
    path = save_report("crash-matrix", {"steps": []})

    def save():
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(life.report(), handle, indent=1)
        with open(path[:-len(".json")] + ".txt", "w", encoding="utf-8") as handle:
            handle.write(matrix(life.steps) + "\n")

    life.crash_walk("bootstrap", "bootstrap", "zone=europe-west1-b")
    save()
    life.converged(["k-master"])
    # The reserved address, once made, is never released or made again, whatever run is killed where.
    address = reserved_address(life)

    def same_address(point):
        assert reserved_address(life) == address, "the reserved address changed after a kill after %s" % point["key"]

    def walk(title, name, *extra, replicas):
        life.crash_walk(title, name, *extra, after_kill=same_address)
        save()
        same_address({"key": "the end of the walk"})
        life.converged(replicas)

    life.start_writer()
    life.start_api_poller()
    walk("replicate into two zones", "replicate", "zone=europe-west1-c,europe-west1-d",
         replicas=["k-master", "k-master-c", "k-master-d"])
    # absent_ok: a run killed after the replica was deleted leaves nothing for the next one to remove.
    walk("remove, 3 to 2", "remove", "zone=europe-west1-d", "absent_ok=true", "allow_even=true",
         replicas=["k-master", "k-master-c"])
    walk("remove, 2 to 1 (load balancer out)", "remove", "zone=europe-west1-c", "absent_ok=true", replicas=["k-master"])
    life.step("replicate into two zones again", "replicate", "zone=europe-west1-c,europe-west1-d")
    life.step("remove, 3 to 2 again", "remove", "zone=europe-west1-d", "allow_even=true")
    walk("replicate into one zone", "replicate", "zone=europe-west1-d", replicas=["k-master", "k-master-c", "k-master-d"])
    control(life.env, "POST", "zones/europe-west1-c/instances/k-master-c/crash")
    walk("recover, reusing the data disk", "recover", "zone=europe-west1-c",
         replicas=["k-master", "k-master-c", "k-master-d"])
    life.replica_vm("k-master-c", "europe-west1-c", "absent", delete_data_disk=True)
    # Its VM and data disk both gone: named, as nothing in its zone says which replica it was.
    walk("recover as a new member", "recover", "zone=europe-west1-c", "replica_name=k-master-c", "recover_mode=replace",
         replicas=["k-master", "k-master-c", "k-master-d"])
    life.step("snapshot", "snapshot", "zone=europe-west1-b")
    life.stop_writer()
    life.stop_api_poller()
    # A majority lost for good: restore on k-master, killed at each of its changes.
    life.replica_vm("k-master-c", "europe-west1-c", "absent", delete_data_disk=True)
    control(life.env, "POST", "zones/europe-west1-d/down")
    life.crash_walk("restore after a quorum loss", "restore", "zone=europe-west1-b", after_kill=same_address)
    save()
    assert [m[1] for m in life.members()] == ["k-master"] and reserved_address(life) == address
    control(life.env, "POST", "zones/europe-west1-d/up")
    life.wait_ssh("k-master-d")
    life.step("remove the leftovers of k-master-d", "remove", "zone=europe-west1-d", "replica_name=k-master-d")
    life.converged(["k-master"])
    # The masters taken down as a whole, the address too: killed at each deletion, finished by the next run.
    life.crash_walk("teardown", "teardown", "zone=europe-west1-b", "confirm=%s" % CLUSTER, "delete_address=true")
    save()
    assert not [p for p in life.resources() if "/%s-" % CLUSTER in p], "teardown left something of the cluster"

    report = life.report()
    for step in report["steps"]:
        # While the writer runs, etcd keeps its quorum through every kill: a write fails only while its leader moves
        # (an election takes a second or so, which the writer sees as at most a few failed writes).
        if step.get("crash_points") and step.get("writes"):
            assert step["failed_writes"] <= 5, (step["step"], step["failed_writes"], step.get("first_errors"))
    save()
    with capsys.disabled():
        print("\n" + matrix(report["steps"]) + "\n(saved to %s)" % path)
