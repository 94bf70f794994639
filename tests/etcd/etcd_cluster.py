# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real etcd 3.4 clusters on 127.0.0.1 with peer and client TLS, for the etcd module tests.

This file shares no code with plugins/: it talks to etcd through the standard
library only, so a mistake in the collection's client cannot hide here.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import time
import typing as t
import urllib.error
import urllib.request


ETCD = os.environ.get("KUBEHA_ETCD", "etcd")
HOST = "127.0.0.1"


# -- certificates ------------------------------------------------------------------------------

class Pki(t.NamedTuple):
    """Paths of the test PKI: the cluster's CA, certs per member, a client, and a foreign CA's client."""

    ca: str
    members: dict[str, dict[str, str]]  # name -> {"server_cert", "server_key", "peer_cert", "peer_key"}
    client_cert: str
    client_key: str
    other_ca: str
    other_client_cert: str
    other_client_key: str


def _write(path: str, data: bytes, mode: int = 0o644) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def make_pki(directory: str, names: t.Iterable[str]) -> Pki:
    """The cluster's etcd CA and each member's certificates, issued by the collection's replica_pki module.

    Each member's etcd-server and etcd-peer certificates and the API server's
    etcd client certificate come from ``kubeha.gce.replica_pki``, exactly as the
    roles issue them; a second, foreign CA's client certificate too.
    """
    from conftest import run_module  # pylint: disable=import-outside-toplevel

    os.makedirs(directory, exist_ok=True)

    def issue(ca: dict[str, t.Any] | None, name: str, leaves: list[str]) -> dict[str, t.Any]:
        args: dict[str, t.Any] = {"replica": {"name": name, "internal_ip": HOST}, "leaves": leaves}
        args.update({"ca": ca} if ca else {"create_ca": True})
        result = run_module("replica_pki", args, diff=False)
        if result.get("failed"):
            raise RuntimeError("replica_pki failed: %s" % result.get("msg"))
        return result

    def write(stem: str, leaf: dict[str, str]) -> tuple[str, str]:
        return (_write(os.path.join(directory, stem + ".crt"), leaf["cert"].encode()),
                _write(os.path.join(directory, stem + ".key"), leaf["key"].encode(), 0o600))

    names = list(names)
    first = issue(None, names[0], ["apiserver-etcd-client"])
    ca = first["ca"]
    ca_path = _write(os.path.join(directory, "etcd-ca.crt"), ca["etcd"]["cert"].encode())
    members = {}
    for name in names:
        leaves = issue(ca, name, ["etcd-server", "etcd-peer"])["leaves"]
        server_cert, server_key = write("%s-server" % name, leaves["etcd-server"])
        peer_cert, peer_key = write("%s-peer" % name, leaves["etcd-peer"])
        members[name] = {"server_cert": server_cert, "server_key": server_key,
                         "peer_cert": peer_cert, "peer_key": peer_key}
    client_cert, client_key = write("client", first["leaves"]["apiserver-etcd-client"])
    foreign = issue(None, names[0], ["apiserver-etcd-client"])
    other_path = _write(os.path.join(directory, "other-ca.crt"), foreign["ca"]["etcd"]["cert"].encode())
    other_cert, other_client_key = write("other-client", foreign["leaves"]["apiserver-etcd-client"])
    return Pki(ca_path, members, client_cert, client_key, other_path, other_cert, other_client_key)


# -- talking to etcd with the standard library -------------------------------------------------

def tls_context(pki: Pki, cert: str | None = "client", ca: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca or pki.ca)
    if cert == "client":
        context.load_cert_chain(pki.client_cert, pki.client_key)
    elif cert == "other":
        context.load_cert_chain(pki.other_client_cert, pki.other_client_key)
    return context


def post(url: str, path: str, body: dict[str, t.Any], context: ssl.SSLContext, timeout: float = 5) -> dict[str, t.Any]:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:  # nosec - loopback only
        return json.loads(answer.read() or b"{}")


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port on HOST that nothing listens on, for a server started later.

    Taken below the kernel's ephemeral range, so that no outgoing connection (of a test, etcd or a module) is
    given it before the server binds it, and never handed out twice by this process, so that two servers
    started one after the other cannot be given the same one.
    """
    low = 20000
    high = max(low + 1000, _ephemeral_low())
    candidates = [p for p in random.sample(range(low, high), 200) if p not in _HANDED_OUT]
    free = [p for p in candidates[:50] if _bindable(p)]
    if not free:
        raise RuntimeError("no free port on %s between %d and %d" % (HOST, low, high))
    _HANDED_OUT.add(free[0])
    return int(free[0])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# -- processes ---------------------------------------------------------------------------------

class Member:
    """One etcd process: its name, URLs, data directory and process."""

    def __init__(self, name: str, root: str) -> None:
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = os.path.join(root, "%s.etcd" % name)
        self.log = os.path.join(root, "%s.log" % name)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return "https://%s:%d" % (HOST, self.client_port)

    @property
    def peer_url(self) -> str:
        return "https://%s:%d" % (HOST, self.peer_port)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Cluster:
    """etcd members started and, at the end, killed by this object (by PID)."""

    def __init__(self, root: str, pki: Pki) -> None:
        self.root = root
        self.pki = pki
        self.members: dict[str, Member] = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ready_at = time.monotonic()

    # starting and stopping
    def new(self, names: t.Sequence[str]) -> Cluster:
        """Start a new cluster of ``names`` and wait until every member serves."""
        for name in names:
            self.members[name] = Member(name, self.root)
        initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members.values())
        for name in names:
            self.start(name, initial, "new")
        for name in names:
            self.wait_ready(name)
        self.ready_at = time.monotonic()
        return self

    def settle(self) -> None:
        """Wait until the members have been connected for etcd's health interval (5 s), after which
        etcd stops refusing membership changes as "unhealthy cluster"."""
        time.sleep(max(0.0, self.ready_at + 5.5 - time.monotonic()))

    def member(self, name: str) -> Member:
        if name not in self.members:
            self.members[name] = Member(name, self.root)
        return self.members[name]

    def start(self, name: str, initial_cluster: str, state: str = "existing") -> Member:
        member = self.member(name)
        certs = self.pki.members[name]
        command = [
            ETCD, "--name", name, "--data-dir", member.data_dir,
            "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", "kubeha-test",
            "--cert-file", certs["server_cert"], "--key-file", certs["server_key"],
            "--client-cert-auth", "--trusted-ca-file", self.pki.ca,
            "--peer-cert-file", certs["peer_cert"], "--peer-key-file", certs["peer_key"],
            "--peer-client-cert-auth", "--peer-trusted-ca-file", self.pki.ca,
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--listen-metrics-urls", "http://%s:%d" % (HOST, free_port()),
        ]
        log = open(member.log, "ab")  # pylint: disable=consider-using-with
        try:
            member.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                              stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self.processes.append(member.process)
        return member

    def restart_with_new_peer_port(self, name: str) -> Member:
        """Give a stopped member a new peer port (its data directory stays), without starting it."""
        member = self.members[name]
        assert not member.running()
        member.peer_port = free_port()
        return member

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        member = self.members[name]
        if member.running():
            member.process.send_signal(sig)
            member.process.wait(timeout=30)

    def close(self) -> None:
        """Kill every etcd this object started, by PID."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    # observing
    def context(self, cert: str | None = "client") -> ssl.SSLContext:
        return tls_context(self.pki, cert)

    def call(self, name: str, path: str, body: dict[str, t.Any] | None = None, timeout: float = 5) -> dict[str, t.Any]:
        return post(self.members[name].client_url, path, body or {}, self.context(), timeout)

    def wait_ready(self, name: str, timeout: float = 30) -> None:
        """Wait until the member answers its status with a leader."""
        member = self.members[name]
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if not member.running():
                raise AssertionError("etcd %s exited (%s); log:\n%s" % (name, member.process.returncode, self.tail(name)))
            try:
                status = self.call(name, "/v3/maintenance/status", timeout=2)
                if status.get("leader") not in (None, "0"):
                    return
                last = status
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError("etcd %s not ready in %ss: %s\n%s" % (name, timeout, last, self.tail(name)))

    def wait_new_leader(self, dead: str, via: str, timeout: float = 30) -> str:
        """After ``dead`` stopped: wait until ``via`` follows a leader other than ``dead``; its name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                leader = self.leader_name(via)
                if leader != dead:
                    return leader
            except (OSError, urllib.error.URLError, ValueError, AssertionError):
                pass
            time.sleep(0.1)
        raise AssertionError("no leader other than %s within %ss" % (dead, timeout))

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            with open(self.members[name].log, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    def member_list(self, via: str) -> list[dict[str, t.Any]]:
        return self.call(via, "/v3/cluster/member/list")["members"]

    def leader_name(self, via: str) -> str:
        # During an election the status has no leader (proto3 JSON leaves a zero out).
        leader = self.call(via, "/v3/maintenance/status").get("leader")
        if not leader:
            raise AssertionError("%s knows no leader" % via)
        for item in self.member_list(via):
            if item["ID"] == leader:
                return item["name"]
        raise AssertionError("leader %s is not in the member list" % leader)
