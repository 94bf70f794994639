# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real machines for simulated Compute Engine instances: the lab's host layer.

``Host`` is the entry point; ``NetworkState`` (with ``Instance`` and
``ForwardingRule``) describes what the lab network enforces.
"""
from __future__ import annotations

from .config import EXTERNAL_RANGE, HEALTH_CHECK_IPS, HEALTH_CHECK_RANGES, INTERNET_IP, METADATA_IP, LabConfig
from .host import Host
from .nft import ForwardingRule, Instance, NetworkState, render
from .run import HostError

__all__ = [
    "EXTERNAL_RANGE", "HEALTH_CHECK_IPS", "HEALTH_CHECK_RANGES", "INTERNET_IP", "METADATA_IP",
    "ForwardingRule", "Host", "HostError", "Instance", "LabConfig", "NetworkState", "render",
]
