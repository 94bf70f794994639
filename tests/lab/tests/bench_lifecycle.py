# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark of ``make bench`` (scripts/bench.sh): what each step of a cluster's life costs in the lab, every
figure measured in one run.

- Each lifecycle step: wall time, tasks, Compute Engine calls (reads / mutating / token exchanges), SSH runs, and
  the failed etcd writes, longest write gap and longest unanswered window of the API on the reserved address while
  it ran (a writer puts a key every 200 ms; a poller asks /readyz every 200 ms).
- A re-run of each playbook with nothing to do, as a ratio of the run that did the work.
- Removing the etcd leader's replica the collection's way (leadership moved first) against a plain
  ``etcdctl member remove`` of the leader.
- Recover by reusing the data disk against replacing the member, with about 10 MiB and 200 MiB in etcd.

Not a test: pytest does not collect it unless it is named (``bench_*.py``). It writes its table as Markdown and
its figures as JSON under $KUBEHA_REPORT_DIR, so two commits can be compared.
"""

from __future__ import annotations

import json
import os

import pytest

from labcli import REPORT_DIR, control
from lifecycle_lab import ETCDCTL

pytestmark = [pytest.mark.machines, pytest.mark.bench,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

# etcdctl against the first replica's own etcd.
LOCAL = ETCDCTL + " --command-timeout 20s --endpoints https://127.0.0.1:2379"

# (no-op step, the step that did the work)
NO_OP_RATIOS = [
    ("bootstrap, nothing to do", "bootstrap in europe-west1-b"),
    ("replicate, nothing to do (3 replicas)", "replicate, adding one (2 -> 3)"),
    ("recover, nothing to do", "recover k-master-c reusing its disk, 10 MiB"),
    ("remove again, nothing to do", "remove k-master-c (balanced -> single)"),
]


def etcd(life, command):
    """etcdctl on the first replica, against its etcd."""
    return life.ssh("%s %s" % (LOCAL, command)).stdout


def db_size_mib(life):
    status = json.loads(etcd(life, "endpoint status -w json"))
    return round(status[0]["Status"]["dbSize"] / 2 ** 20, 1)


def fill(life, mib):
    """Grow etcd's database to about ``mib`` MiB with values of 700 KB of random bytes in base64 (933 KB, under
    etcd's request limit)."""
    have = db_size_mib(life)
    count = max(0, int((mib - have) / 0.9) + 1)
    if count:
        life.ssh("for i in $(seq %d); do head -c 700000 /dev/urandom | base64 -w0 | %s put /kubeha-bench/$i-%d "
                 ">/dev/null || exit 1; done" % (count, LOCAL, int(have)), timeout=1200)
    return db_size_mib(life)


def on_every_member(life, command):
    """etcdctl on the first replica against every member's client URL; returns (the members, what it printed)."""
    members = json.loads(etcd(life, "member list -w json"))["members"]
    urls = ",".join(u for m in members for u in m["clientURLs"])
    return members, life.ssh("%s --command-timeout 20s --endpoints %s %s" % (ETCDCTL, urls, command)).stdout


def leader(life):
    """The leader's (name, hex ID), read through the first replica."""
    members, printed = on_every_member(life, "endpoint status -w json")
    leader_id = json.loads(printed)[0]["Status"]["leader"]
    return next(m["name"] for m in members if m["ID"] == leader_id), "%x" % leader_id


def make_leader(life, name):
    """Move etcd's leadership to member ``name``."""
    members = json.loads(etcd(life, "member list -w json"))["members"]
    if leader(life)[0] != name:
        on_every_member(life, "move-leader %x" % next(m["ID"] for m in members if m["name"] == name))
    assert leader(life)[0] == name


def crash(life, name, zone):
    control(life.env, "POST", "zones/%s/instances/%s/crash" % (zone, name))


def markdown(report, sizes, ratios):
    head = ("| step | wall s | tasks | GCE reads | GCE mutating | token exchanges | SSH runs | changed | failed writes "
            "| longest write gap s | failed API polls | longest API window s |")
    lines = ["## kubeha.gce lifecycle in the lab", "",
             "A write to etcd every 200 ms, and a new TLS connection to the reserved address asking /readyz every "
             "200 ms, throughout. etcd held %s MiB, then %s MiB, for the recover steps." % (sizes[0], sizes[1]), "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for step in report["steps"]:
        if "wall_s" not in step:
            continue
        cost = [step.get(k, "") for k in ("tasks", "gce_reads", "gce_mutating", "token_exchanges", "ssh_runs")]
        changed = "" if step.get("changed") is None else step["changed"]
        seen = [changed, step.get("failed_writes", 0), step.get("write_gap_s", 0.0), step.get("failed_polls", 0),
                step.get("polls", 0), step.get("api_window_s", 0.0)]
        row = "| %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %.2f | %s/%s | %.2f |"
        lines.append(row % tuple([step["step"], step["wall_s"]] + cost + seen))
    lines += ["", "| re-run with nothing to do | wall s | of the run that did the work | ratio |", "|---|---|---|---|"]
    for ratio in ratios:
        lines.append("| %s | %.1f | %s (%.1f s) | %.0f%% |" % (
            ratio["no_op"], ratio["no_op_s"], ratio["work"], ratio["work_s"], 100 * ratio["ratio"]))
    return "\n".join(lines)


def test_bench(life, capsys):  # pylint: disable=redefined-outer-name
    life.step("bootstrap in europe-west1-b", "bootstrap", "zone=europe-west1-b")
    life.step("bootstrap, nothing to do", "bootstrap", "zone=europe-west1-b", expect_changed=0)
    life.start_writer()
    life.start_api_poller()

    # -- the load balancer: single -> balanced; a replica removed and added again; a re-run with nothing to do --
    life.step("replicate 1 -> 3 (single -> balanced)", "replicate", "zone=europe-west1-c,europe-west1-d")
    life.step("remove k-master-d (3 -> 2)", "remove", "zone=europe-west1-d", "allow_even=true")
    life.step("replicate, adding one (2 -> 3)", "replicate", "zone=europe-west1-d")
    life.step("replicate, nothing to do (3 replicas)", "replicate", "zone=europe-west1-c,europe-west1-d",
              expect_changed=0)
    life.event("k-master-d crashes (the load balancer's health check takes it out)",
               lambda: crash(life, "k-master-d", "europe-west1-d"), 40)
    life.step("recover k-master-d reusing its disk", "recover", "zone=europe-west1-d")

    # -- recover: reuse the data disk or replace the member, with little and with more data in etcd ------------
    sizes = []
    for mib in (10, 200):
        sizes.append(fill(life, mib))
        life.event("k-master-c crashes", lambda: crash(life, "k-master-c", "europe-west1-c"), 5)
        life.step("recover k-master-c reusing its disk, %d MiB" % mib, "recover", "zone=europe-west1-c")
        if mib == 10:
            life.step("recover, nothing to do", "recover", "zone=europe-west1-c", expect_changed=0)
        life.event("k-master-c crashes again", lambda: crash(life, "k-master-c", "europe-west1-c"), 5)
        life.step("recover k-master-c as a new member, %d MiB" % mib, "recover", "zone=europe-west1-c",
                  "recover_mode=replace")

    # -- removing the leader's replica: the collection moves leadership first; a plain member remove does not ----
    make_leader(life, "k-master-d")
    life.step("remove k-master-d, the etcd leader (the collection's way)", "remove", "zone=europe-west1-d",
              "allow_even=true")
    life.step("replicate k-master-d again", "replicate", "zone=europe-west1-d")
    make_leader(life, "k-master-d")
    member = leader(life)[1]
    life.event("etcdctl member remove of the leader k-master-d (plain)",
               lambda: etcd(life, "member remove %s" % member), 15)
    life.step("remove k-master-d, its member gone already", "remove", "zone=europe-west1-d")

    # -- back to one replica: balanced -> single -----------------------------------------------------------------
    life.step("remove k-master-c (balanced -> single)", "remove", "zone=europe-west1-c")
    life.step("remove again, nothing to do", "remove", "zone=europe-west1-c", "absent_ok=true", expect_changed=0)
    life.step("status", "status", "zone=europe-west1-b", expect_changed=0)

    life.stop_writer()
    life.stop_api_poller()
    report = life.report()
    walls = {s["step"]: s["wall_s"] for s in report["steps"] if "wall_s" in s}
    ratios = [{"no_op": n, "no_op_s": walls[n], "work": w, "work_s": walls[w], "ratio": walls[n] / walls[w]}
              for n, w in NO_OP_RATIOS]
    report.update(etcd_mib=sizes, no_op_ratios=ratios)
    text = markdown(report, sizes, ratios)
    stamp = os.environ.get("KUBEHA_BENCH_STAMP") or "latest"
    os.makedirs(REPORT_DIR, exist_ok=True)
    for suffix, body in (("json", json.dumps(report, indent=1)), ("md", text + "\n")):
        with open(os.path.join(REPORT_DIR, "bench-%s.%s" % (stamp, suffix)), "w", encoding="utf-8") as handle:
            handle.write(body)
    with capsys.disabled():
        print("\n" + text + "\n\n(saved to %s/bench-%s.md and .json)" % (REPORT_DIR, stamp))
    # What the bench relies on: every step ran (step() asserts it), and the writer wrote throughout.
    assert report["writes"] > 100
