# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures and helpers for the host layer's tests (kubeha_lab.host).

The real tests use a lab of their own (namespace ``khtPID``, state under
/var/tmp) so they never touch a lab that is up on the same machine, and the
shared image cache. A stub metadata server runs in their lab namespace.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeha_lab.host import Host, LabConfig, machines, netns

LAB_DIR = Path(__file__).resolve().parent.parent
SSH_USER = "alice"
REGION_GATEWAY = "10.132.0.1"
PROBE = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as conn:
        print(conn.recv(200).decode().strip())
except OSError as exc:
    print("ERROR", type(exc).__name__, exc)
"""
SERVER = r"""
import socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("0.0.0.0", int(sys.argv[1])))
sock.listen(64)
while True:
    conn, peer = sock.accept()
    conn.sendall(f"{socket.gethostname()} {peer[0]}\n".encode())
    conn.close()
"""


def need_root() -> None:
    """Skip unless running as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root")


class Metadata:
    """The stub metadata server's document (tests edit it; it is read on every request)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.document: dict[str, Any] = {"project": {"attributes": {}}, "instances": {}}
        self.save()

    def save(self) -> None:
        """Write the document atomically."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.document), encoding="utf-8")
        os.replace(tmp, self.path)

    def set_instance(self, ip: str, hostname: str, attributes: dict[str, str]) -> None:
        """Metadata of the instance with internal IP ip."""
        self.document["instances"][ip] = {"hostname": hostname, "attributes": dict(attributes)}
        self.save()

    def set_project(self, attributes: dict[str, str]) -> None:
        """Project metadata."""
        self.document["project"]["attributes"] = dict(attributes)
        self.save()


class LabForTests:
    """A Host of the tests' own plus what they need to talk to machines."""

    def __init__(self, host: Host, metadata: Metadata, key: Path) -> None:
        self.host = host
        self.metadata = metadata
        self.key = key
        self.public_key = key.with_suffix(".pub").read_text(encoding="utf-8").strip()

    def boot(self, name: str, ip: str, data_disks: dict[str, Path] | None = None,
             attributes: dict[str, str] | None = None) -> float:
        """Create a boot disk (if needed) and start machine name; return the boot time in seconds."""
        hostname = f"{name}.europe-west1-b.c.kubeha-lab.internal"
        self.metadata.set_instance(ip, hostname, attributes or {})
        boot = self.host.disk_path(f"{name}-boot") or self.host.create_boot_disk(f"{name}-boot")
        started = time.monotonic()
        self.host.start_machine(name, hostname, ip, REGION_GATEWAY, boot, data_disks or {})
        return time.monotonic() - started

    def in_lab(self, argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run argv in the lab namespace."""
        return subprocess.run(self.host.lab_argv(argv), capture_output=True, text=True, timeout=timeout, check=False)

    def ssh(self, ip: str, command: str, user: str = SSH_USER) -> subprocess.CompletedProcess[str]:
        """Run command over SSH from the lab namespace."""
        return self.in_lab([
            "ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
            f"{user}@{ip}", command,
        ])

    def probe_from_lab(self, ip: str, port: int, timeout: float = 2.0, source: str | None = None) -> str:
        """First line a TCP server at ip:port sends to the lab namespace, or 'ERROR ...'."""
        code = PROBE if source is None else PROBE.replace(
            "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))",
            f"socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]), "
            f"source_address=({source!r}, 0))")
        return self.in_lab([sys.executable, "-c", code, ip, str(port), str(timeout)]).stdout.strip()

    def port_open_from_lab(self, ip: str, port: int) -> bool:
        """True when a TCP connection from the lab namespace to ip:port succeeds."""
        code = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()"
        return self.in_lab([sys.executable, "-c", code, ip, str(port)]).returncode == 0

    def probe_from(self, machine: str, ip: str, port: int, timeout: float = 2.0) -> str:
        """First line a TCP server at ip:port sends to machine, or 'ERROR ...'."""
        return self.host.machine_exec(machine, ["python3", "-c", PROBE, ip, str(port), str(timeout)]).stdout.strip()

    def serve(self, machine: str, port: int) -> None:
        """Start a TCP server on port in machine that answers 'HOSTNAME PEER_IP'."""
        unit = f"probe-{port}"
        if self.host.machine_exec(machine, ["systemctl", "is-active", "--quiet", unit]).returncode == 0:
            return
        result = self.host.machine_exec(machine, ["systemd-run", f"--unit={unit}", "python3", "-c", SERVER, str(port)])
        assert result.returncode == 0, result.stderr
        assert wait_for(lambda: self.host.machine_exec(machine, ["sh", "-c", f"ss -ltn | grep -q ':{port} '"]).returncode == 0)


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.25) -> bool:
    """Poll predicate until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def leftovers(config: LabConfig) -> list[str]:
    """What a lab left behind: namespaces, mounts, loop devices, nspawn processes, cgroups."""
    found = [f"namespace {n}" for n in netns.list_namespaces() if n == config.lab_ns or n.startswith(config.machine_ns_prefix)]
    state = str(config.state_dir.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        found += [f"mount {line.split()[4]}" for line in handle if line.split()[4].startswith(state)]
    losetup = subprocess.run(["losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"],
                             capture_output=True, text=True, check=False).stdout
    found += [f"loop {line}" for line in losetup.splitlines() if state in line]
    for pid in os.listdir("/proc"):
        if pid.isdigit() and machines.process_start_time(int(pid)) is not None:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith("systemd-nspawn") and state in cmdline:
                found.append(f"process {pid} {cmdline[:80]}")
    found += [f"cgroup {c}" for c in machines.lab_cgroups(config) if c.exists()]
    return found


@pytest.fixture(scope="session")
def host_config() -> Iterator[LabConfig]:
    """A lab configuration of the tests' own (the image cache is shared)."""
    need_root()
    pid = os.getpid()
    config = LabConfig(state_dir=Path(f"/var/tmp/kubeha-lab-test-{pid}"), cache_dir=LabConfig.from_env().cache_dir,
                       lab_ns=f"kht{pid}")
    yield config
    Host(config).down()
    shutil.rmtree(config.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(host_config: LabConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabForTests]:
    """The tests' lab: image built, namespace up, stub metadata server running, an SSH key."""
    host = Host(host_config)
    host.ensure_image()
    host.up()
    keys = tmp_path_factory.mktemp("ssh")
    key = keys / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-test", "-f", str(key)], check=True)
    metadata = Metadata(host_config.state_dir / "metadata.json")
    env = dict(os.environ, PYTHONPATH=str(LAB_DIR))
    with open(host_config.state_dir / "metadata.log", "w", encoding="utf-8") as log:
        server = subprocess.Popen(host.lab_argv([sys.executable, "-m", "kubeha_lab.host.metadata_stub", str(metadata.path)]),
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = LabForTests(host, metadata, key)
        assert wait_for(lambda: ready.port_open_from_lab("169.254.169.254", 80), 10), "the metadata stub did not start"
        yield ready
    finally:
        server.kill()
        server.wait()
        host.down()
