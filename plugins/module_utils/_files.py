# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: reading and writing files on a replica in one call. Standard library only:
this runs on the replicas."""

from __future__ import annotations

import glob
import hashlib
import os
import stat
import tempfile
import typing as t

MAGIC = ("*", "?", "[")


class FilesError(Exception):
    """A file that exists but cannot be read as asked."""


def _expand(pattern: str) -> list[str]:
    if not os.path.isabs(pattern):
        raise FilesError("paths must be absolute: %s" % pattern)
    return sorted(glob.glob(pattern)) if any(m in pattern for m in MAGIC) else [pattern]


def read_files(patterns: t.Iterable[str], content: bool = True) -> dict[str, dict[str, t.Any]]:
    """Each regular file named in ``patterns`` (paths, or glob patterns) that exists, by path: its mode, owner,
    size and sha256, and with ``content`` its text (UTF-8). A path that does not exist is left out; one that is
    not a regular file, or not text, fails naming it."""
    found: dict[str, dict[str, t.Any]] = {}
    for pattern in patterns:
        for path in _expand(pattern):
            try:
                info = os.stat(path)
                if not stat.S_ISREG(info.st_mode):
                    raise FilesError("%s is not a regular file" % path)
                with open(path, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise FilesError("%s cannot be read: %s" % (path, exc.strerror or exc)) from None
            entry: dict[str, t.Any] = {"mode": "%04o" % stat.S_IMODE(info.st_mode), "uid": info.st_uid,
                                       "gid": info.st_gid, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            if content:
                try:
                    entry["content"] = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise FilesError("%s is not UTF-8 text; read it with content=false" % path) from None
            found[path] = entry
    return found


class FileChange(t.NamedTuple):
    """What writing one file means on this host: ``action`` is created, replaced, attributes or unchanged."""

    path: str
    content: bytes
    mode: int
    action: str
    before: str
    after: str


def _describe(mode: int, uid: int, gid: int, sha256: str) -> str:
    return "mode %04o owner %d:%d sha256 %s" % (mode, uid, gid, sha256)


def plan_writes(files: t.Iterable[t.Mapping[str, t.Any]], uid: int, gid: int) -> list[FileChange]:
    """Compare each wanted file (``path``, ``content`` text, ``mode`` octal text) with what is on disk. A path that
    is not absolute, twice in the list, not a regular file, or in a directory that does not exist fails naming it."""
    changes: list[FileChange] = []
    seen: set[str] = set()
    for wanted in files:
        path = wanted["path"]
        if not os.path.isabs(path):
            raise FilesError("paths must be absolute: %s" % path)
        if path in seen:
            raise FilesError("%s is given twice" % path)
        seen.add(path)
        try:
            mode = int(str(wanted.get("mode") or "0600"), 8)
        except ValueError:
            raise FilesError("the mode of %s is not octal: %s" % (path, wanted.get("mode"))) from None
        if mode & ~0o7777:
            raise FilesError("the mode of %s is out of range: %s" % (path, wanted.get("mode")))
        content = (wanted.get("content") or "").encode("utf-8")
        after = _describe(mode, uid, gid, hashlib.sha256(content).hexdigest())
        if not os.path.isdir(os.path.dirname(path)):
            raise FilesError("the directory of %s does not exist" % path)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            changes.append(FileChange(path, content, mode, "created", "absent", after))
            continue
        if not stat.S_ISREG(info.st_mode):
            raise FilesError("%s is not a regular file" % path)
        try:
            with open(path, "rb") as handle:
                current = handle.read()
        except OSError as exc:
            raise FilesError("%s cannot be read: %s" % (path, exc.strerror or exc)) from None
        before = _describe(stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, hashlib.sha256(current).hexdigest())
        if current != content:
            action = "replaced"
        elif (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) != (mode, uid, gid):
            action = "attributes"
        else:
            action = "unchanged"
        changes.append(FileChange(path, content, mode, action, before, after))
    return changes


def apply_writes(changes: t.Iterable[FileChange], uid: int, gid: int) -> None:
    """Carry out a plan: new content goes to a file made beside the old one (mode 0600 until its owner is set), synced,
    then renamed over it, so that a reader (or a crash) sees the old file or the new one, never a part."""
    for change in changes:
        if change.action == "unchanged":
            continue
        try:
            if change.action == "attributes":
                os.chown(change.path, uid, gid)
                os.chmod(change.path, change.mode)
                continue
            directory = os.path.dirname(change.path)
            descriptor, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(change.path), dir=directory)
            try:
                os.fchown(descriptor, uid, gid)
                os.fchmod(descriptor, change.mode)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(change.content)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.rename(temporary, change.path)
            except BaseException:
                if os.path.exists(temporary):
                    os.unlink(temporary)
                raise
            directory_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)
        except OSError as exc:
            raise FilesError("%s cannot be written: %s" % (change.path, exc.strerror or exc)) from None
