# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce.cluster_lock against the simulator: check mode, take, renew, release; runs that race for it at once;
a run that waits for another; an expired lock taken over.

The module runs as its own process, as Ansible runs it; the races are real processes against the simulator, whose
setLabels checks the label fingerprint as Compute Engine does.
"""

from __future__ import annotations

import json
import time
import typing as t

import pytest

from conftest import PROJECT, ModuleProcess

pytestmark = pytest.mark.playbook

REGION = "europe-west1"
ARGS = {"cluster_name": "k", "region": REGION}


@pytest.fixture
def run(lab, tmp_path):
    lab.control("PUT", "timing", {"pending": 0.01, "running": 0.03})
    network = ModuleProcess(lab, tmp_path / "network", "gce_master_network", ARGS)
    made = network({})
    assert made["changed"] is True and not made.get("failed"), made.get("msg")
    return ModuleProcess(lab, tmp_path, "cluster_lock", ARGS)


def labels(compute: t.Any) -> dict[str, str]:
    return compute.addresses().get(project=PROJECT, region=REGION, address="k-master-ip").execute().get("labels", {})


def test_check_mode_then_take_renew_release(lab, run, compute):
    lab.control("DELETE", "requests")
    plan = run({"purpose": "replicate europe-west1-c"}, check=True)
    assert plan["locked"] is False and plan["lock"]["purpose"] == "replicate-europe-west1-c"
    assert lab.mutating() == [], "check mode called %s" % lab.mutating()

    taken = run({"purpose": "replicate europe-west1-c", "holder": "ops at bastion"})
    assert taken["locked"] is True and taken["changed"] is False, taken
    run_id = taken["lock"]["id"]
    now = labels(compute)
    # The cluster's own labels stay; the lock's are added.
    assert now["kubeha-cluster"] == "k" and now["kubeha-role"] == "master"
    assert now["kubeha-lock"] == run_id and now["kubeha-lock-by"] == "ops-at-bastion"
    assert now["kubeha-lock-for"] == "replicate-europe-west1-c"
    assert int(now["kubeha-lock-until"]) - int(now["kubeha-lock-since"]) == 1200

    renewed = run({"state": "renewed", "run_id": run_id, "ttl": 60})
    assert renewed["locked"] is True and renewed["changed"] is False
    assert labels(compute)["kubeha-lock-since"] == now["kubeha-lock-since"]

    # The network module, run while the lock is held, keeps the lock's labels.
    network = ModuleProcess(lab, run.tmp / "again", "gce_master_network", ARGS)
    assert network({})["changed"] is False
    assert labels(compute)["kubeha-lock"] == run_id

    released = run({"state": "absent", "run_id": run_id})
    assert released["reason"] == "released" and released["changed"] is False
    assert sorted(labels(compute)) == ["kubeha-cluster", "kubeha-role"]
    assert run({"state": "absent", "run_id": run_id})["reason"] == "not locked"


def test_runs_that_race_for_the_lock_get_it_one_at_a_time(lab, run, compute):
    # Six runs at once, none willing to wait: exactly one holds the lock, the five others name it.
    started = [run.start({"purpose": "run %d" % index, "timeout": 0}) for index in range(6)]
    results = [json.loads(process.communicate(timeout=120)[0]) for process in started]
    winners = [r for r in results if r.get("locked")]
    assert len(winners) == 1, results
    run_id = winners[0]["lock"]["id"]
    assert labels(compute)["kubeha-lock"] == run_id
    for result in results:
        if result is not winners[0]:
            assert result["failed"] is True and "cluster 'k' is locked by run %s" % run_id in result["msg"], result

    # One more waits for the lock, and takes it once the holder releases it.
    waiting = run.start({"purpose": "the patient one", "timeout": 60})
    time.sleep(3)
    assert waiting.poll() is None, "the run did not wait"
    assert run({"state": "absent", "run_id": run_id})["reason"] == "released"
    patient = json.loads(waiting.communicate(timeout=60)[0])
    assert patient["locked"] is True and patient["waited"] >= 5 and patient["waited_for"]["id"] == run_id, patient

    # Its lease runs out: the next run takes the lock over, saying from whom.
    short = run({"state": "renewed", "run_id": patient["lock"]["id"], "ttl": 1})
    assert short["locked"] is True
    time.sleep(2.5)
    next_run = run({"purpose": "next"})
    assert next_run["locked"] is True and next_run["changed"] is True and next_run["reason"].startswith("expired at")
    assert next_run["previous"]["id"] == patient["lock"]["id"]
    assert "took over the lock of cluster 'k' from run %s (root-at-" % patient["lock"]["id"] in json.dumps(
        next_run.get("warnings")), next_run
    assert "the patient one" in json.dumps(next_run["previous"]).replace("-", " ")
    # The run whose lease ran out stops at its next renewal, as another run may hold the lock by then.
    lost = run({"state": "renewed", "run_id": patient["lock"]["id"]})
    assert lost["failed"] is True and lost["error"]["reason"] == "lockLost", lost
    assert "it is locked by run %s" % next_run["lock"]["id"] in lost["msg"]
