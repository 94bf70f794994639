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
    """What writing one file means on this host: ``action`` is created, replaced, attributes or unchanged;
    ``inode`` is the (device, inode) of the file that was compared, None when there was none."""

    path: str
    content: bytes
    mode: int
    action: str
    before: str
    after: str
    inode: tuple[int, int] | None


def _describe(mode: int, uid: int | None, gid: int | None, sha256: str) -> str:
    return "mode %04o owner %s:%s sha256 %s" % (mode, "?" if uid is None else uid, "?" if gid is None else gid, sha256)


def _mode(path: str, value: t.Any) -> int:
    """An octal text (``"0640"``), or an int as YAML reads an unquoted ``0640``."""
    if value is None or value == "":
        return 0o600
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            raise FilesError("the mode of %s is not octal: %s" % (path, value)) from None
    if mode < 0 or mode & ~0o7777:
        raise FilesError("the mode of %s is out of range: %s" % (path, value))
    return mode


def _open_regular(path: str, flags: int = os.O_RDONLY) -> int | None:
    """A descriptor of the regular file at ``path`` itself (never what a symbolic link points to, never blocking on a
    FIFO), or None when nothing is there."""
    try:
        descriptor = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise FilesError("%s is a symbolic link, not a regular file" % path) from None
        raise FilesError("%s cannot be read: %s" % (path, exc.strerror or exc)) from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise FilesError("%s is not a regular file" % path)
    return descriptor


def plan_writes(files: t.Iterable[t.Mapping[str, t.Any]], uid: int | None, gid: int | None,
                check_mode: bool = False) -> list[FileChange]:
    """Compare each wanted file (``path``, ``content`` text, ``mode``, ``force``) with what is on disk. A path that
    is not absolute, twice in the list, not a regular file, without content, or in a directory that does not exist
    fails naming it; in check mode a missing directory (an earlier task would make it) predicts the file, and an
    owner that does not exist yet (None) predicts a change. With ``force`` false, a file that exists is kept."""
    changes: list[FileChange] = []
    seen: set[str] = set()
    for wanted in files:
        path = wanted["path"]
        if not os.path.isabs(path):
            raise FilesError("paths must be absolute: %s" % path)
        if path in seen:
            raise FilesError("%s is given twice" % path)
        seen.add(path)
        mode = _mode(path, wanted.get("mode"))
        if wanted.get("content") is None:
            raise FilesError("the content of %s is not given" % path)
        content = str(wanted["content"]).encode("utf-8")
        after = _describe(mode, uid, gid, hashlib.sha256(content).hexdigest())
        if not os.path.isdir(os.path.dirname(path)):
            if check_mode:
                changes.append(FileChange(path, content, mode, "created", "absent", after, None))
                continue
            raise FilesError("the directory of %s does not exist" % path)
        descriptor = _open_regular(path)
        if descriptor is None:
            changes.append(FileChange(path, content, mode, "created", "absent", after, None))
            continue
        try:
            info = os.fstat(descriptor)
            chunks = []
            while True:
                chunk = os.read(descriptor, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            current = b"".join(chunks)
        except OSError as exc:
            raise FilesError("%s cannot be read: %s" % (path, exc.strerror or exc)) from None
        finally:
            os.close(descriptor)
        before = _describe(stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, hashlib.sha256(current).hexdigest())
        inode = (info.st_dev, info.st_ino)
        if wanted.get("force") is False:
            action = "unchanged"
        elif current != content:
            action = "replaced"
        elif (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) != (mode, uid, gid):
            action = "attributes"
        else:
            action = "unchanged"
        changes.append(FileChange(path, content, mode, action, before, after, inode))
    return changes


def apply_writes(changes: t.Iterable[FileChange], uid: int, gid: int, done: dict[str, str] | None = None) -> None:
    """Carry out a plan: new content goes to a file made beside the old one (mode 0600 until its owner is set) and
    synced, for every file first; then each is renamed over the old one, so that a reader (or a crash) sees the old
    file or the new one, never a part, and a crash while the files are written leaves all the old ones (a CA's
    certificate and key change together; only a crash amid the renames themselves, a window of microseconds, leaves
    some renamed, and a crash while they are written leaves the staged files beside them). A file whose content
    stays gets its owner and mode through a descriptor of the file that was compared (a path swapped for a link
    since is refused, never followed). ``done`` gets each file's action as it is carried out."""
    changes = [change for change in changes if change.action != "unchanged"]
    staged: dict[str, str] = {}
    current = ""
    try:
        for change in changes:
            current = change.path
            if change.action != "attributes":
                staged[change.path] = _stage(change, uid, gid)
        for change in changes:
            current = change.path
            if change.action == "attributes":
                _set_attributes(change, uid, gid)
            else:
                os.rename(staged[change.path], change.path)
                del staged[change.path]
            if done is not None:
                done[change.path] = change.action
        for directory in sorted({os.path.dirname(c.path) for c in changes if c.action != "attributes"}):
            current = directory
            directory_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)
    except OSError as exc:
        raise FilesError("%s cannot be written: %s" % (current, exc.strerror or exc)) from None
    finally:
        for temporary in staged.values():
            if os.path.lexists(temporary):
                os.unlink(temporary)


def _set_attributes(change: FileChange, uid: int, gid: int) -> None:
    descriptor = _open_regular(change.path)
    if descriptor is None or change.inode is None:
        raise FilesError("%s changed while it was written: it is gone" % change.path)
    try:
        info = os.fstat(descriptor)
        if (info.st_dev, info.st_ino) != change.inode:
            raise FilesError("%s changed while it was written: it is another file" % change.path)
        os.fchown(descriptor, uid, gid)
        os.fchmod(descriptor, change.mode)
    finally:
        os.close(descriptor)


def _stage(change: FileChange, uid: int, gid: int) -> str:
    """The new content in a file beside ``change.path``, synced, with its owner and mode; returns its path."""
    descriptor, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(change.path),
                                             dir=os.path.dirname(change.path))
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), change.mode)
            handle.write(change.content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary
