# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Paths, names and fixed addresses of the lab host.

Everything the host layer creates is found again from these names alone, so
``Host.down()`` can clean up after a crash of the process that created it:

* state directory ``$KUBEHA_LAB_STATE`` (default ``/var/lib/kubeha-lab``):
  ``disks/`` (data disk files, boot disk directories), ``machines/NAME/``
  (record, PID, console log, loop devices), ``mnt/`` (overlay mount points,
  a shared mount so copies in other mount namespaces follow unmounts);
* cache directory ``$KUBEHA_CACHE`` (default ``/var/cache/kubeha-gce``):
  ``lab-image/`` (the guest image, kept by ``down()``);
* network namespaces: the lab namespace ``$KUBEHA_LAB_NS`` (default
  ``kubeha-lab``) and one ``LABNS-XXXXXXXX`` per machine.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

DEFAULT_STATE_DIR = "/var/lib/kubeha-lab"
DEFAULT_CACHE_DIR = "/var/cache/kubeha-gce"
DEFAULT_LAB_NS = "kubeha-lab"

METADATA_IP = "169.254.169.254"
# Source address of the lab namespace itself (controller, simulator): "the internet".
INTERNET_IP = "192.0.2.1"
# Addresses the health checker binds, inside Google's health-check ranges.
HEALTH_CHECK_IPS = ("35.191.0.1", "130.211.0.1")
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
# External (NAT and load-balancer) addresses; routed only inside the lab namespace.
EXTERNAL_RANGE = "203.0.113.0/24"
# Interface in the lab namespace that holds the lab's own addresses.
LAB_IF = "lab0"

_MACHINE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_DISK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def check_machine_name(name: str) -> str:
    """Return name if it can name a machine (lowercase letters, digits, . _ -)."""
    if not _MACHINE_NAME.match(name):
        raise ValueError(f"invalid machine name {name!r}: use [a-z0-9][a-z0-9._-]*, at most 128 characters")
    return name


def check_disk_name(name: str) -> str:
    """Return name if it can name a disk (lowercase letters, digits, . _ -)."""
    if not _DISK_NAME.match(name):
        raise ValueError(f"invalid disk name {name!r}: use [a-z0-9][a-z0-9._-]*, at most 128 characters")
    return name


def short_id(name: str) -> str:
    """Eight hex digits derived from a name, for interface and namespace names."""
    return hashlib.sha256(name.encode()).hexdigest()[:8]


@dataclasses.dataclass(frozen=True)
class LabConfig:
    """Where the lab keeps its state and how its kernel objects are named."""

    state_dir: Path
    cache_dir: Path
    lab_ns: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LabConfig:
        """Read KUBEHA_LAB_STATE, KUBEHA_CACHE and KUBEHA_LAB_NS (or use the defaults)."""
        env = os.environ if environ is None else environ
        lab_ns = env.get("KUBEHA_LAB_NS") or DEFAULT_LAB_NS
        if not re.match(r"^[a-z][a-z0-9-]{0,30}$", lab_ns):
            raise ValueError(f"invalid KUBEHA_LAB_NS {lab_ns!r}: use [a-z][a-z0-9-]*, at most 31 characters")
        return cls(
            state_dir=Path(env.get("KUBEHA_LAB_STATE") or DEFAULT_STATE_DIR),
            cache_dir=Path(env.get("KUBEHA_CACHE") or DEFAULT_CACHE_DIR),
            lab_ns=lab_ns,
        )

    @property
    def disks_dir(self) -> Path:
        """Data disk files and boot disk directories."""
        return self.state_dir / "disks"

    @property
    def machines_dir(self) -> Path:
        """One directory per machine: record, PID file, console log."""
        return self.state_dir / "machines"

    @property
    def mnt_dir(self) -> Path:
        """Overlay mount points of running machines (a shared mount)."""
        return self.state_dir / "mnt"

    @property
    def lock_file(self) -> Path:
        """Serialises changes to the host's kernel objects."""
        return self.state_dir / "host.lock"

    @property
    def image_dir(self) -> Path:
        """Built guest images, kept across down()."""
        return self.cache_dir / "lab-image"

    @property
    def machine_ns_prefix(self) -> str:
        """Prefix of the machines' network namespaces."""
        return self.lab_ns + "-"

    def machine_ns(self, name: str) -> str:
        """Network namespace of machine name."""
        return self.machine_ns_prefix + short_id(name)

    @staticmethod
    def lab_veth(name: str) -> str:
        """Lab side of machine name's veth pair (at most 15 characters)."""
        return "vm" + short_id(name)
