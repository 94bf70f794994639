# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What exists before anybody creates anything: regions, zones, machine and disk types, images, the default network."""

from __future__ import annotations

import hashlib
import ipaddress
import typing as t

# Regions with their zones and the range of their subnet in an auto-mode VPC network
# (the ranges GCE documents for the default network).
REGIONS: dict[str, tuple[list[str], str]] = {
    "us-central1": (["a", "b", "c", "f"], "10.128.0.0/20"),
    "europe-west1": (["b", "c", "d"], "10.132.0.0/20"),
    "us-west1": (["a", "b", "c"], "10.138.0.0/20"),
    "asia-east1": (["a", "b", "c"], "10.140.0.0/20"),
    "us-east1": (["b", "c", "d"], "10.142.0.0/20"),
    "europe-west4": (["a", "b", "c"], "10.164.0.0/20"),
}

MACHINE_TYPES: dict[str, tuple[int, int]] = {  # name -> (vCPUs, memory MB)
    "e2-small": (2, 2048), "e2-medium": (2, 4096), "e2-standard-2": (2, 8192), "e2-standard-4": (4, 16384),
    "e2-standard-8": (8, 32768), "n1-standard-1": (1, 3840), "n1-standard-2": (2, 7680),
    "n1-standard-4": (4, 15360), "n2-standard-2": (2, 8192), "n2-standard-4": (4, 16384),
}

DISK_TYPES = ("pd-standard", "pd-balanced", "pd-ssd")

# Public images: project -> family -> image name.
IMAGES: dict[str, dict[str, str]] = {
    "debian-cloud": {"debian-12": "debian-12-bookworm-v20251111", "debian-11": "debian-11-bullseye-v20251111"},
}

# External addresses handed out by the lab (a documentation range: it exists only inside the lab).
EXTERNAL_RANGE = "203.0.113.0/24"
# Where GCE's health checkers and load balancers send from.
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")


def zones() -> t.Iterator[tuple[str, str]]:
    """(zone, region) for every zone."""
    for region, (letters, _cidr) in REGIONS.items():
        for letter in letters:
            yield "%s-%s" % (region, letter), region


def region_of_zone(zone: str) -> str | None:
    for name, region in zones():
        if name == zone:
            return region
    return None


def subnet_range(region: str) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(REGIONS[region][1])


def gateway(region: str) -> str:
    return str(subnet_range(region).network_address + 1)


def stable_id(name: str) -> str:
    """A numeric id that is the same on every run, for catalog resources."""
    return str(int(hashlib.sha256(name.encode()).hexdigest()[:15], 16))
