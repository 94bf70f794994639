# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: which running services started before the files they read were written.

A service reads its executable, and the files its command line names (``--flag=/path`` for a flag that names a file
it reads: a certificate, key, kubeconfig or configuration), when it starts; most do not read them again. One whose
files changed after its main process started, whose executable was replaced, or whose unit file changed without a
reload, still runs as it started (an expiring client certificate, an old binary) until it is restarted. Standard
library only: this runs on the replicas.
"""

from __future__ import annotations

import datetime
import os
import re
import time
import typing as t

Runner = t.Callable[[t.Sequence[str]], t.Tuple[int, str, str]]

#: Flags whose files the service reads again by itself when they change, so that a new one needs no restart:
#: kube-apiserver's serving certificate and client CAs (dynamic certificate content); the addon manager runs kubectl,
#: with its kubeconfig, on each pass.
RELOADED: dict[str, tuple[str, ...]] = {
    "kube-apiserver": ("tls-cert-file", "tls-private-key-file", "tls-sni-cert-key", "client-ca-file",
                       "requestheader-client-ca-file", "authentication-config", "authorization-config"),
    "kube-addon-manager": ("kubeconfig", "kubectl"),
}
#: A flag that names a file the service reads: ``...-file``, ``...certfile``/``keyfile``/``cafile``, kubeconfigs,
#: configuration files, kube-apiserver's ``kubelet-client-certificate``/``-key``.
READ_FLAG = re.compile(r"(file|kubeconfig|config|certificate|-key)$")
#: Flags that match READ_FLAG but name a file the service writes.
WRITTEN_FLAGS = frozenset(("log-file", "write-config-to"))

ARGUMENT_SPEC: dict[str, t.Any] = dict(
    units=dict(type="list", elements="str", required=True),
    reloaded=dict(type="dict"),
)

PROPERTIES = "Id,ActiveState,MainPID,ExecMainStartTimestampMonotonic,NeedDaemonReload,FragmentPath,ExecStart"


class UnitsError(Exception):
    """systemd could not be asked, or the request is malformed; the message names the services and the cause."""


def _blocks(out: str) -> list[dict[str, t.Any]]:
    """Each unit's properties; every ExecStart= line of a unit is kept (one per command)."""
    blocks = []
    for text in out.strip().split("\n\n"):
        block: dict[str, t.Any] = {"ExecStart": []}
        for line in text.splitlines():
            if "=" not in line:
                continue
            key, value = line.split("=", 1)
            if key == "ExecStart":
                block["ExecStart"].append(value)
            else:
                block[key] = value
        blocks.append(block)
    return blocks


def show(units: t.Sequence[str], run: Runner) -> dict[str, dict[str, t.Any]]:
    """What systemd says of each unit: its state, main PID, when it started (monotonic), and its command lines."""
    if not units:
        return {}
    rc, out, err = run(["systemctl", "show", "--property=" + PROPERTIES, "--"] + [u + ".service" for u in units])
    if rc != 0:
        raise UnitsError("systemctl show %s failed: %s" % (" ".join(units), (err or out).strip()))
    blocks = _blocks(out)
    by_id = {b.get("Id", "")[:-len(".service")]: b for b in blocks if b.get("Id", "").endswith(".service")}
    # systemd prints one block per unit asked for, in that order: an alias answers under its unit's Id.
    by_position = dict(zip(units, blocks)) if len(blocks) == len(units) else {}
    return {unit: by_id.get(unit) or by_position.get(unit) or {} for unit in units}


def command_lines(exec_start: t.Iterable[str]) -> list[list[str]]:
    """The argv of each command of the ExecStart lines (``{ path=… ; argv[]=… ; … }``)."""
    lines = []
    for value in exec_start:
        for part in value.split("argv[]=")[1:]:
            lines.append(part.split(" ; ", 1)[0].split())
    return lines


def files_read(argv: t.Sequence[str], reloaded: t.Collection[str]) -> list[str]:
    """The executable and each absolute path that a ``--flag=value`` naming a file it reads gives (comma-separated
    values too), except the flags whose files the service reads again by itself."""
    found = [argv[0]] if argv else []
    for arg in argv[1:]:
        if not arg.startswith("--") or "=" not in arg:
            continue
        flag, value = arg[2:].split("=", 1)
        if flag in reloaded or flag in WRITTEN_FLAGS or not READ_FLAG.search(flag):
            continue
        found.extend(v for v in value.split(",") if v.startswith("/"))
    return found


def started_at(monotonic_us: str, now: float, monotonic_now: float) -> float | None:
    """When the main process started, in seconds since the epoch; None when it never did (or not since boot)."""
    try:
        value = int(monotonic_us)
    except ValueError:
        return None
    if value <= 0:
        return None
    return now - (monotonic_now - value / 1e6)


def _mtime(path: str) -> float | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime if os.path.isfile(path) else None


def _executable(pid: str) -> str | None:
    """What the process runs: its executable's path (`` (deleted)`` when it was replaced since), or None."""
    try:
        return os.readlink("/proc/%d/exe" % int(pid)) if int(pid) > 0 else None
    except (OSError, ValueError):
        return None


def _script(path: str) -> bool:
    """Whether the file is a script (its process runs an interpreter, not the file itself)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return True


def _reloaded(value: t.Mapping[str, t.Any] | None) -> t.Mapping[str, t.Collection[str]]:
    if value is None:
        return RELOADED
    for unit, flags in value.items():
        if not isinstance(flags, (list, tuple)) or not all(isinstance(f, str) for f in flags):
            raise UnitsError("reloaded: the flags of %s must be a list of flag names, got %r" % (unit, flags))
    return value


def check(units: t.Sequence[str], reloaded: t.Mapping[str, t.Any] | None, run: Runner,
          mtime: t.Callable[[str], float | None] | None = None) -> dict[str, dict[str, t.Any]]:
    """For each unit: whether it is active, when it started, the files it read at start, and those that changed since
    (written after it started; its executable when it was replaced; its unit file when systemd was not reloaded)."""
    flags = _reloaded(reloaded)
    mtime = mtime or _mtime
    monotonic_now, now = time.monotonic(), time.time()
    shown = show(units, run)
    report = {}
    for unit in units:
        block = shown.get(unit, {})
        active = block.get("ActiveState") == "active"
        start = started_at(block.get("ExecMainStartTimestampMonotonic", ""), now, monotonic_now) if active else None
        argvs = command_lines(block.get("ExecStart") or [])
        files: list[str] = []
        for argv in argvs:
            files.extend(f for f in files_read(argv, flags.get(unit) or ()) if f not in files)
        written = {f: mtime(f) for f in files}
        newer = [f for f in files if start is not None and written[f] is not None and written[f] > start]
        if active and argvs:
            running = _executable(block.get("MainPID", "0"))
            binary = argvs[0][0]
            # Replaced in place (the process runs a deleted file), or its link now points at another one. A script's
            # process runs its interpreter, which says nothing of the script (its mtime does).
            if running is not None and binary not in newer and not _script(binary) and (
                    running.endswith(" (deleted)") or running != os.path.realpath(binary)):
                newer.insert(0, binary)
        if active and block.get("NeedDaemonReload") == "yes" and block.get("FragmentPath"):
            newer.append(block["FragmentPath"])
        report[unit] = {
            "active": active,
            # The main process, which tells a restart exactly (the start time is computed from two clocks, which a
            # second reading sees a few microseconds apart).
            "pid": int(block.get("MainPID") or 0) or None if active else None,
            "started": None if start is None else datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat(),
            "files": [f for f in files if written[f] is not None],
            "newer": newer,
        }
    return report


def stale(report: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """One sentence per unit that runs with older files than those on disk."""
    return ["service %s runs with older files than those on disk (%s)" % (
        unit, ", ".join(os.path.basename(f) for f in entry["newer"])) for unit, entry in report.items() if entry["newer"]]
