# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: reading files on a replica in one call. Standard library only: this runs
on the replicas."""

from __future__ import annotations

import glob
import hashlib
import os
import stat
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
