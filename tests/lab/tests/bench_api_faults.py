# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark of ``make bench`` for an unfriendly Compute API: one cluster's life (bootstrap, replicate into two
zones, recover a crashed replica, remove two) run twice, each in a lab of its own on the custom network: once
with the API answering every call, once with 30 % of Compute Engine calls answered 503 or 429 and, in each step, one
operation ending DONE with an error. A step that stops at its failed operation is run again, as a user would.

Both runs must end in the same cluster with nothing duplicated or left over (Lifecycle.converged). The table puts
each step's wall time, runs, calls and the errors answered (each one retried by the collection) side by side.
"""

from __future__ import annotations

import json
import os

import pytest

from labcli import REPORT_DIR, control

pytestmark = [pytest.mark.machines, pytest.mark.bench,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

ERRORS = {"*": {"rate": 0.3, "status": [503, 429]}}
C, D = "europe-west1-c", "europe-west1-d"

# (title, playbook, its variables, the replicas after it, the operation that fails in the faulted run)
STEPS = [
    ("bootstrap in europe-west1-b", "bootstrap", ["zone=europe-west1-b"], ["k-master"],
     ("compute.firewalls.insert", "INTERNAL_ERROR")),
    ("replicate into two zones (1 -> 3)", "replicate", ["zone=%s,%s" % (C, D)], ["k-master", "k-master-c", "k-master-d"],
     ("compute.instances.insert", "ZONE_RESOURCE_POOL_EXHAUSTED")),
    ("recover k-master-c, crashed, reusing its disk", "recover", ["zone=%s" % C],
     ["k-master", "k-master-c", "k-master-d"], ("compute.instances.insert", "RESOURCE_OPERATION_RATE_EXCEEDED")),
    ("remove k-master-d (3 -> 2)", "remove", ["zone=%s" % D, "allow_even=true"], ["k-master", "k-master-c"],
     ("compute.instances.delete", "INTERNAL_ERROR")),
    ("remove k-master-c (2 -> 1, the load balancer out)", "remove", ["zone=%s" % C], ["k-master"],
     ("compute.forwardingRules.delete", "INTERNAL_ERROR")),
]

RUNS = {}


def markdown(plain, faulted):
    lines = ["## kubeha.gce lifecycle with an unfriendly Compute API", "",
             "Faulted: 30 %% of Compute Engine calls answered 503 or 429 (%s), and in each step one operation ending "
             "DONE with an error; a step stopped by it is run again." % json.dumps(ERRORS), "",
             "| step | wall s | calls | wall s, faulted | runs | calls | errors answered (retried) "
             "| failed operation | failed etcd writes |", "|---|---|---|---|---|---|---|---|---|"]
    for ok, bad in zip(plain, faulted):
        answered = ", ".join("%s: %d" % item for item in sorted(bad["errors_answered"].items())) or "none"
        lines.append("| %s | %.1f | %d | %.1f | %d | %d | %s | %s | %s / %s |" % (
            ok["step"], ok["wall_s"], ok["gce_calls"], bad["wall_s"], bad["runs"], bad["gce_calls"], answered,
            bad["failed_operation"], ok.get("failed_writes", "-"), bad.get("failed_writes", "-")))
    total = [sum(s["wall_s"] for s in run) for run in (plain, faulted)]
    lines += ["", "Whole life: %.1f s with the API answering, %.1f s faulted (%.0f %%)." % (
        total[0], total[1], 100 * total[1] / total[0])]
    return "\n".join(lines)


@pytest.mark.parametrize("faulted", [False, True], ids=["api-answering", "api-faulted"])
def test_lifecycle_with_api_faults(life, faulted, capsys):  # pylint: disable=redefined-outer-name
    for number, (title, playbook, variables, replicas, failing) in enumerate(STEPS):
        if number == 1:
            life.start_writer()
        if playbook == "recover":
            control(life.env, "POST", "zones/%s/instances/k-master-c/crash" % C)
        life.under_faults(title, playbook, *variables, errors=ERRORS if faulted else None,
                          failed_operation=failing if faulted else None)
        life.converged(replicas)
    life.stop_writer()
    report = life.report()
    RUNS[faulted] = [s for s in report["steps"] if "runs" in s]
    if faulted:
        # Retries happened in every step, and every injected operation failure was met and got over.
        assert all(s["errors_answered"] for s in RUNS[True]), RUNS[True]
    if len(RUNS) < 2:
        return
    text = markdown(RUNS[False], RUNS[True])
    stamp = os.environ.get("KUBEHA_BENCH_STAMP") or "latest"
    os.makedirs(REPORT_DIR, exist_ok=True)
    for suffix, body in (("json", json.dumps({"errors": ERRORS, "api_answering": RUNS[False],
                                              "api_faulted": RUNS[True]}, indent=1)), ("md", text + "\n")):
        with open(os.path.join(REPORT_DIR, "bench-api-faults-%s.%s" % (stamp, suffix)), "w", encoding="utf-8") as handle:
            handle.write(body)
    with capsys.disabled():
        print("\n" + text + "\n\n(saved to %s/bench-api-faults-%s.md and .json)" % (REPORT_DIR, stamp))
