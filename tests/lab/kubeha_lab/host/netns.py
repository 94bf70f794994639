# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Network namespaces and the routed lab network (no bridge, like a VPC).

The lab namespace is the VPC router and "the internet": its loopback holds
169.254.169.254 (metadata server), 192.0.2.1 (source of the controller's
connections), 35.191.0.1 and 130.211.0.1 (health checkers) and every
subnet's gateway address (.1), so it answers ARP for the gateway on every
machine link. The external range is routed to loopback with source 192.0.2.1:
nftables rewrites connections to NAT and load-balancer addresses before they
get there. There is no default route: nothing leaves the lab.

Each machine namespace holds one end of a veth pair as ``eth0`` with
``INTERNAL_IP/32``, an on-link route to the gateway and a default route via it;
the other end sits in the lab namespace without an address, with a /32 route to
the machine.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

from .config import EXTERNAL_RANGE, HEALTH_CHECK_IPS, INTERNET_IP, METADATA_IP
from .run import host_path, run

NETNS_DIR = Path("/run/netns")


def list_namespaces() -> list[str]:
    """Names of the named network namespaces."""
    result = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def exists(ns: str) -> bool:
    """True when the named namespace exists."""
    return host_path(NETNS_DIR / ns).exists()


def create(ns: str) -> None:
    """Create ns (unless it exists) with lo up and IPv6 off (nothing in the lab uses it)."""
    if not exists(ns):
        run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1",
                "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"})


def delete(ns: str) -> None:
    """Kill what runs in ns and delete it (no error when it does not exist)."""
    if exists(ns):
        kill_pids(ns)
        run(["ip", "netns", "delete", ns], check=False)


def sysctl(ns: str, values: dict[str, str]) -> None:
    """Set sysctls inside ns."""
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", *[f"{k}={v}" for k, v in values.items()]])


def _inode(ns: str) -> int | None:
    """Inode of the namespace (identifies it in /proc/PID/ns/net)."""
    try:
        return os.stat(host_path(NETNS_DIR / ns)).st_ino
    except FileNotFoundError:
        return None


def pids(ns: str) -> list[int]:
    """PIDs of the processes in network namespace ns."""
    inode = _inode(ns)
    if inode is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            link = os.readlink(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if link == f"net:[{inode}]":
            found.append(int(entry))
    return found


def kill_pids(ns: str) -> list[int]:
    """SIGKILL every process in ns; return their PIDs."""
    victims = [pid for pid in pids(ns) if pid != os.getpid()]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


def setup_lab(ns: str) -> None:
    """The lab namespace: router with the lab's own addresses on lo, the external range routed to lo."""
    create(ns)
    sysctl(ns, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.forwarding": "1"})
    for address in (METADATA_IP, INTERNET_IP, *HEALTH_CHECK_IPS):
        add_local_address(ns, address)
    run(["ip", "-n", ns, "route", "replace", EXTERNAL_RANGE, "dev", "lo", "src", INTERNET_IP])


def add_local_address(ns: str, address: str) -> None:
    """Put address/32 on the lab namespace's loopback (idempotent)."""
    run(["ip", "-n", ns, "addr", "replace", f"{address}/32", "dev", "lo"])


def link_exists(ns: str, link: str) -> bool:
    """True when interface link exists in ns."""
    return run(["ip", "-n", ns, "link", "show", "dev", link], check=False).returncode == 0


def connect_machine(lab_ns: str, ns: str, veth: str, address: str, gateway: str) -> None:
    """Create the machine namespace and its link to the lab: eth0 with address/32, default via gateway."""
    create(ns)
    if link_exists(lab_ns, veth):
        run(["ip", "-n", lab_ns, "link", "delete", veth])
    if link_exists(ns, "eth0"):
        run(["ip", "-n", ns, "link", "delete", "eth0"])
    add_local_address(lab_ns, gateway)
    run(["ip", "-n", lab_ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run(["ip", "-n", lab_ns, "link", "set", veth, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "route", "add", f"{gateway}/32", "dev", "eth0", "scope", "link"])
    run(["ip", "-n", ns, "route", "add", "default", "via", gateway, "dev", "eth0", "onlink"])
    run(["ip", "-n", lab_ns, "route", "replace", f"{address}/32", "dev", veth, "src", INTERNET_IP])


def disconnect_machine(lab_ns: str, ns: str, veth: str) -> None:
    """Remove the machine's link (its route goes with it) and its namespace."""
    if exists(lab_ns) and link_exists(lab_ns, veth):
        run(["ip", "-n", lab_ns, "link", "delete", veth], check=False)
    delete(ns)
