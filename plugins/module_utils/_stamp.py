# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: what a replica was last converged to, and whether it still is.

A stamp file on the replica records, per part (``pki``, ``services``): the digest of the inputs the roles were
run with, every file under the paths those roles write (sha256, mode, owner), the services that must run, and
when its certificates must be renewed. A re-run compares the replica with it and skips the roles of a part that
still matches. Standard library only: this runs on the replicas.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils import _units

FORMAT = 1

Runner = t.Callable[[t.Sequence[str]], t.Tuple[int, str, str]]


class StampError(Exception):
    """A stamp that cannot be read or written; the message names the file and the cause."""


DEFAULT_PATH = "/etc/kubeha/converged.json"

ARGUMENT_SPEC: dict[str, t.Any] = dict(
    parts=dict(type="dict", required=True),
    path=dict(type="path", default=DEFAULT_PATH),
    renew_before_days=dict(type="int", default=30),
)

_PART_KEYS = {"inputs": str, "paths": list, "exclude": list, "units": list, "expires": (str, type(None))}


def parts_from(value: t.Mapping[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    """The parts option, checked: each part is a dict with a non-empty inputs digest and lists of paths and units."""
    parts = {}
    for name, spec in value.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("inputs"), str) or not spec["inputs"]:
            raise StampError("part %s: inputs must be a non-empty string (a digest of what it was converged with)" % name)
        for key, kind in _PART_KEYS.items():
            if key in spec and not isinstance(spec[key], kind):
                raise StampError("part %s: %s must be a %s, not %r" % (name, key, getattr(kind, "__name__", "string"), spec[key]))
        unknown = sorted(set(spec) - set(_PART_KEYS))
        if unknown:
            raise StampError("part %s: unknown keys %s (known: %s)" % (name, ", ".join(unknown), ", ".join(sorted(_PART_KEYS))))
        for key in ("paths", "exclude"):
            if any(not os.path.isabs(p) for p in spec.get(key) or []):
                raise StampError("part %s: %s must be absolute, got %s" % (name, key, spec[key]))
        parts[name] = dict(spec)
    return parts


def _entry(path: str) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    owner = "%o %d:%d" % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return "link -> %s" % os.readlink(path)
    if stat.S_ISDIR(st.st_mode):
        return "dir %s" % owner
    if not stat.S_ISREG(st.st_mode):
        return "special %s" % owner
    return "file %s sha256:%s" % (owner, file_sha256(path))


def file_sha256(path: str) -> str:
    """The sha256 of a file's content, read a MiB at a time (binaries are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_under(roots: t.Iterable[str], exclude: t.Iterable[str] = ()) -> dict[str, str]:
    """Every file, directory and link under each root (a root may be a single file, or absent), by path;
    what is under an excluded path is left out (another part covers it)."""
    skip = set(exclude)
    found: dict[str, str] = {}
    for root in roots:
        found[root] = _entry(root)
        if not found[root].startswith("dir "):
            continue
        for top, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if os.path.join(top, d) not in skip)
            for name in dirs + sorted(n for n in names if os.path.join(top, n) not in skip):
                path = os.path.join(top, name)
                found[path] = _entry(path)
    return found


def unit_states(units: t.Sequence[str], run: Runner) -> dict[str, str]:
    """``active enabled`` or what each unit is instead, as systemd says it."""
    if not units:
        return {}
    rc, out, err = run(["systemctl", "show", "--property=Id,ActiveState,UnitFileState", "--"] + [u + ".service" for u in units])
    if rc != 0:
        raise StampError("systemctl show %s failed: %s" % (" ".join(units), (err or out).strip()))
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line) for block in out.strip().split("\n\n")]
    by_id = {block.get("Id"): block for block in blocks}
    states = {}
    for unit in units:
        block = by_id.get(unit + ".service", {})
        states[unit] = "%s %s" % (block.get("ActiveState") or "unknown", block.get("UnitFileState") or "not-found")
    return states


def _part_record(spec: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    return {
        "inputs": spec["inputs"],
        "paths": list(spec.get("paths") or []),
        "units": list(spec.get("units") or []),
        "expires": spec.get("expires") or None,
        "exclude": list(spec.get("exclude") or []),
        "files": files_under(spec.get("paths") or [], spec.get("exclude") or []),
    }


def read(path: str) -> dict[str, t.Any]:
    """The stamp's parts, or {} where there is no stamp (a new replica, or one converged before stamps)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StampError("cannot read the stamp %s: %s" % (path, exc)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("parts"), dict):
        return {}
    return data["parts"]


def _parse_time(value: str) -> datetime.datetime:
    when = datetime.datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def stale(recorded: t.Mapping[str, t.Any] | None, spec: t.Mapping[str, t.Any]) -> str | None:
    """Why the stamp of one part says nothing of the part as it should be now (none, or for other inputs), if it does not."""
    if not recorded:
        return "no stamp: it was not converged by this version of the collection"
    if recorded.get("inputs") != spec["inputs"]:
        return "the inputs changed (settings, IPs, versions, or the collection itself)"
    if any(recorded.get(key) != list(spec.get(key) or []) for key in ("paths", "exclude", "units")):
        return "the files or services it covers changed"
    return None


def differences(recorded: t.Mapping[str, t.Any] | None, spec: t.Mapping[str, t.Any], run: Runner,
                renew_before_days: int, now: datetime.datetime) -> list[str]:
    """What is no longer as the stamp of one part says (empty: the part is as it was converged)."""
    why = stale(recorded, spec)
    if why or recorded is None:
        return [why or "no stamp"]
    found: list[str] = []
    then, current = recorded.get("files") or {}, files_under(spec.get("paths") or [], spec.get("exclude") or [])
    for path in sorted(set(then) | set(current)):
        if then.get(path) != current.get(path):
            was, now_is = then.get(path, "absent"), current.get(path, "absent")
            found.append("%s %s" % (path, "is missing" if now_is == "absent" else "is new" if was == "absent" else "changed"))
    states = unit_states(recorded.get("units") or [], run)
    for unit, state in states.items():
        if state != "active enabled":
            found.append("service %s is %s" % (unit, state))
    # A service that runs is not as converged while it runs with older files (a certificate written by a run that
    # stopped before it restarted the service).
    try:
        found.extend(_units.stale(_units.check([u for u, s in states.items() if s.startswith("active ")], None, run)))
    except _units.UnitsError as exc:
        raise StampError(str(exc)) from exc
    expires = recorded.get("expires")
    if expires and _parse_time(expires) - datetime.timedelta(days=renew_before_days) <= now:
        found.append("a certificate expires at %s, within %d days" % (expires, renew_before_days))
    return found


def check(path: str, parts: t.Mapping[str, t.Mapping[str, t.Any]], run: Runner, renew_before_days: int,
          now: datetime.datetime) -> dict[str, dict[str, t.Any]]:
    try:
        recorded, unreadable = read(path), None
    except StampError as exc:
        recorded, unreadable = {}, str(exc)
    result = {}
    for name, spec in parts.items():
        found = [unreadable] if unreadable else differences(recorded.get(name), spec, run, renew_before_days, now)
        # Drift: the replica changed since it was converged with these very inputs.
        result[name] = {"current": not found, "differences": found,
                        "drift": bool(found) and not unreadable and stale(recorded.get(name), spec) is None}
    return result


def _comparable(record: t.Mapping[str, t.Any] | None) -> t.Any:
    return None if record is None else {k: v for k, v in record.items() if k != "written"}


def plan(path: str, parts: t.Mapping[str, t.Mapping[str, t.Any]], now: datetime.datetime) -> tuple[dict, dict, bool]:
    """(before, after, changed): the stamp's parts now, and with the given parts recorded as they are now."""
    try:
        before = read(path)
    except StampError:
        before = {}  # written anew
    after = dict(before)
    for name, spec in parts.items():
        record = _part_record(spec)
        if _comparable(before.get(name)) == record:
            continue
        record["written"] = now.isoformat()
        after[name] = record
    return before, after, after != before


def write(path: str, parts: t.Mapping[str, t.Any]) -> None:
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temporary = path + ".tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"format": FORMAT, "parts": parts}, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise StampError("cannot write the stamp %s: %s" % (path, exc)) from exc


def summary(parts: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """What a diff shows of a stamp: per part, its inputs, how many files, its services and expiry."""
    return {name: {"inputs": p.get("inputs"), "files": len(p.get("files") or {}), "units": p.get("units"),
                   "expires": p.get("expires")} for name, p in sorted(parts.items())}
