# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What stands behind instances and disks.

The simulator tells its backend what happened to instances, disks and the
network; the machine backend turns that into booted machines, loop devices and
nftables rules. The null backend keeps no machines: instances only exist in the
API, which is what the API's own tests need.
"""

from __future__ import annotations

import typing as t


class Backend:
    """No machines: every RUNNING instance that was not crashed counts as alive."""

    def __init__(self) -> None:
        self.dead: set[str] = set()
        self.cut: set[str] = set()
        self.network: dict[str, t.Any] = {}

    def disk_created(self, disk: t.Mapping[str, t.Any]) -> None:
        """A disk was created (an image disk if ``disk['sourceImage']`` is set)."""

    def disk_deleted(self, disk: t.Mapping[str, t.Any]) -> None:
        """A disk was deleted: its data is gone."""

    def instance_started(self, instance: t.Mapping[str, t.Any], disks: t.Mapping[str, t.Mapping[str, t.Any]]) -> None:
        """Boot the machine of ``instance`` with ``disks`` (deviceName -> disk); return when it runs."""
        self.dead.discard(instance["selfLink"])

    def start(self, view: t.Callable[[], dict[str, t.Any]]) -> None:
        """The simulator is serving; ``view()`` returns the network as :meth:`network_changed` gets it."""

    def reconcile(self, instances: list[tuple[dict[str, t.Any], dict[str, dict[str, t.Any]]]]) -> None:
        """After a restart of the lab or an outage of a zone: (instance, disks) of the instances concerned, to
        bring machines in line with the API (a RUNNING instance runs again)."""
        for instance, _disks in instances:
            if instance.get("status") == "RUNNING":
                self.dead.discard(instance["selfLink"])

    def disk_attached(self, instance: t.Mapping[str, t.Any], device: str, disk: t.Mapping[str, t.Any]) -> None:
        """A disk was attached to an instance as ``device``."""

    def disk_detached(self, instance: t.Mapping[str, t.Any], device: str) -> None:
        """The disk on ``device`` was detached."""

    def instance_deleted(self, instance: t.Mapping[str, t.Any]) -> None:
        """The instance is gone: forget its machine (its disks are told apart)."""

    def instance_stopped(self, instance: t.Mapping[str, t.Any]) -> None:
        """Power the machine off (stop, delete, the first half of reset)."""
        self.dead.add(instance["selfLink"])

    def crash(self, instance: t.Mapping[str, t.Any]) -> None:
        """Kill the machine without telling the API."""
        self.dead.add(instance["selfLink"])

    def set_cut(self, instance: t.Mapping[str, t.Any], cut: bool) -> None:
        (self.cut.add if cut else self.cut.discard)(instance["selfLink"])

    def network_changed(self, network: dict[str, t.Any]) -> None:
        """The instances' addresses, firewall rules and forwarding rules as they are now."""
        self.network = network

    def healthy(self, instance: t.Mapping[str, t.Any], check: t.Mapping[str, t.Any]) -> bool:
        """Does ``instance`` pass health check ``check`` (a health check resource, or {} for none)?"""
        link = instance["selfLink"]
        return instance.get("status") == "RUNNING" and link not in self.dead and link not in self.cut

    def close(self) -> None:
        """Stop what the backend started."""
