# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab for real, through its command line: namespaces, machines, the demo playbook over SSH, clean-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

LAB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lab"))
DEMO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "demo", "replica.yml"))

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

CONTROL = """
import json, sys, urllib.request as u
r = u.Request("http://127.0.0.1:8089/_lab/" + sys.argv[2], method=sys.argv[1],
              data=sys.argv[3].encode() if len(sys.argv) > 3 else None, headers={"Content-Type": "application/json"})
print(u.urlopen(r, timeout=30).read().decode())
"""


@pytest.fixture
def lab_env(tmp_path):
    state = tmp_path / "state"
    env = dict(os.environ, KUBEHA_LAB_STATE=str(state), KUBEHA_LAB_NS="klt%d" % os.getpid())
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    yield env
    subprocess.run([LAB, "down"], env=env, capture_output=True, check=False, timeout=300)
    assert leftovers(env) == []


def lab(env, *args, timeout=600):
    return subprocess.run([LAB] + list(args), env=env, capture_output=True, text=True, timeout=timeout, check=False)


def control(env, method, path, body=None):
    args = ["exec", "--", sys.executable, "-c", CONTROL, method, path] + ([json.dumps(body)] if body is not None else [])
    done = lab(env, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "{}")


def alive(pid):
    """Running, not a zombie left for a parent that is gone."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def leftovers(env):
    """Namespaces, mounts, loop devices and processes of this lab that are still there."""
    state, namespace = env["KUBEHA_LAB_STATE"], env["KUBEHA_LAB_NS"]
    found = []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    found += ["namespace %s" % n for n in listed if n.startswith(namespace)]
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        found += ["mount %s" % line.split()[4] for line in handle if state in line]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout.splitlines()
    found += ["loop %s" % line for line in loops if state in line]
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (state in command or "netns exec %s" % namespace in command) and alive(int(pid)):
            found.append("process %s: %s" % (pid, command[:120]))
    return found


def test_demo_over_ssh_then_again_under_injected_errors(lab_env):
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

    # The same with 30% of the API calls answered 503.
    control(lab_env, "PUT", "faults", {"seed": 5, "errors": {"*": {"rate": 0.3, "status": 503}}})
    control(lab_env, "DELETE", "requests")
    again = lab(lab_env, "exec", "--", "ansible-playbook", DEMO)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert "logged in to demo-master as kubeha over SSH" in again.stdout
    statuses = [r["status"] for r in control(lab_env, "GET", "requests")["requests"]]
    assert statuses.count(503) >= 3, "the injected errors did not fire"

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
    os.kill(pid, signal.SIGKILL)
    assert lab(lab_env, "down").returncode == 0
    assert leftovers(lab_env) == []


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
