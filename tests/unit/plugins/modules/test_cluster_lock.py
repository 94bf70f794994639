# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import subprocess
import sys
from unittest import mock

import pytest

from ansible_collections.kubeha.gce.plugins.module_utils._gce import lock as lock_module
from ansible_collections.kubeha.gce.plugins.modules import cluster_lock
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import (
    BASE,
    PROJECT,
    error,
    fake_gce,
    not_found,
    ok,
    op_done,
    op_pending,
    run_module,
)

ARGS = {"cluster_name": "k", "region": "europe-west1", "holder": "ops at bastion", "purpose": "replicate"}
NOW = 2_000_000_000
REGION_URL = "%sprojects/%s/regions/europe-west1" % (BASE, PROJECT)
CLUSTER = {"kubeha-cluster": "k", "kubeha-role": "master", "team": "infra"}


def lock_labels(run_id, expires=NOW + 600, since=NOW - 60, process="", holder="root-at-ci", purpose="remove"):
    return {"kubeha-lock": run_id, "kubeha-lock-by": holder, "kubeha-lock-for": purpose,
            "kubeha-lock-since": str(since), "kubeha-lock-until": str(expires), "kubeha-lock-proc": process}


def address(labels=None, fingerprint="fp-1"):
    return {"kind": "compute#address", "id": "7", "name": "k-master-ip", "address": "198.51.100.9",
            "addressType": "EXTERNAL", "status": "IN_USE", "users": [], "region": REGION_URL,
            "labels": dict(CLUSTER) if labels is None else labels, "labelFingerprint": fingerprint,
            "selfLink": "%s/addresses/k-master-ip" % REGION_URL}


def regional(errors=None):
    return [op_pending(region="europe-west1"), op_done(region="europe-west1", errors=errors)]


@pytest.fixture(autouse=True)
def fixed_time():
    """Wall time stands at NOW, and the controller process of the run is a fixed one."""
    with mock.patch.object(lock_module, "wall_clock", return_value=NOW), \
            mock.patch.object(lock_module, "run_process", return_value=""), \
            mock.patch.object(lock_module.secrets, "token_hex", return_value="aaaa11112222"):
        yield


def run(http, check_mode=False, diff=False, **args):
    return run_module(cluster_lock.main, dict(ARGS, **args), http, check_mode=check_mode, diff=diff)


def mine(run_id="aaaa11112222", since=NOW, expires=NOW + 1200):
    return lock_labels(run_id, expires=expires, since=since, holder="ops-at-bastion", purpose="replicate")


@pytest.mark.parametrize("args, message", [
    ({"run_id": "Not-An-Id"}, "run_id 'Not-An-Id' is not a lock's id"),
    ({"state": "absent"}, "state=absent is about the lock of one run: give its run_id"),
    ({"state": "renewed"}, "state=renewed is about the lock of one run: give its run_id"),
    ({"ttl": 0}, "ttl=0: give a positive number of seconds"),
    ({"timeout": -1}, "timeout=-1: give a positive number of seconds"),
])
def test_bad_input_fails_before_any_request(args, message):
    with fake_gce([]) as http:
        result = run(http, **args)
    assert result["failed"] is True and message in result["msg"]
    assert http.calls == []


def test_free_lock_is_taken_keeping_the_other_labels():
    with fake_gce([ok(address())] + regional() + [ok(address(dict(CLUSTER, **mine()), "fp-2"))]) as http:
        result = run(http, diff=True)
    assert http.names == ["addresses.get", "addresses.setLabels", "regionOperations.wait", "addresses.get"]
    assert http.calls[1].body == {"labels": dict(CLUSTER, **mine()), "labelFingerprint": "fp-1"}
    assert result["locked"] is True and result["changed"] is False and result["reason"] == ""
    assert result["lock"] == {"id": "aaaa11112222", "holder": "ops-at-bastion", "purpose": "replicate",
                              "since": "2033-05-18T03:33:20Z", "expires": "2033-05-18T03:53:20Z"}
    assert result["diff"] == {"before": {"lock": None}, "after": {"lock": result["lock"]}}
    assert result["previous"] is None and result["waited"] == 0 and result["waited_for"] is None


def test_renewing_keeps_since_and_moves_the_expiry():
    held = dict(CLUSTER, **mine(since=NOW - 300, expires=NOW + 10))
    renewed = dict(CLUSTER, **mine(since=NOW - 300))
    with fake_gce([ok(address(held))] + regional() + [ok(address(renewed, "fp-2"))]) as http:
        result = run(http, state="renewed", run_id="aaaa11112222", ttl=1200)
    assert http.calls[1].body["labels"] == renewed
    assert result["locked"] is True and result["changed"] is False


@pytest.mark.parametrize("labels, holder", [
    (lock_labels("bbbb33334444", expires=NOW - 5), "it is locked by run bbbb33334444"),
    ({}, "it is not locked"),
], ids=["taken-by-another", "broken"])
def test_a_renewal_of_a_lock_that_was_lost_stops_the_run(labels, holder):
    with fake_gce([ok(address(dict(CLUSTER, **labels)))]) as http:
        result = run(http, state="renewed", run_id="aaaa11112222")
    assert http.mutating == []
    assert result["failed"] is True and result["error"]["reason"] == "lockLost"
    assert result["msg"].startswith("cluster 'k' is no longer locked by run aaaa11112222: %s" % holder)


def test_a_live_lock_of_another_run_is_waited_for_then_named():
    theirs = dict(CLUSTER, **lock_labels("bbbb33334444"))
    with fake_gce([ok(address(theirs))] * 3) as http:
        result = run(http, timeout=10)
    assert http.mutating == []
    assert result["failed"] is True
    assert result["msg"] == (
        "cluster 'k' is locked by run bbbb33334444 (root-at-ci, remove, since 2033-05-18T03:32:20Z; expires in 600 s "
        "at 2033-05-18T03:43:20Z): another run is changing it; waited 10 s (timeout). Run again once it has "
        "finished; if that run is dead (killed, or its controller gone), its lock expires by itself at "
        "2033-05-18T03:43:20Z, or break it now with break_lock=bbbb33334444 (the playbooks: "
        "-e kubeha_lock_break=bbbb33334444)")
    assert result["error"]["reason"] == "locked"


def test_the_lock_is_taken_once_the_other_run_releases_it():
    theirs = dict(CLUSTER, **lock_labels("bbbb33334444"))
    with fake_gce([ok(address(theirs)), ok(address(theirs)), ok(address(dict(CLUSTER), "fp-3"))] + regional()
                  + [ok(address(dict(CLUSTER, **mine()), "fp-4"))]) as http:
        result = run(http)
    assert http.calls[3].body["labelFingerprint"] == "fp-3"
    assert result["locked"] is True and result["changed"] is False and result["waited"] == 10.0
    assert result["waited_for"]["id"] == "bbbb33334444" and result["waited_for"]["holder"] == "root-at-ci"


@pytest.mark.parametrize("labels, args, reason", [
    (lock_labels("bbbb33334444", expires=NOW - 5), {}, "expired at 2033-05-18T03:33:15Z"),
    (lock_labels("bbbb33334444"), {"break_lock": "bbbb33334444"}, "broken on request (break_lock)"),
], ids=["expired", "broken"])
def test_an_expired_or_broken_lock_is_taken_over(labels, args, reason):
    with fake_gce([ok(address(dict(CLUSTER, **labels)))] + regional()
                  + [ok(address(dict(CLUSTER, **mine()), "fp-2"))]) as http:
        result = run(http, diff=True, **args)
    assert result["locked"] is True and result["changed"] is True and result["reason"] == reason
    assert result["previous"]["id"] == "bbbb33334444"
    assert result["diff"]["before"]["lock"]["id"] == "bbbb33334444"
    assert any("took over the lock of cluster 'k' from run bbbb33334444" in w for w in result["warnings"])
    assert http.calls[1].body["labels"] == dict(CLUSTER, **mine())


def test_break_lock_of_another_id_breaks_nothing():
    theirs = dict(CLUSTER, **lock_labels("bbbb33334444"))
    with fake_gce([ok(address(theirs))]) as http:
        result = run(http, timeout=0, break_lock="cccc55556666")
    assert result["failed"] is True and "locked by run bbbb33334444" in result["msg"]
    assert any("break_lock=cccc55556666: no such lock is held" in w for w in result["warnings"])
    assert http.mutating == []


def test_a_stale_fingerprint_is_read_again():
    # Another run took the lock between the read and the write: a 412 on the call, or an operation that ends
    # with CONDITION_NOT_MET; the lock is then read again and waited for.
    theirs = dict(CLUSTER, **lock_labels("bbbb33334444"))
    with fake_gce([ok(address()), error(412, "conditionNotMet"), ok(address(theirs, "fp-2")),
                   ok(address(theirs, "fp-2"))]) as http:
        result = run(http, timeout=5)
    assert result["failed"] is True and "locked by run bbbb33334444" in result["msg"]
    with fake_gce([ok(address())] + regional(errors=[{"code": "CONDITION_NOT_MET", "message": "stale"}])
                  + [ok(address(dict(CLUSTER), "fp-2"))] + regional()
                  + [ok(address(dict(CLUSTER, **mine()), "fp-3"))]) as http:
        result = run(http)
    assert [c.body["labelFingerprint"] for c in http.calls if c.method == "addresses.setLabels"] == ["fp-1", "fp-2"]
    assert result["locked"] is True


def test_a_lock_read_back_as_another_runs_is_not_held():
    theirs = dict(CLUSTER, **lock_labels("bbbb33334444"))
    with fake_gce([ok(address())] + regional() + [ok(address(theirs, "fp-2")), ok(address(theirs, "fp-2"))]) as http:
        result = run(http, timeout=0)
    assert result["failed"] is True and "locked by run bbbb33334444" in result["msg"]


@pytest.mark.parametrize("answer, reason", [
    (not_found(), "address 'k-master-ip' (europe-west1) does not exist: cluster 'k' has no reserved address yet"),
    (ok(address({"owner": "someone"})), "address 'k-master-ip' (europe-west1) is not the reserved address of cluster 'k'"),
], ids=["no-address", "not-ours"])
def test_nothing_to_lock(answer, reason):
    with fake_gce([answer]) as http:
        result = run(http)
    assert result["locked"] is False and result["changed"] is False and result["reason"].startswith(reason)
    assert http.mutating == []


def test_check_mode_writes_nothing_and_warns_about_a_holder():
    with fake_gce([ok(address())]) as http:
        result = run(http, check_mode=True)
    assert http.mutating == [] and result["locked"] is False and result["lock"]["id"] == "aaaa11112222"
    theirs = dict(CLUSTER, **lock_labels("bbbb33334444"))
    with fake_gce([ok(address(theirs))]) as http:
        result = run(http, check_mode=True)
    assert http.mutating == [] and result["locked"] is False and result["previous"]["id"] == "bbbb33334444"
    assert any("cluster 'k' is locked by run bbbb33334444" in w for w in result["warnings"])


def test_release_removes_only_the_lock_labels():
    held = dict(CLUSTER, **mine())
    with fake_gce([ok(address(held))] + regional()) as http:
        result = run(http, state="absent", run_id="aaaa11112222", diff=True)
    assert http.calls[1].body == {"labels": CLUSTER, "labelFingerprint": "fp-1"}
    assert result["changed"] is False and result["reason"] == "released" and result["locked"] is False
    assert result["diff"]["before"]["lock"]["id"] == "aaaa11112222" and result["diff"]["after"]["lock"] is None


def test_release_leaves_another_runs_lock():
    theirs = dict(CLUSTER, **lock_labels("bbbb33334444"))
    with fake_gce([ok(address(theirs))]) as http:
        result = run(http, state="absent", run_id="aaaa11112222")
    assert http.mutating == [] and result["reason"] == "held by another run"
    assert any("cluster 'k' is locked by run bbbb33334444" in w and "not by this run (aaaa11112222)" in w for w in result["warnings"])
    with fake_gce([ok(address())]) as http:
        result = run(http, state="absent", run_id="aaaa11112222")
    assert http.mutating == [] and result["reason"] == "not locked"


def test_a_run_process_that_ended_is_known_to_have_ended():
    # The key of this very process (a run process is whatever runs under it; here, the test's own).
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        machine = lock_module._machine()  # pylint: disable=protected-access
        assert machine is not None
        start = lock_module._proc_start(child.pid)  # pylint: disable=protected-access
        key = "%s-%d-%s" % (machine, child.pid, start)
        assert lock_module.process_gone(key) is False
        # Same PID, another start time: a process that came later with a reused PID.
        assert lock_module.process_gone("%s-%d-%s" % (machine, child.pid, int(start) + 1)) is True
    finally:
        child.kill()
        child.wait()
    assert lock_module.process_gone(key) is True
    # Another boot or PID namespace (another controller, container): it cannot be told, so it is not gone.
    assert lock_module.process_gone("000000000000-1-%d-%s" % (child.pid, start)) is False
    assert lock_module.process_gone("") is False and os.getpid() > 1


def test_label_values():
    assert lock_module.label_value("Ops At Bastion.example.com") == "ops-at-bastion-example-com"
    assert len(lock_module.label_value("x" * 100)) == 63
