# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's command line, for real: a namespace, the simulator in it, a playbook through `lab exec`, clean-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

LAB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lab"))
DEMO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "demo", "replica.yml"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def lab_env(tmp_path):
    namespace = "kubeha-lab-t%d" % os.getpid()
    env = dict(os.environ, KUBEHA_LAB_STATE=str(tmp_path / "state"), KUBEHA_LAB_NS=namespace)
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    yield env
    subprocess.run([LAB, "down"], env=env, capture_output=True, check=False, timeout=120)


def lab(env, *args, timeout=300):
    return subprocess.run([LAB] + list(args), env=env, capture_output=True, text=True, timeout=timeout, check=False)


def alive(pid):
    """Running, not a zombie left for a parent that is gone."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_up_exec_status_down(lab_env):
    namespace = lab_env["KUBEHA_LAB_NS"]
    started = lab(lab_env, "up")
    assert started.returncode == 0, started.stderr
    assert namespace in namespaces()
    pid = int(open(os.path.join(lab_env["KUBEHA_LAB_STATE"], "simulator.pid"), encoding="utf-8").read())
    assert alive(pid)
    # The simulator listens inside the namespace only: not on this namespace's loopback.
    outside = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 8089), 2)"],
                             capture_output=True, check=False)
    assert outside.returncode != 0

    environment = lab(lab_env, "env").stdout
    assert "export KUBEHA_GCE_API_ENDPOINT=http://127.0.0.1:8089/compute/v1/" in environment
    assert "export GCP_SERVICE_ACCOUNT_FILE=" in environment
    key = os.path.join(lab_env["KUBEHA_LAB_STATE"], "deployer.json")
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"

    demo = lab(lab_env, "exec", "--", "ansible-playbook", DEMO, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "demo-master in europe-west1-b: RUNNING" in demo.stdout
    assert "second run changed: False" in demo.stdout
    assert "failed=0" in demo.stdout

    assert lab(lab_env, "status").returncode == 0
    assert lab(lab_env, "down").returncode == 0
    assert namespace not in namespaces()
    assert not alive(pid)
    # Safe twice.
    assert lab(lab_env, "down").returncode == 0


def test_down_after_a_crash_cleans_up(lab_env):
    namespace = lab_env["KUBEHA_LAB_NS"]
    assert lab(lab_env, "up").returncode == 0
    pid = int(open(os.path.join(lab_env["KUBEHA_LAB_STATE"], "simulator.pid"), encoding="utf-8").read())
    os.kill(pid, signal.SIGKILL)
    # up again after the crash restarts the simulator on the state it kept.
    assert lab(lab_env, "up").returncode == 0
    assert lab(lab_env, "status").returncode == 0
    assert lab(lab_env, "down").returncode == 0
    assert namespace not in namespaces()
