# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest image: a debootstrapped Debian with sshd and the guest agent.

``ensure_image(config)`` returns ``$KUBEHA_CACHE/lab-image/HASH/rootfs``. HASH
covers everything that goes into the image (suite, packages, the files written
by ``configure`` and the guest agent), so a change builds a new image and old
boot disks keep the image they were created from. The debootstrap result is
kept as ``base-HASH/rootfs`` so a change of the guest files only copies it
(seconds) instead of bootstrapping again (a minute or two). Both are built in
a temporary directory and renamed into place only when complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .config import LabConfig
from .run import HostError, file_lock, mount_points, run, write_file

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2", "sudo", "e2fsprogs",
    "ca-certificates", "curl", "util-linux", "procps",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
GUEST_DIR = Path(__file__).resolve().parent / "guest"
COMPLETE = "complete"
# The agent is kept as a module in the source tree and becomes a script in the image.
SHEBANG = "#!/usr/bin/python3\n"

# Files written into the image, by path inside it: (mode, content).
ETC_FILES: dict[str, tuple[int, str]] = {
    "etc/hosts": (0o644, "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"),
    "etc/resolv.conf": (0o644, "# No resolver: the lab has no DNS; names live in /etc/hosts.\n"),
    "etc/machine-id": (0o444, ""),
    "etc/fstab": (0o644, "# Data disks appear as /dev/disk/by-id/google-DEVICE_NAME.\n"),
    "etc/ssh/sshd_config.d/kubeha-lab.conf": (0o644, (
        "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UseDNS no\nMaxStartups 100:30:200\n"
    )),
    "etc/systemd/journald.conf.d/kubeha-lab.conf": (0o644, "[Journal]\nSystemMaxUse=32M\nRuntimeMaxUse=32M\n"),
}
# (path in the image, file in guest/, mode)
GUEST_FILES = (
    ("usr/bin/kubeha-guest-agent", "kubeha_guest_agent.py", 0o755),
    ("etc/systemd/system/kubeha-guest-agent.service", "kubeha-guest-agent.service", 0o644),
    ("etc/systemd/system/kubeha-startup-script.service", "kubeha-startup-script.service", 0o644),
    ("etc/systemd/system/kubeha-fstab-devices.service", "kubeha-fstab-devices.service", 0o644),
)
ENABLE_UNITS = ("kubeha-guest-agent.service", "kubeha-startup-script.service", "kubeha-fstab-devices.service", "ssh.service")
# Units that make no sense in a lab container.
MASK_UNITS = (
    "getty.target", "console-getty.service", "systemd-networkd.service", "systemd-networkd-wait-online.service",
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
    "systemd-journald-audit.socket", "systemd-timesyncd.service", "man-db.timer",
)
REMOVE_FILES = ("etc/hostname", "var/lib/dbus/machine-id", "etc/ssh/ssh_host_*")


def mirror_from_sources(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror URI of this host's apt sources (one-line or deb822), or the default."""
    entries = _source_entries(apt_dir)
    for types, uris, suites in entries:
        if "deb" in types and SUITE in suites and uris:
            return uris[0]
    for types, uris, suites in entries:
        if "deb" in types and uris and any(s.startswith(SUITE) for s in suites):
            return uris[0]
    return DEFAULT_MIRROR


def _source_entries(apt_dir: Path) -> list[tuple[list[str], list[str], list[str]]]:
    """(types, uris, suites) of each source entry, in apt's reading order."""
    entries: list[tuple[list[str], list[str], list[str]]] = []
    main = apt_dir / "sources.list"
    if main.is_file():
        entries.extend(_one_line_entries(main.read_text(encoding="utf-8", errors="replace")))
    parts = apt_dir / "sources.list.d"
    for path in sorted(parts.glob("*")) if parts.is_dir() else []:
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.name.endswith(".list"):
            entries.extend(_one_line_entries(text))
        elif path.name.endswith(".sources"):
            entries.extend(_deb822_entries(text))
    return entries


def _one_line_entries(text: str) -> list[tuple[list[str], list[str], list[str]]]:
    """Entries of a one-line-style sources.list."""
    entries = []
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] in ("deb", "deb-src"):
            entries.append(([line[0]], [line[1]], [line[2]]))
    return entries


def _deb822_entries(text: str) -> list[tuple[list[str], list[str], list[str]]]:
    """Entries of a deb822-style .sources file (disabled stanzas skipped)."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "types" in fields and "uris" in fields:
            entries.append((fields["types"].split(), fields["uris"].split(), fields.get("suites", "").split()))
    return entries


def base_hash() -> str:
    """Identifies the debootstrap recipe."""
    recipe = {"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES)}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def image_hash() -> str:
    """Identifies the whole image: debootstrap recipe, configuration and guest files."""
    digest = hashlib.sha256(base_hash().encode())
    recipe = {"etc": ETC_FILES, "enable": ENABLE_UNITS, "mask": MASK_UNITS, "remove": REMOVE_FILES,
              "guest": list(GUEST_FILES), "pam": 1, "shebang": SHEBANG}
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for entry in GUEST_FILES:
        digest.update((GUEST_DIR / entry[1]).read_bytes())
    return digest.hexdigest()[:16]


def image_rootfs(config: LabConfig) -> Path:
    """Where the current image's root file system is (built or not)."""
    return config.image_dir / image_hash() / "rootfs"


def ensure_image(config: LabConfig, log: Path | None = None) -> Path:
    """Build the guest image unless it is there; return its rootfs (read-only by convention)."""
    target = config.image_dir / image_hash()
    if (target / COMPLETE).exists():
        return target / "rootfs"
    with file_lock(config.image_dir / ".lock"):
        if (target / COMPLETE).exists():
            return target / "rootfs"
        _remove_stale_builds(config.image_dir)
        base = _ensure_base(config, log or config.image_dir / "build.log")
        tmp = config.image_dir / f".tmp-{target.name}-{os.getpid()}"
        tmp.mkdir(parents=True)
        run(["cp", "-a", "--reflink=auto", str(base), str(tmp / "rootfs")], timeout=600)
        configure(tmp / "rootfs")
        (tmp / COMPLETE).write_text(image_hash() + "\n", encoding="utf-8")
        os.rename(tmp, target)
    return target / "rootfs"


def _ensure_base(config: LabConfig, log: Path) -> Path:
    """The pristine debootstrap tree for the current recipe, bootstrapped when missing."""
    base = config.image_dir / f"base-{base_hash()}"
    if (base / COMPLETE).exists():
        return base / "rootfs"
    tmp = config.image_dir / f".tmp-base-{base_hash()}-{os.getpid()}"
    tmp.mkdir(parents=True)
    mirror = mirror_from_sources()
    argv = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}", SUITE, str(tmp / "rootfs"), mirror]
    result = run(argv, check=False, timeout=1800)
    log.write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        _unmount_below(tmp)
        raise HostError(f"debootstrap failed (exit {result.returncode}), see {log}:\n{result.stderr[-2000:]}")
    _unmount_below(tmp)
    for leftover in (tmp / "rootfs" / "var/cache/apt/archives").glob("*.deb"):
        leftover.unlink()
    (tmp / COMPLETE).write_text(base_hash() + "\n", encoding="utf-8")
    os.rename(tmp, base)
    return base / "rootfs"


def configure(rootfs: Path) -> None:
    """Turn a debootstrapped tree into the lab's guest image."""
    for pattern in REMOVE_FILES:
        for path in rootfs.glob(pattern):
            path.unlink()
    for rel, (mode, text) in ETC_FILES.items():
        dest = rootfs / rel
        if dest.is_symlink():
            dest.unlink()
        write_file(dest, text, mode)
    for dest, src, mode in GUEST_FILES:
        text = (GUEST_DIR / src).read_text(encoding="utf-8")
        write_file(rootfs / dest, SHEBANG + text if src.endswith(".py") else text, mode)
    _relax_pam_loginuid(rootfs)
    run(["systemctl", f"--root={rootfs}", "enable", *ENABLE_UNITS])
    run(["systemctl", f"--root={rootfs}", "mask", *MASK_UNITS])


def _relax_pam_loginuid(rootfs: Path) -> None:
    """Make pam_loginuid optional: containers may not be allowed to set the audit login uid."""
    for name in ("sshd", "login"):
        pam = rootfs / "etc/pam.d" / name
        if pam.exists():
            text = re.sub(r"^(session\s+)required(\s+pam_loginuid\.so)", r"\1optional\2", pam.read_text(encoding="utf-8"),
                          flags=re.MULTILINE)
            pam.write_text(text, encoding="utf-8")


def _remove_stale_builds(image_dir: Path) -> None:
    """Remove temporary build trees left by interrupted builds."""
    for stale in image_dir.glob(".tmp-*"):
        _unmount_below(stale)
        remove_tree(stale)


def _unmount_below(path: Path) -> None:
    """Unmount everything mounted at or below path (debootstrap mounts /proc and /sys in its target)."""
    for mount_point in mounts_below(path):
        run(["umount", "-l", mount_point], check=False)


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below path, deepest first."""
    prefix = str(path.resolve())
    found = [m for m in mount_points() if m == prefix or m.startswith(prefix + "/")]
    return sorted(set(found), key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """rm -rf that never crosses into another file system."""
    if path.exists() or path.is_symlink():
        if mounts_below(path):
            raise HostError(f"refusing to remove {path}: something is still mounted below it")
        run(["rm", "-rf", "--one-file-system", str(path)], timeout=600)


def prune_images(config: LabConfig, keep: set[Path]) -> None:
    """Remove built images other than the current one and those in keep (rootfs paths in use)."""
    current = {config.image_dir / image_hash(), config.image_dir / f"base-{base_hash()}"}
    for candidate in config.image_dir.glob("*"):
        if candidate.name.startswith(".") or candidate in current or not candidate.is_dir():
            continue
        if candidate / "rootfs" not in keep:
            remove_tree(candidate)
