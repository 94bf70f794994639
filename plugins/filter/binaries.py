# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rules for the Kubernetes binaries a run installs: the cluster's minor version, and the controller's cache."""

from __future__ import annotations

import re
import typing as t

# What kube-apiserver --version prints: "Kubernetes v1.36.0" (and a suffix on a build of its own).
_VERSION = re.compile(r"v([0-9]+)[.]([0-9]+)[.]([0-9]+)\S*")


def _minor(version: str) -> tuple[str, str] | None:
    found = _VERSION.search(version or "")
    return (found.group(1), found.group(2)) if found else None


def kubernetes_version_problems(running: str | None, wanted: str, host: str) -> list[str]:
    """Why a replica running ``running`` (kube-apiserver --version's output on ``host``; empty when it has none yet)
    is not to get ``wanted``: another minor version. Kubernetes lets API servers be one minor apart only while a
    cluster is upgraded one replica at a time, which is not what adding or converging a replica is."""
    found = _VERSION.search(running or "")
    if not found or _minor(found.group(0)) == _minor(wanted):
        return []
    return ["%s runs Kubernetes %s, and this run would install %s: a replica is not added or converged with another "
            "minor version than the cluster runs. Give the cluster's version, -e kubernetes_version=v%s.%s.%s (with "
            "kubernetes_server_archive_checksum when the collection knows no checksum for it, see docs/lifecycle.md "
            "\"The Kubernetes version\")" % ((host, found.group(0), wanted) + found.groups())]


def binaries_cache_problems(found: t.Sequence[t.Mapping[str, t.Any]], uid: int | str) -> list[str]:
    """What, in a directory of the controller's cache of binaries, is not what the collection leaves there: a
    directory that ``uid`` owns and that nobody else may write to, holding regular executable files that ``uid`` owns
    and nobody else may write to. ``found`` are the results of a stat loop: the directory first (item ``''``), then
    each binary by name; a result without ``stat`` is one whose stat failed (a file where the directory should be).
    Empty when the directory is not there (nothing to check) or is whole and the user's own."""
    if not found or not (found[0].get("stat") or {"exists": True}).get("exists", True):
        return []
    bad = []
    for index, result in enumerate(found):
        stat = result.get("stat")
        whole = stat is not None and (
            (stat.get("isdir") if index == 0 else stat.get("exists") and stat.get("isreg") and stat.get("executable"))
            and stat.get("uid") == int(uid) and not stat.get("wgrp") and not stat.get("woth"))
        if not whole:
            bad.append(result.get("item") or "the directory itself")
    return bad


class FilterModule:
    """The rules for the Kubernetes binaries of kubeha.gce."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            "kubernetes_version_problems": kubernetes_version_problems,
            "binaries_cache_problems": binaries_cache_problems,
        }
