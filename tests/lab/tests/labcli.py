# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for tests that run the lab through its command line (tests/lab/lab)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

LAB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lab"))

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


REPORT_DIR = os.environ.get("KUBEHA_REPORT_DIR", "/var/tmp/kubeha-gce/reports")


def save_report(name, report):
    """Save a test's measurements as JSON under $KUBEHA_REPORT_DIR; returns the file's path."""
    os.makedirs(REPORT_DIR, exist_ok=True)
    path = os.path.join(REPORT_DIR, "%s-%s.json" % (name, time.strftime("%Y%m%dT%H%M%S")))
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    return path


def _children():
    """Every process's children, by parent PID, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry, encoding="utf-8") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(parent, []).append(int(entry))
    return children


def kill_tree(pid):
    """SIGKILL a process and every process under it, whatever session or group they are in (Ansible's workers
    start sessions of their own, so a kill of the process group misses them). The tree is frozen (SIGSTOP) until
    no new process appears in it, then killed at once. A process that left the tree before (a daemon that detached,
    such as ssh's ControlPersist master) is not in it: `lab down` ends those with the lab."""
    frozen = set()
    while True:
        children, found, todo = _children(), [], [pid]
        while todo:
            found.append(todo.pop())
            todo.extend(children.get(found[-1], []))
        new = [p for p in found if p not in frozen]
        if not new:
            break
        for process in new:
            try:
                os.kill(process, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            frozen.add(process)
    for process in frozen:
        try:
            os.kill(process, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def lab(env, *args, timeout=600, input_text=None):
    """Run the lab's command line. On a timeout, or when the test run is interrupted, every process it started is
    killed, so nothing is left behind to hold the lab, and the exception goes on."""
    with subprocess.Popen([LAB] + list(args), env=env, stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(input_text, timeout=timeout)
        except BaseException:  # a timeout, or the run interrupted (KeyboardInterrupt): nothing of it may outlive it
            kill_tree(process.pid)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


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
    found += ["namespace %s" % n for n in listed if n == namespace or n.startswith(namespace + "-")]
    # Each lab's SSH control sockets (kubeha_lab.__main__.ssh_control_dir).
    ssh_dir = "/run/kubeha-lab/%s" % namespace
    if os.path.exists(ssh_dir):
        found.append("directory %s" % ssh_dir)
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
        if (state in command or "netns exec %s " % namespace in command or ssh_dir + "/" in command) and alive(int(pid)):
            found.append("process %s: %s" % (pid, command[:120]))
    return found
