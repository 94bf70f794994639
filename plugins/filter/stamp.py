# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The digest of what a replica is converged with, as kubeha.gce.replica_stamp records it."""

from __future__ import annotations

import hashlib
import json
import os
import typing as t

import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeha.gce.plugins.module_utils._stamp import file_sha256

# The collection's own files that decide what its roles do: a new version of them converges every replica again.
_COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OWN_TREES = ("roles", "plugins")
_OWN: list[str] = []


def _tree(root: str) -> t.Iterator[tuple[str, str]]:
    """(relative path, sha256) of every file under root (root itself when it is a file), in a stable order."""
    if os.path.isfile(root):
        yield "", file_sha256(root)
        return
    for top, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(top, name)
            yield os.path.relpath(path, root), file_sha256(path)


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


def _member_problem(label: str, member: t.Mapping[str, t.Any] | None, peer: str) -> str | None:
    """Why ``member`` (of the etcd cluster called ``label``) does not count as converged; None when it does."""
    if member is None or member.get("is_learner"):
        return "it is not a voting %s member" % label
    if not member.get("healthy"):
        return "its %s member is not healthy" % label
    if not any(url.startswith(peer) for url in member.get("peer_urls") or []):
        return "its %s member's peer URLs %s are not at its internal IP" % (label, ", ".join(member.get("peer_urls") or []))
    return None


def stamp_report(results: t.Sequence[t.Mapping[str, t.Any]], etcd_members: t.Sequence[t.Mapping[str, t.Any]],
                 certificates_only: t.Container[str] = (), expected: t.Sequence[str] = (),
                 events_members: t.Sequence[t.Mapping[str, t.Any]] | None = None) -> dict[str, t.Any]:
    """Which replicas are as they were converged, from a loop of replica_stamp_info over them, and why the others are not.

    A replica is current when every part compared is current and it is a healthy voting etcd member whose peer URL
    is at its internal IP; a comparison that failed or did not reach the replica counts as not current. For the
    replicas in certificates_only (those a run converges only the certificates of), only the ``pki`` part counts;
    how their other parts drifted since they were converged (not new inputs) is in ``not_converged``.
    A replica in expected that was not compared at all (its VM not running, no SSH answer) is named too.
    With ``events_members`` (the events etcd's, when the cluster runs one), it must be such a member there too.
    """
    current, why, not_converged = [], {}, {}
    for result in results:
        replica = result.get("item") or {}
        name = replica.get("name")
        peer = "https://%s:" % replica.get("internal_ip")
        clusters = [("etcd", etcd_members)] + ([("events etcd", events_members)] if events_members is not None else [])
        membership = [_member_problem(label, next((m for m in members if m.get("name") == name), None), peer)
                      for label, members in clusters]
        membership = [problem for problem in membership if problem]
        parts = result.get("parts") or {}
        counted = {p: r for p, r in parts.items() if name not in certificates_only or p == "pki"}
        others = {p: r for p, r in parts.items() if p not in counted and r.get("drift")}
        if others:
            not_converged[name] = _differences(others)
        if "current" not in result:
            why[name] = "could not be compared: %s" % (result.get("msg") or "no answer")
        elif not all(r["current"] for r in counted.values()):
            why[name] = _differences({p: r for p, r in counted.items() if not r["current"]})
        elif membership:
            why[name] = membership[0]
        else:
            current.append(name)
    compared = {(r.get("item") or {}).get("name") for r in results}
    for name in expected:
        if name not in compared:
            why[name] = "not compared: its VM is not running, or it did not answer over SSH"
    return {"current": current, "why": why, "not_converged": not_converged}


def _lines(parts: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    return ["%s: %s" % (part, ", ".join(r["differences"])) for part, r in sorted(parts.items())]


def _differences(parts: t.Mapping[str, t.Mapping[str, t.Any]]) -> str:
    return "; ".join(_lines(parts))


def stamp_differences(parts: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """What differs in each part of a replica's stamp that is not current (replica_stamp_info's ``parts``), one line a
    part: ``services: /etc/gce.conf changed, service kube-scheduler is inactive enabled``."""
    return _lines({p: r for p, r in parts.items() if not r.get("current")})


def role_options(roles: t.Sequence[str]) -> list[str]:
    """The options of the collection's roles: what their argument specs declare for the main entry point, or, for a
    role without one (it may have specs for other entry points only), the variables of its defaults."""
    names: list[str] = []
    for role in roles:
        base = os.path.join(_COLLECTION, "roles", role)
        specs, defaults = os.path.join(base, "meta", "argument_specs.yml"), os.path.join(base, "defaults", "main.yml")
        path = specs
        try:
            main = None
            if os.path.exists(specs):
                with open(specs, encoding="utf-8") as handle:
                    main = (yaml.safe_load(handle)["argument_specs"] or {}).get("main")
            if main is None:
                path = defaults
                with open(defaults, encoding="utf-8") as handle:
                    names.extend(sorted(yaml.safe_load(handle)))
            else:
                names.extend(sorted(main["options"]))
        except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
            raise AnsibleFilterError("role_options: cannot read the options of role %s from %s: %s" % (role, path, exc)) from exc
    return names


class FilterModule:
    """What a replica is converged with."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"stamp_digest": stamp_digest, "stamp_report": stamp_report, "stamp_differences": stamp_differences,
                "role_options": role_options}
