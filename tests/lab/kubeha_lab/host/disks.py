# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Disks: sparse files (data disks) and overlay layers over the image (boot disks).

A data disk ``NAME`` is the sparse file ``disks/NAME.img``; a machine sees it
as a loop device bound to ``/dev/disk/by-id/google-DEVICE_NAME``. A boot disk
``NAME`` is the directory ``disks/NAME.boot`` with the overlay's ``upper`` and
``work`` directories and ``lower`` (the image rootfs it was created from); its
own machine-id and SSH host keys are written into ``upper`` when it is created.
Both keep their data until ``delete_disk``.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from .config import LabConfig, check_disk_name
from .image import mounts_below, remove_tree
from .run import HostError, mount_table, run, write_file

GIB = 1024 ** 3


def data_disk_path(config: LabConfig, name: str) -> Path:
    """File of data disk name."""
    return config.disks_dir / f"{check_disk_name(name)}.img"


def boot_disk_path(config: LabConfig, name: str) -> Path:
    """Directory of boot disk name."""
    return config.disks_dir / f"{check_disk_name(name)}.boot"


def create_disk(config: LabConfig, name: str, size_gb: int) -> Path:
    """Create an empty (sparse) data disk of size_gb GiB; error if it exists."""
    if size_gb <= 0:
        raise ValueError(f"disk {name}: size must be positive, not {size_gb}")
    path = data_disk_path(config, name)
    if path.exists() or boot_disk_path(config, name).exists():
        raise HostError(f"disk {name} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as handle:
        handle.truncate(size_gb * GIB)
    return path


def resize_disk(config: LabConfig, name: str, size_gb: int) -> Path:
    """Grow data disk name to size_gb GiB (never shrinks)."""
    path = data_disk_path(config, name)
    if not path.exists():
        raise HostError(f"disk {name} does not exist")
    if size_gb * GIB < path.stat().st_size:
        raise HostError(f"disk {name}: cannot shrink to {size_gb} GiB")
    with open(path, "r+b") as handle:
        handle.truncate(size_gb * GIB)
    for device in loop_devices_of(path):
        run(["losetup", "--set-capacity", device], check=False)
    return path


def create_boot_disk(config: LabConfig, name: str, image_rootfs: Path) -> Path:
    """Create boot disk name over image_rootfs, with its own machine-id and SSH host keys."""
    path = boot_disk_path(config, name)
    if path.exists() or data_disk_path(config, name).exists():
        raise HostError(f"disk {name} already exists")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    upper = tmp / "upper"
    (upper / "etc/ssh").mkdir(parents=True)
    (tmp / "work").mkdir()
    (tmp / "lower").write_text(str(image_rootfs) + "\n", encoding="utf-8")
    write_file(upper / "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    run(["ssh-keygen", "-A", "-f", str(upper)])
    os.rename(tmp, path)
    return path


def boot_disk_layers(path: Path) -> tuple[Path, Path, Path]:
    """(lower, upper, work) of a boot disk directory."""
    lower = Path((path / "lower").read_text(encoding="utf-8").strip())
    if not lower.is_dir():
        raise HostError(f"boot disk {path}: its image {lower} is gone")
    return lower, path / "upper", path / "work"


def machine_id(path: Path) -> str:
    """The machine-id written into a boot disk."""
    return (path / "upper/etc/machine-id").read_text(encoding="utf-8").strip()


def delete_disk(config: LabConfig, name: str) -> None:
    """Delete data or boot disk name; error while a machine uses it."""
    data, boot = data_disk_path(config, name), boot_disk_path(config, name)
    if data.exists():
        if loop_devices_of(data):
            raise HostError(f"disk {name} is attached to a running machine")
        data.unlink()
    elif boot.exists():
        if overlay_users(boot):
            raise HostError(f"disk {name} is the boot disk of a running machine")
        remove_tree(boot)
    else:
        raise HostError(f"disk {name} does not exist")


def overlay_users(boot: Path) -> list[str]:
    """Mount points of overlays that use boot disk boot as their upper layer."""
    upper = f"upperdir={(boot / 'upper').resolve()}"
    return [fields[4] for fields in mount_table() if "overlay" in fields and any(upper in part.split(",") for part in fields)]


def mount_overlay(boot: Path, target: Path) -> None:
    """Mount boot disk boot at target."""
    lower, upper, work = boot_disk_layers(boot)
    if overlay_users(boot):
        raise HostError(f"boot disk {boot.name} is already in use by a running machine")
    target.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper.resolve()},workdir={work.resolve()}"
    run(["mount", "-t", "overlay", "overlay", "-o", options, str(target)])


def unmount(target: Path) -> None:
    """Unmount everything at or below target (no error when nothing is mounted)."""
    for mount_point in mounts_below(target):
        if run(["umount", mount_point], check=False).returncode != 0:
            run(["umount", "-l", mount_point], check=False)


def attach_loop(path: Path) -> str:
    """Attach a data disk file to a free loop device; return the device."""
    if loop_devices_of(path):
        raise HostError(f"disk {path.stem} is already attached to a machine")
    return run(["losetup", "--find", "--show", str(path)]).stdout.strip()


def detach_loop(device: str, backing: Path | None = None) -> None:
    """Detach a loop device (no error when it is already gone); only if backed by backing, when given."""
    if backing is not None and device not in loop_devices_of(backing):
        return
    run(["losetup", "--detach", device], check=False)


def loop_devices_of(path: Path) -> list[str]:
    """Loop devices backed by file path."""
    result = run(["losetup", "--associated", str(path), "--noheadings", "--output", "NAME"], check=False)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def lab_loop_devices(config: LabConfig) -> list[str]:
    """Loop devices backed by files in the lab's disk directory."""
    result = run(["losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"], check=False)
    prefix = str(config.disks_dir.resolve()) + "/"
    found = []
    for line in result.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].startswith(prefix):
            found.append(parts[0])
    return found
