# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab for real, through its command line: namespaces, machines, the demo playbook over SSH, clean-up."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from labcli import LAB, alive, lab, leftovers

DEMO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "demo", "replica.yml"))

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]


def test_demo_over_ssh(lab_env):
    started = lab(lab_env, "up")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(open(os.path.join(lab_env["KUBEHA_LAB_STATE"], "simulator.pid"), encoding="utf-8").read())
    assert alive(pid)
    # The simulator listens inside the namespace only, not on this namespace's loopback.
    outside = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 8089), 2)"],
                             capture_output=True, check=False)
    assert outside.returncode != 0
    environment = lab(lab_env, "env").stdout
    assert "export KUBEHA_GCE_API_ENDPOINT=http://127.0.0.1:8089/compute/v1/" in environment
    key = os.path.join(lab_env["KUBEHA_LAB_STATE"], "deployer.json")
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"

    # check mode -> create -> idempotent re-run -> SSH login (user from ssh-keys, sudo, data disk) -> delete
    demo = lab(lab_env, "exec", "--", "ansible-playbook", DEMO)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-2000:]
    assert "demo-master in europe-west1-b: RUNNING" in demo.stdout
    assert "second run changed: False" in demo.stdout
    assert "logged in to demo-master as kubeha over SSH; sudo gives root" in demo.stdout
    assert "/dev/disk/by-id/google-master-pd" in demo.stdout

    assert lab(lab_env, "status").returncode == 0
    assert lab(lab_env, "down").returncode == 0
    assert not alive(pid)
    assert leftovers(lab_env) == []
    assert lab(lab_env, "down").returncode == 0  # safe twice


def test_down_after_the_simulator_is_killed_with_a_machine_running(lab_env, tmp_path):
    assert lab(lab_env, "up").returncode == 0
    playbook = tmp_path / "create.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "create", "kubeha.gce.gce_master_replica": {"cluster_name": "crash", "zone": "us-east1-b"}}]}]))
    created = lab(lab_env, "exec", "--", "ansible-playbook", str(playbook))
    assert created.returncode == 0, created.stdout[-3000:]
    assert any(line.startswith("process") for line in leftovers(lab_env)), "no machine is running"
    pid = int(open(os.path.join(lab_env["KUBEHA_LAB_STATE"], "simulator.pid"), encoding="utf-8").read())
    machines = [json.loads(p.read_text())["pid"]
                for p in pathlib.Path(lab_env["KUBEHA_LAB_STATE"], "machines").glob("*/machine.json")]
    assert machines and all(machines)
    os.kill(pid, signal.SIGKILL)
    assert lab(lab_env, "down").returncode == 0
    assert leftovers(lab_env) == []
    # Not even a zombie of a machine's nspawn is left when down returns.
    assert [p for p in machines if os.path.exists("/proc/%d" % p)] == []


def test_forwarding_rule_balances_across_healthy_members_only(lab_env):
    assert lab(lab_env, "up").returncode == 0
    scenario = os.path.join(os.path.dirname(LAB), "scenarios", "load_balancing.py")
    done = lab(lab_env, "exec", "--", sys.executable, scenario)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["health_before"] == {"web-b": "HEALTHY", "web-c": "HEALTHY"}
    # Both machines answer through the forwarding rule's address.
    assert set(report["before"]) == {"web-b", "web-c"}, report["before"]
    # Once the crashed one fails its checks, only the live one gets connections.
    assert report["health_after"] == {"web-b": "HEALTHY", "web-c": "UNHEALTHY"}
    assert report["after"] == {"web-b": 40}, report["after"]
    # A client that kept connecting meanwhile: failures only until the health check took the member out.
    assert report["during_crash"]["failed_after_unhealthy"] == 0, json.dumps(report)
    print("load balancer during a member crash: %s" % report)


def test_enter_runs_a_command_in_an_empty_lab_namespace_that_can_bring_the_lab_up(lab_env):
    """``lab enter`` is how molecule runs: in the lab's namespace before the lab is up, bringing it up and down."""
    script = ("ip -o link show | cut -d: -f2 | tr -d ' ' | sort | tr '\\n' ,; echo; "
              "printenv KUBEHA_LAB_STATE; test -L \"$KUBEHA_LAB_STATE/collections/ansible_collections/kubeha/gce\"; "
              "tests/lab/lab up --no-machines >/dev/null && python3 -c 'import urllib.request as u; "
              "print(u.urlopen(\"http://127.0.0.1:8089/_lab/health\", timeout=10).status)' && tests/lab/lab down >/dev/null")
    done = subprocess.run([LAB, "enter", "--", "sh", "-c", script], env=lab_env, capture_output=True, text=True,
                          timeout=300, check=False, cwd=os.path.dirname(os.path.dirname(os.path.dirname(LAB))))
    assert done.returncode == 0, done.stdout + done.stderr
    links, state, health = done.stdout.split()[:3]
    # Only the namespace's own loopback: no link to any other network.
    assert links == "lo,"
    assert state == lab_env["KUBEHA_LAB_STATE"]
    # The simulator answered on the namespace's loopback, started from inside it.
    assert health == "200"
    assert leftovers(lab_env) == []
    # Without a lab brought up, the namespace it made is gone afterwards.
    assert subprocess.run([LAB, "enter", "--", "true"], env=lab_env, check=False, timeout=60).returncode == 0
    assert leftovers(lab_env) == []
