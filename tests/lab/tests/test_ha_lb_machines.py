# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce.ha_lb on real lab machines: a client keeps reaching a live replica through the reserved IP.

The scenario (scenarios/ha_lb.py) prints what each step cost and what a client
saw. This test asserts on what must hold, prints the numbers as a table and
saves them under $KUBEHA_REPORT_DIR (default /var/tmp/kubeha-gce/reports).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from labcli import LAB, lab, save_report

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

MEMBERS = {"k-master", "k-master-c"}


def table(report):
    header = ("backend", "step", "wall s", "API calls", "changes", "longest gap", "slowest", "failed")
    lines = ["ha_lb in the lab (reserved IP %s; a new TLS connection every 50 ms, each given %.0f s)"
             % (report["address"], report["poll_timeout_s"]),
             "%-16s %-20s %7s %9s %8s %11s %8s %7s" % header]
    for step in report["steps"]:
        if "wall_s" not in step:
            continue
        lines.append("%-16s %-20s %7.2f %9d %8d %10.3fs %7.3fs %7s" % (
            step["backend"], step["step"], step["wall_s"], step["api_calls"], len(step["mutating_calls"]),
            step["longest_window_s"], step["slowest_answer_s"], "%d/%d" % (step["failed_attempts"], step["attempts"])))
    return "\n".join(lines)


def test_reserved_ip_reaches_a_live_replica_through_every_transition(lab_env, capsys):
    assert lab(lab_env, "up").returncode == 0
    scenario = os.path.join(os.path.dirname(LAB), "scenarios", "ha_lb.py")
    done = lab(lab_env, "exec", "--", sys.executable, scenario, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    path = save_report("ha_lb", report)
    with capsys.disabled():
        print("\n" + table(report) + "\n(saved to %s)" % path)

    check = report["health_check"]
    # How soon after a crash GCE's probes can take a member out: the probes that must fail in a row, each up to
    # an interval apart and a timeout long, plus the lab's probe loop (0.5 s); then a stated margin for a
    # loaded 2-core host. Connections started after that may not fail.
    detection = check["check_interval_sec"] * check["unhealthy_threshold"] + check["timeout_sec"] + 0.5
    margin = 3.0
    for backend in ("backend_service", "target_pool"):
        steps = {s["step"]: s for s in report["steps"] if s["backend"] == backend}
        # After every step the reserved address answers, and only from members that are alive.
        for name in ("single -> balanced", "add a member", "remove a member", "balanced -> single"):
            assert steps[name]["failed_after"] == 0, steps[name]
            assert steps[name]["served_by_after"], steps[name]
        # Promotion and demotion move the address: each is one short gap, not a series of them.
        for name in ("single -> balanced", "balanced -> single"):
            assert len(steps[name]["mutating_calls"]) >= 3, steps[name]
        # Members come and go without touching the forwarding rule, and a member gets connections only once its
        # checks pass: not one connection goes unanswered (an attempt fails only when nothing answers it within
        # the poll timeout, so a slow answer on a loaded host is not a failure; the figures are in the report).
        for name in ("add a member", "remove a member", "restart it"):
            assert steps[name]["failed_attempts"] == 0, steps[name]
        assert set(steps["both members serve"]["served_by_after"]) == MEMBERS, steps["both members serve"]
        # A crashed member gets connections only until its checks fail, and none once it is reported UNHEALTHY.
        crash = steps["crash a member"]
        assert crash["failed_after"] == 0 and set(crash["served_by_after"]) == {"k-master"}, crash
        assert crash["last_failure_s"] is None or crash["last_failure_s"] <= detection + margin, crash
        assert set(steps["restart it"]["served_by_after"]) == MEMBERS, steps["restart it"]
        assert set(steps["remove a member"]["served_by_after"]) == {"k-master"}, steps["remove a member"]
        rerun = steps["re-run single"]
        assert rerun["changed"] is False and rerun["mutating_calls"] == [] and rerun["holder"] == "k-master", rerun
        assert rerun["resources"] == [], rerun
