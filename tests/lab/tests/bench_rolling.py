# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark of ``make bench BENCH=rolling`` (scripts/bench.sh): what the rolling playbooks cost a cluster of three
replicas in the lab, each replica taken out of the load balancer while the others serve, the etcd leader last.

Bootstrap on v1.36.0 on the custom-mode network and replicate into two more zones; then, with a writer putting a key
into etcd every 200 ms (through the first replica's member) and a poller asking the reserved address for /readyz every
200 ms:

- reconfigure with a feature gate of kube-apiserver and a flag of kube-controller-manager changed (as test_lifecycle
  changes them),
- rotate_certs of every certificate,
- upgrade to v1.37.0 (the lab's stand-ins built as that release),
- upgrade of etcd from 3.4 to 3.5 (the 3.5 that scripts/bootstrap.sh fetches) with that Kubernetes release,

each followed by the same run with nothing left to do. The first table gives each step's wall time, the failed etcd
writes and longest write gap, and the failed API polls and longest unanswered window of the API while it ran; the
second, per step and replica in the order the run took them, the seconds from the replica's restart (out of the load
balancer) until it was ready, and until it was back in the load balancer, as the run's report says them.

Not a test: pytest does not collect it unless it is named (``bench_*.py``). It writes its tables as Markdown and its
figures as JSON under $KUBEHA_REPORT_DIR, so two commits can be compared.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from kubeha_lab.__main__ import etcd_releases
from labcli import REPORT_DIR
from lifecycle_lab import etcd_leader, section

pytestmark = [pytest.mark.machines, pytest.mark.bench,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

ZONE = "zone=europe-west1-b"
# The settings the cluster runs with once reconfigure rolled them out; every later run is given them, as a user who
# keeps them in a file of variables does.
FLAGS = json.dumps({"control_plane_extra_flags": {"kube-apiserver": {"feature-gates": "AllAlpha=false"},
                                                  "kube-controller-manager": {"v": "3"}}})
REPORT_TASK = "Say what was done on each replica"
# What the rolling report (kubeha.gce.rolling_report) says of a replica that restarted something: the services, and
# the seconds from the restart (out of the load balancer when it was taken out) until ready, and until back.
RESTARTED = re.compile(r"restarted ([^()]+) \((out of the load balancer: )?ready after ([0-9.]+) s(?:, back after ([0-9.]+) s)?")


def per_replica(run):
    """What the run said it did on each replica, in the order it took them: the line, the services it restarted,
    whether the replica was out of the load balancer, and the seconds until it was ready and back (None when not
    said)."""
    if not any(REPORT_TASK in part.split("]", 1)[0] for part in run.stdout.split("TASK [")[1:]):
        return []
    rows = []
    for line in section(run, REPORT_TASK):
        name, said = line.split(": ", 1)
        found = RESTARTED.findall(said)
        units, out, ready, back = found[-1] if found else ("", "", "", "")
        rows.append({"replica": name, "restarted": units.split(", ") if units else [], "out_of_lb": bool(out),
                     "ready_s": float(ready) if ready else None, "back_s": float(back) if back else None, "said": line})
    return rows


def rolled(life, title, playbook, *extra, expect_changed=None):
    """A step of a rolling playbook, with the replica that led etcd before it and what the run said per replica."""
    leader = etcd_leader(life)
    run = life.step(title, playbook, *extra, expect_changed=expect_changed)
    life.steps[-1].update(etcd_leader_before=leader, per_replica=per_replica(run))
    return run


def markdown(report, etcd_next, took):
    head = "| step | wall s | changed | failed writes | longest write gap s | failed API polls | longest API window s |"
    lines = ["## kubeha.gce rolling changes in the lab", "",
             "Three replicas (k-master, k-master-c, k-master-d) on a custom-mode network, bootstrapped on v1.36.0 with "
             "etcd 3.4; then reconfigure, rotate_certs, upgrade to v1.37.0 and upgrade of etcd to %s, each run again "
             "with nothing to do. A write to etcd every 200 ms through k-master's member, and a new TLS connection to "
             "the reserved address asking /readyz every 200 ms, throughout." % etcd_next, "",
             head, "|" + "---|" * (head.count("|") - 1)]
    steps = [step for step in report["steps"] if "wall_s" in step]
    for step in steps:
        changed = "" if step.get("changed") is None else step["changed"]
        lines.append("| %s | %.1f | %s | %s/%s | %.2f | %s/%s | %.2f |" % (
            step["step"], step["wall_s"], changed, step.get("failed_writes", 0), step.get("writes", 0),
            step.get("write_gap_s", 0.0), step.get("failed_polls", 0), step.get("polls", 0), step.get("api_window_s", 0.0)))
    lines += ["", "Per replica, in the order the run took them: the seconds from its restart (taken out of the load "
              "balancer first, when it was) until it was ready, and until it passed the health check and was back in "
              "the load balancer, as the run's report says them.", "",
              "| step | replica | etcd leader before | restarted | out of LB | out of LB -> ready s | -> back s |",
              "|---|---|---|---|---|---|---|"]
    for step in steps:
        for row in step.get("per_replica", []):
            if not row["restarted"]:
                continue
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                step["step"], row["replica"], "yes" if row["replica"] == step["etcd_leader_before"] else "",
                ", ".join(row["restarted"]), "yes" if row["out_of_lb"] else "no",
                "" if row["ready_s"] is None else "%.1f" % row["ready_s"],
                "" if row["back_s"] is None else "%.1f" % row["back_s"]))
    lines += ["", "Rolling steps: %.1f s of wall time; from bootstrap to the last step: %.1f s." % (
        sum(step["wall_s"] for step in steps if step.get("per_replica") is not None), took)]
    return "\n".join(lines)


def test_bench(life, capsys):  # pylint: disable=redefined-outer-name
    nexts = [version for version in etcd_releases() if version.startswith("3.5.")]
    assert nexts, "no etcd 3.5 in the cache (scripts/bootstrap.sh fetches Debian 13's): etcd's upgrade cannot be measured"
    etcd_next = nexts[0]
    began = time.time()
    life.step("bootstrap on v1.36.0 in europe-west1-b", "bootstrap", ZONE, "kubernetes_version=v1.36.0")
    life.step("replicate into c and d (1 -> 3)", "replicate", "zone=europe-west1-c,europe-west1-d",
              "kubernetes_version=v1.36.0")
    life.start_writer()
    life.start_api_poller()

    rolled(life, "reconfigure a feature gate and a flag", "reconfigure", ZONE, "kubernetes_version=v1.36.0", FLAGS)
    rolled(life, "reconfigure, nothing to do", "reconfigure", ZONE, "kubernetes_version=v1.36.0", FLAGS,
           expect_changed=0)
    rotated = rolled(life, "rotate_certs certificates=all", "rotate_certs", ZONE, "certificates=all")
    # The time the run printed: certificates issued before it are issued again (none, once it is done).
    issued_before = rotated.stdout.split("finishes it")[0].rsplit("-e issued_before=", 1)[1].split()[0]
    rolled(life, "rotate_certs, nothing to do", "rotate_certs", ZONE, "certificates=all", "issued_before=%s" % issued_before,
           expect_changed=0)
    rolled(life, "upgrade to v1.37.0", "upgrade", ZONE, "kubernetes_version=v1.37.0", FLAGS)
    rolled(life, "upgrade to v1.37.0, nothing to do", "upgrade", ZONE, "kubernetes_version=v1.37.0", FLAGS,
           expect_changed=0)
    rolled(life, "upgrade etcd to %s" % etcd_next, "upgrade", ZONE, "kubernetes_version=v1.37.0",
           "etcd_version=%s" % etcd_next, FLAGS)
    rolled(life, "upgrade etcd, nothing to do", "upgrade", ZONE, "kubernetes_version=v1.37.0", "etcd_version=%s" % etcd_next,
           FLAGS, expect_changed=0)
    took = time.time() - began

    life.stop_writer()
    life.stop_api_poller()
    report = life.report()
    report.update(etcd_version=etcd_next, issued_before=issued_before, wall_s=round(took, 1))
    text = markdown(report, etcd_next, took)
    stamp = os.environ.get("KUBEHA_BENCH_STAMP") or "latest"
    os.makedirs(REPORT_DIR, exist_ok=True)
    for suffix, body in (("json", json.dumps(report, indent=1)), ("md", text + "\n")):
        with open(os.path.join(REPORT_DIR, "bench-rolling-%s.%s" % (stamp, suffix)), "w", encoding="utf-8") as handle:
            handle.write(body)
    with capsys.disabled():
        print("\n" + text + "\n\n(saved to %s/bench-rolling-%s.md and .json)" % (REPORT_DIR, stamp))
    # What the bench relies on: every step ran (step() asserts it), the writer wrote throughout, and each run that
    # did the work said, for every replica, what it restarted and how long that took.
    assert report["writes"] > 100
    for step in report["steps"]:
        if step.get("per_replica") and "nothing to do" not in step["step"]:
            assert sorted(row["replica"] for row in step["per_replica"] if row["ready_s"] is not None) == [
                "k-master", "k-master-c", "k-master-d"], step["per_replica"]
