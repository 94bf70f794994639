# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The digest of what a replica is converged with, as kubeha.gce.replica_stamp records it."""

from __future__ import annotations

import hashlib
import json
import os
import typing as t

from ansible.errors import AnsibleFilterError

# The collection's own files that decide what its roles do: a new version of them converges every replica again.
_COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OWN_TREES = ("roles", "plugins")
_OWN: list[str] = []


def _tree(root: str) -> t.Iterator[tuple[str, str]]:
    """(relative path, sha256) of every file under root (root itself when it is a file), in a stable order."""
    if os.path.isfile(root):
        yield "", _file(root)
        return
    for top, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(top, name)
            yield os.path.relpath(path, root), _file(path)


def _file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _collection_digest() -> str:
    if not _OWN:
        digest = hashlib.sha256()
        for tree in _OWN_TREES:
            for relative, sha in _tree(os.path.join(_COLLECTION, tree)):
                digest.update(("%s/%s %s\n" % (tree, relative, sha)).encode())
        _OWN.append(digest.hexdigest())
    return _OWN[0]


def stamp_digest(value: t.Any, trees: t.Sequence[str] = ()) -> str:
    """sha256 of value (as canonical JSON), of the files under each controller path in trees, and of the collection."""
    digest = hashlib.sha256()
    try:
        digest.update(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode())
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("stamp_digest: the inputs are not JSON: %s" % exc) from exc
    for root in trees:
        if not root:
            continue
        if not os.path.exists(root):
            raise AnsibleFilterError("stamp_digest: %s does not exist on the controller" % root)
        digest.update(("\n%s\n" % root).encode())
        for relative, sha in _tree(root):
            digest.update(("%s %s\n" % (relative, sha)).encode())
    digest.update(("\ncollection %s" % _collection_digest()).encode())
    return "sha256:" + digest.hexdigest()


def stamp_report(results: t.Sequence[t.Mapping[str, t.Any]], etcd_members: t.Sequence[t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    """Which replicas are as they were converged, from a loop of replica_stamp_info over them, and why the others are not.

    A replica is current when every part compared is current and it is a voting etcd member; a read that failed
    (no SSH answer, no stamp module result) counts as not current.
    """
    voters = {m.get("name") for m in etcd_members if not m.get("is_learner")}
    current, why = [], {}
    for result in results:
        name = (result.get("item") or {}).get("name")
        if "current" not in result:
            why[name] = "could not be compared: %s" % (result.get("msg") or "no answer")
        elif not result["current"]:
            why[name] = "; ".join("%s: %s" % (part, ", ".join(r["differences"]))
                                  for part, r in sorted(result["parts"].items()) if not r["current"])
        elif name not in voters:
            why[name] = "it is not a voting etcd member"
        else:
            current.append(name)
    return {"current": current, "why": why}


class FilterModule:
    """What a replica is converged with."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"stamp_digest": stamp_digest, "stamp_report": stamp_report}
