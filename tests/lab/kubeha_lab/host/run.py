# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running host commands with errors that say what failed and why."""
from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class HostError(RuntimeError):
    """A host operation failed; the message says which and why."""


# Processes known to live in the host's mount namespace: (pid, start time).
_ANCHORS: list[tuple[int, int]] = []


def process_start_time(pid: int) -> int | None:
    """Start time of a live (non-zombie) process in clock ticks, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def register_anchor(pid: int, start: int) -> None:
    """Remember a process that lives in the host's mount namespace (see host_argv)."""
    if (pid, start) not in _ANCHORS:
        _ANCHORS.append((pid, start))


def _host_mount_ns_pid() -> int | None:
    """A process in the host's mount namespace whose namespace this process may enter, if any."""
    for pid, start in _ANCHORS:
        if process_start_time(pid) == start:
            return pid
    try:
        os.readlink("/proc/1/ns/mnt")
        return 1
    except OSError:
        return None


def foreign_mount_ns() -> int | None:
    """PID of a process in the host's mount namespace when this process is elsewhere (under `ip netns exec`), else None."""
    pid = _host_mount_ns_pid()
    if pid is None:
        return None
    try:
        return pid if os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{pid}/ns/mnt") else None
    except OSError:
        return None


def host_argv(argv: Sequence[str]) -> list[str]:
    """argv run in the host's mount namespace.

    Mounts and named network namespaces made from a private mount namespace
    (as `ip netns exec` gives its commands) would be invisible to everyone
    else and vanish with it, and nspawn finds no cgroup hierarchy there; so
    a process that runs elsewhere makes them in the host's, entered through
    PID 1 or through the anchor process that Host.up() leaves behind.
    """
    pid = foreign_mount_ns()
    if pid is not None:
        return ["nsenter", f"--mount=/proc/{pid}/ns/mnt", "--", *argv]
    return list(argv)


def host_path(path: Path) -> Path:
    """path as seen in the host's mount namespace (for stat, reads and cgroup files)."""
    pid = foreign_mount_ns()
    if pid is not None:
        return Path(f"/proc/{pid}/root") / path.relative_to("/")
    return path


def _mountinfo() -> str:
    """The host's mountinfo file."""
    pid = foreign_mount_ns()
    return f"/proc/{pid}/mountinfo" if pid is not None else "/proc/self/mountinfo"


def mount_points() -> list[str]:
    """Mount points of the host's mount namespace, in mount order."""
    with open(_mountinfo(), encoding="utf-8") as handle:
        return [line.split()[4].replace("\\040", " ") for line in handle]


def mount_table() -> list[list[str]]:
    """Fields of each line of the host's mountinfo."""
    with open(_mountinfo(), encoding="utf-8") as handle:
        return [line.split() for line in handle]


def run(argv: Sequence[str], *, check: bool = True, input_text: str | None = None,
        timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run argv in the host's mount namespace, capture its output; HostError with stderr when it fails and check is set."""
    try:
        result = subprocess.run(
            host_argv(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise HostError(f"{argv[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"{' '.join(argv)}: timed out after {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise HostError(f"{' '.join(argv)} failed (exit {result.returncode}): {detail}")
    return result


def in_netns(ns: str, argv: Sequence[str]) -> list[str]:
    """argv run inside network namespace ns."""
    return ["ip", "netns", "exec", ns, *argv]


def nft_apply(ns: str, ruleset: str) -> None:
    """Load ruleset with nft -f inside namespace ns (one atomic transaction)."""
    run(in_netns(ns, ["nft", "-f", "-"]), input_text=ruleset)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on path (between processes and threads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll predicate() until it is true or timeout seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write text to path atomically with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a text file ('' when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
