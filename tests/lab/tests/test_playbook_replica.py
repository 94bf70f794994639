# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce.gce_master_replica run by ansible-playbook against the lab, with AWX-style credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t

import pytest

from conftest import PROJECT, ZONE, collection_and_key

pytestmark = pytest.mark.playbook


@pytest.fixture
def ansible(lab, tmp_path):
    """Run one task of the collection with ansible-playbook; return its result."""
    key_file = collection_and_key(lab, tmp_path, "awx")
    env = dict(os.environ)
    for name in [n for n in env if n.startswith(("GCP_", "GCE_", "ANSIBLE_"))]:
        env.pop(name)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        # What the AWX Google Compute Engine credential sets, plus the lab's endpoint.
        "GCE_CREDENTIALS_FILE_PATH": str(key_file),
        "GCE_PROJECT": PROJECT,
        "KUBEHA_GCE_API_ENDPOINT": lab.endpoint,
    })
    playbook = tmp_path / "task.yml"
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

    def run(module: str, args: dict[str, t.Any], check: bool = False, diff: bool = False) -> dict[str, t.Any]:
        result_file = tmp_path / "result.json"
        if result_file.exists():
            result_file.unlink()
        playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "step", module: args, "register": "result", "ignore_errors": True},
            {"name": "save the result", "ansible.builtin.copy": {"content": "{{ result | to_json }}",
                                                                 "dest": str(result_file)},
             "check_mode": False, "diff": False},
        ]}]))
        command = [ansible_playbook, "-i", "localhost,", "-c", "local", str(playbook)]
        command += ["--check"] if check else []
        command += ["--diff"] if diff else []
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
        if not result_file.exists():
            raise AssertionError("ansible-playbook failed: %s\n%s" % (done.stdout[-3000:], done.stderr[-3000:]))
        return json.loads(result_file.read_text())

    return run


REPLICA = {"cluster_name": "k", "zone": ZONE, "metadata": {"cluster-name": "k"}, "data_disk_size_gb": 20}


def lifecycle(lab, ansible) -> None:
    lab.control("DELETE", "requests")
    planned = ansible("kubeha.gce.gce_master_replica", REPLICA, check=True, diff=True)
    assert not planned.get("failed"), planned.get("msg")
    assert planned["changed"] is True
    assert planned["actions"] == ["create disk k-master-pd", "create instance k-master"]
    assert lab.mutating() == [], "check mode called %s" % lab.mutating()

    created = ansible("kubeha.gce.gce_master_replica", REPLICA)
    assert not created.get("failed"), created.get("msg")
    replica = created["replica"]
    assert created["changed"] is True and replica["status"] == "RUNNING"
    assert replica["internal_ip"].startswith("10.132.0.") and replica["external_ip"].startswith("203.0.113.")
    assert replica["data_disk"]["name"] == "k-master-pd" and replica["data_disk"]["users"] == ["k-master"]
    assert replica["labels"] == {"kubeha-cluster": "k", "kubeha-role": "master"}

    lab.control("DELETE", "requests")
    again = ansible("kubeha.gce.gce_master_replica", REPLICA)
    assert again["changed"] is False, again.get("actions") or again.get("msg")
    assert lab.mutating() == [], "a re-run called %s" % lab.mutating()

    listed = ansible("kubeha.gce.gce_master_replica_info", {"cluster_name": "k", "zone": ZONE})
    assert [r["name"] for r in listed["replicas"]] == ["k-master"]
    assert listed["replicas"][0]["internal_ip"] == replica["internal_ip"]

    lab.control("DELETE", "requests")
    updated = ansible("kubeha.gce.gce_master_replica", dict(REPLICA, metadata={"cluster-name": "k", "extra": "1"}),
                      diff=True)
    assert updated["changed"] is True and updated["replica"]["metadata"] == {"cluster-name": "k", "extra": "1"}
    assert [m for m in lab.mutating() if m != "compute.instances.setMetadata"] == []
    assert updated["diff"]["before"]["metadata"] == {"cluster-name": "k"}

    deleted = ansible("kubeha.gce.gce_master_replica", dict(REPLICA, state="absent", delete_data_disk=True))
    assert deleted["changed"] is True and not deleted.get("failed"), deleted.get("msg")
    gone = ansible("kubeha.gce.gce_master_replica_info", {"cluster_name": "k", "region": "europe-west1"})
    assert gone["replicas"] == []
    compute = lab.client()
    disks = compute.disks().list(project=PROJECT, zone=ZONE).execute().get("items", [])
    assert disks == [], "left behind: %s" % [d["name"] for d in disks]


def test_replica_lifecycle(lab, ansible):
    lifecycle(lab, ansible)


def test_replica_lifecycle_under_a_30_percent_503_rate(lab, ansible):
    lab.control("PUT", "faults", {"seed": 11, "errors": {"*": {"rate": 0.3, "status": 503}}})
    lifecycle(lab, ansible)
    failures = [r for r in lab.requests() if r["status"] == 503]
    assert failures, "the fault injection did not fire"


def test_a_failed_operation_fails_the_task_and_a_rerun_converges(lab, ansible):
    lab.control("PUT", "faults", {"fail_operations": {"compute.instances.insert": {
        "count": 1, "code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "The zone does not have enough resources."}}})
    failed = ansible("kubeha.gce.gce_master_replica", REPLICA)
    assert failed["failed"] is True
    assert failed["msg"] == ("creating instance k-master failed: ZONE_RESOURCE_POOL_EXHAUSTED: The zone does not have "
                             "enough resources.")
    converged = ansible("kubeha.gce.gce_master_replica", REPLICA)
    assert converged["changed"] is True and converged["replica"]["status"] == "RUNNING"
    assert converged["actions"] == ["create instance k-master"]  # the disk was already there
