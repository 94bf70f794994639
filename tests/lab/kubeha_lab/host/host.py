# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host layer's facade: one object for the lab network, disks and machines."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import disks, image, machines, netns
from .config import LabConfig
from .nft import TABLE, NetworkState, render
from .run import (HostError, file_lock, foreign_mount_ns, host_argv, nft_apply, process_start_time, register_anchor, run,
                  wait_until, write_file)


class Host:
    """Real machines and the lab network for simulated Compute Engine instances.

    Every method is safe to call from several threads and processes; each
    takes the state directory's lock while it changes kernel objects.
    """

    def __init__(self, config: LabConfig | None = None) -> None:
        self.config = config or LabConfig.from_env()
        self._anchor()

    # -- the lab ------------------------------------------------------------

    @property
    def lab_ns(self) -> str:
        """Name of the lab network namespace (run the simulator and ansible in it)."""
        return self.config.lab_ns

    def lab_argv(self, argv: Sequence[str]) -> list[str]:
        """argv run inside the lab namespace."""
        return ["ip", "netns", "exec", self.lab_ns, *argv]

    def is_up(self) -> bool:
        """True when the lab namespace exists."""
        return netns.exists(self.lab_ns)

    def up(self) -> None:
        """Create the lab namespace (router, metadata/internet/health-check addresses) and apply the network state."""
        for directory in (self.config.disks_dir, self.config.machines_dir, self.config.mnt_dir):
            directory.mkdir(parents=True, exist_ok=True)
        with file_lock(self.config.lock_file):
            self._ensure_anchor()
            machines.ensure_shared_mnt(self.config)
            netns.setup_lab(self.lab_ns)
            self._apply_locked()
            for name in machines.list_machines(self.config):
                record = machines.load(self.config, name)
                if record and record.state in machines.LIVE_STATES and not machines.is_alive(record):
                    machines.release(self.config, record, state="terminated")

    def down(self, timeout: float = 15.0) -> None:
        """Stop every machine, then remove every mount, loop device and namespace of the lab.

        Works from the state directory and the namespace names alone, so it
        also cleans up after a crash. Disks, records and the image are kept.
        """
        with file_lock(self.config.lock_file):
            records = [r for r in (machines.load(self.config, n) for n in machines.list_machines(self.config)) if r]
            pids = [r.pid for r in records if machines.is_alive(r)]
            self._stop_all(records, timeout)
            # A stopped nspawn stays a zombie until init reaps it (it was detached at boot): return only once it is
            # gone, so that nothing of the lab is left when down returns.
            wait_until(lambda: not any(os.path.exists("/proc/%d" % pid) for pid in pids), 10.0, 0.05)
            for record in records:
                machines.release(self.config, record, state="stopped" if record.state in machines.LIVE_STATES else None)
            for name in netns.list_namespaces():
                if name.startswith(self.config.machine_ns_prefix):
                    netns.delete(name)
            machines.remove_cgroups(machines.lab_cgroups(self.config))
            disks.unmount(self.config.mnt_dir)
            for device in disks.lab_loop_devices(self.config):
                disks.detach_loop(device)
            if netns.exists(self.lab_ns):
                run(netns_nft(self.lab_ns, ["delete", "table", "ip", TABLE]), check=False)
                run(["ip", "netns", "delete", self.lab_ns], check=False)
            self._drop_anchor()
        for leftover in self.config.mnt_dir.glob("*") if self.config.mnt_dir.is_dir() else []:
            if leftover.is_dir() and not image.mounts_below(leftover):
                leftover.rmdir()

    @property
    def _anchor_file(self) -> Path:
        return self.config.state_dir / "anchor.json"

    def _anchor(self) -> tuple[int, int] | None:
        """(pid, start time) of the live anchor process (registered for host_argv), None without one."""
        try:
            data = json.loads(self._anchor_file.read_text(encoding="utf-8"))
            pid, start = int(data["pid"]), int(data["start"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if process_start_time(pid) != start:
            return None
        register_anchor(pid, start)
        return pid, start

    def _ensure_anchor(self) -> None:
        """Leave a process in the host's mount namespace, so callers under `ip netns exec` can reach it."""
        if self._anchor() is not None:
            return
        if foreign_mount_ns() is None and not machines.cgroup_roots():
            raise HostError("no cgroup hierarchy is visible here: call Host.up() from the host's namespaces, "
                            "not from inside the lab namespace (ip netns exec)")
        with subprocess.Popen(host_argv(["sh", "-c", "sleep infinity </dev/null >/dev/null 2>&1 & echo $!"]),
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True, text=True) as shell:
            output = shell.communicate(timeout=30)[0]
        pid = int(output.strip())
        start = process_start_time(pid)
        if start is None:
            raise HostError("the lab's anchor process did not start")
        write_file(self._anchor_file, json.dumps({"pid": pid, "start": start}) + "\n")
        register_anchor(pid, start)

    def _drop_anchor(self) -> None:
        """Stop the anchor process (last thing down() does)."""
        anchor = self._anchor()
        if anchor is not None:
            try:
                os.kill(anchor[0], signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._anchor_file.unlink(missing_ok=True)

    @staticmethod
    def _stop_all(records: Sequence[machines.MachineRecord], timeout: float) -> None:
        """Shut running machines down together: SIGTERM, then SIGKILL after timeout."""
        running = [r for r in records if machines.is_alive(r)]
        for record in running:
            machines.signal_machine(record, signal.SIGTERM)
        if not wait_until(lambda: not any(machines.is_alive(r) for r in running), timeout, 0.2):
            for record in running:
                machines.signal_machine(record, signal.SIGKILL)
            wait_until(lambda: not any(machines.is_alive(r) for r in running), 10.0, 0.1)

    # -- image and disks --------------------------------------------------

    def ensure_image(self) -> Path:
        """Build the guest image unless it exists; return its rootfs."""
        return image.ensure_image(self.config)

    def prune_images(self) -> None:
        """Remove cached images that are neither current nor under a boot disk of this lab (other labs may lose theirs)."""
        keep = set()
        for boot in self.config.disks_dir.glob("*.boot"):
            try:
                keep.add(disks.boot_disk_layers(boot)[0])
            except (OSError, HostError):
                continue
        with file_lock(self.config.image_dir / ".lock"):
            image.prune_images(self.config, keep)

    def create_disk(self, name: str, size_gb: int) -> Path:
        """Create an empty data disk (sparse file) of size_gb GiB; return its path."""
        return disks.create_disk(self.config, name, size_gb)

    def resize_disk(self, name: str, size_gb: int) -> Path:
        """Grow a data disk (also while attached)."""
        return disks.resize_disk(self.config, name, size_gb)

    def create_boot_disk(self, name: str, image_rootfs: Path | None = None) -> Path:
        """Create a boot disk over the image (built if needed); return its directory."""
        return disks.create_boot_disk(self.config, name, image_rootfs or self.ensure_image())

    def disk_path(self, name: str) -> Path | None:
        """Path of data or boot disk name, None when it does not exist."""
        for path in (disks.data_disk_path(self.config, name), disks.boot_disk_path(self.config, name)):
            if path.exists():
                return path
        return None

    def delete_disk(self, name: str) -> None:
        """Delete a data or boot disk; HostError while a running machine uses it."""
        with file_lock(self.config.lock_file):
            disks.delete_disk(self.config, name)

    # -- machines -----------------------------------------------------------

    def start_machine(self, name: str, hostname: str, internal_ip: str, gateway: str, boot_disk: Path,
                      data_disks: Mapping[str, Path] | None = None, timeout: float = machines.BOOT_TIMEOUT) -> None:
        """Boot machine name; return when its sshd listens on internal_ip:22 (HostError with console tail otherwise)."""
        if not self.is_up():
            raise HostError(f"the lab is not up (no namespace {self.lab_ns}); call Host.up() first")
        machines.start_machine(self.config, name, hostname, internal_ip, gateway, Path(boot_disk),
                               {k: Path(v) for k, v in (data_disks or {}).items()}, timeout)

    def reset_machine(self, name: str, timeout: float = machines.BOOT_TIMEOUT) -> None:
        """Hard reset: kill machine name and boot it again with what it ran with (instances.reset)."""
        record = machines.load(self.config, name)
        if record is None:
            raise HostError(f"machine {name} does not exist")
        machines.crash_machine(self.config, name)
        self.start_machine(name, record.hostname, record.internal_ip, record.gateway, Path(record.boot_disk),
                           {k: Path(v) for k, v in record.data_disks.items()}, timeout)

    def attach_disk(self, name: str, device_name: str, disk: Path) -> None:
        """Attach a data disk to a running machine (it appears as /dev/disk/by-id/google-DEVICE_NAME)."""
        machines.attach_disk(self.config, name, device_name, Path(disk))

    def detach_disk(self, name: str, device_name: str) -> None:
        """Detach a data disk from a running machine."""
        machines.detach_disk(self.config, name, device_name)

    def stop_machine(self, name: str, timeout: float = machines.STOP_TIMEOUT) -> None:
        """Shut machine name down cleanly (SIGKILL after timeout); disks keep their data."""
        machines.stop_machine(self.config, name, timeout)

    def crash_machine(self, name: str) -> None:
        """Kill machine name at once, as a host failure would."""
        machines.crash_machine(self.config, name)

    def machine_status(self, name: str) -> str:
        """starting, running, stopped, crashed, terminated (went away by itself) or absent."""
        return machines.machine_status(self.config, name)

    def delete_machine(self, name: str, delete_disks: bool = False) -> None:
        """Stop machine name and forget it; its disks too when delete_disks."""
        machines.delete_machine(self.config, name, delete_disks)

    def machines(self) -> list[str]:
        """Names of the known machines (any state)."""
        return machines.list_machines(self.config)

    def console_log(self, name: str) -> Path:
        """The machine's console log file."""
        return machines.console_log(self.config, name)

    def machine_exec_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """argv run as root inside running machine name (for checks and fault injection)."""
        return machines.exec_argv(self.config, name, list(argv))

    def machine_exec(self, name: str, argv: Sequence[str], timeout: float = 60.0,
                     input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside machine name; the completed process (not checked)."""
        return run(self.machine_exec_argv(name, argv), check=False, timeout=timeout, input_text=input_text)

    # -- network ------------------------------------------------------------

    def apply_network(self, state: NetworkState | Mapping[str, Any]) -> None:
        """Make the lab network enforce state (instances, firewalls, forwarding rules); atomic."""
        desired = state if isinstance(state, NetworkState) else NetworkState.from_dict(state)
        with file_lock(self.config.lock_file):
            write_file(self._network_file, json.dumps(desired.to_dict(), indent=1) + "\n")
            self._apply_locked()

    def network_state(self) -> NetworkState:
        """The last state given to apply_network (empty before)."""
        if not self._network_file.exists():
            return NetworkState()
        return NetworkState.from_dict(json.loads(self._network_file.read_text(encoding="utf-8")))

    def cut(self, name: str) -> None:
        """Cut instance name off the network (nothing in or out but the metadata server)."""
        self._set_cut(name, True)

    def restore(self, name: str) -> None:
        """Undo cut(name)."""
        self._set_cut(name, False)

    def cuts(self) -> list[str]:
        """Names of the instances cut by cut()."""
        if not self._cuts_file.exists():
            return []
        return sorted(json.loads(self._cuts_file.read_text(encoding="utf-8")))

    def ruleset(self) -> str:
        """The lab's nftables table as the kernel has it (with counters)."""
        return run(netns_nft(self.lab_ns, ["list", "table", "ip", TABLE])).stdout

    def _set_cut(self, name: str, cut: bool) -> None:
        """Add or remove name from the cut instances and re-apply."""
        with file_lock(self.config.lock_file):
            names = set(self.cuts())
            if cut:
                names.add(name)
            else:
                names.discard(name)
            write_file(self._cuts_file, json.dumps(sorted(names)) + "\n")
            self._apply_locked()

    def _apply_locked(self) -> None:
        """Load the rendered ruleset into the lab namespace (when it exists)."""
        if netns.exists(self.lab_ns):
            nft_apply(self.lab_ns, render(self.network_state().with_cuts(self.cuts())))

    @property
    def _network_file(self) -> Path:
        return self.config.state_dir / "network.json"

    @property
    def _cuts_file(self) -> Path:
        return self.config.state_dir / "cuts.json"


def netns_nft(ns: str, argv: Sequence[str]) -> list[str]:
    """An nft command inside ns."""
    return ["ip", "netns", "exec", ns, "nft", *argv]
