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


# A release as kube-apiserver --version prints it: v1.37.0, a pre-release (v1.37.0-rc.1), or a build of its own
# (v1.36.4-gke.1, the lab's v1.36.0-kubeha-lab-standin), which is the release it was built from.
_RELEASE = re.compile(r"v([0-9]+)[.]([0-9]+)[.]([0-9]+)(?:-((?:alpha|beta|rc)[.][0-9]+))?")


def _release(version: str | None) -> tuple[int, int, int, str] | None:
    found = _RELEASE.search(version or "")
    return (int(found.group(1)), int(found.group(2)), int(found.group(3)), found.group(4) or "") if found else None


def _named(release: tuple[int, int, int, str]) -> str:
    return "v%d.%d.%d%s" % (release[:3] + ("-" + release[3] if release[3] else "",))


def kubernetes_upgrade_problems(running: t.Mapping[str, str], wanted: str, allow_downgrade: bool = False,
                                restart_pending: t.Sequence[str] = ()) -> list[str]:
    """Why the replicas, running ``running`` (kube-apiserver --version's output by replica name), are not to be moved
    to ``wanted``, by Kubernetes' version-skew policy for API servers: one minor at a time, every replica on the same
    minor before the next one, and no downgrade across a minor unless ``allow_downgrade`` (and then one minor at most).
    A replica in ``restart_pending`` runs a kube-apiserver process older than its binary (a run stopped before it
    restarted it): its process's version is not known, so only that binary's release may be asked for. A replica whose
    output says no version is not counted (it has no control plane yet), but one of them must say it."""
    goal = _release(wanted)
    if goal is None:
        return ["kubernetes_version is %s, not a Kubernetes release such as v1.37.0" % wanted]
    releases = {name: release for name, release in ((n, _release(v)) for n, v in sorted(running.items())) if release}
    if not releases:
        return ["no replica's kube-apiserver says its version (%s), so the version-skew policy cannot be checked" % (
            ", ".join(sorted(running)) or "no replica")]
    pending = sorted(name for name in restart_pending if name in releases and releases[name] != goal)
    if pending:
        return ["%s run%s a kube-apiserver process older than its binary (%s): a run stopped before it restarted it. "
                "Finish that run first (-e kubernetes_version=%s)" % (
                    ", ".join(pending), "s" if len(pending) == 1 else "",
                    ", ".join(sorted({_named(releases[name]) for name in pending})), _named(releases[pending[0]]))]
    minors = sorted({release[:2] for release in releases.values()})

    def on(minor: tuple[int, int]) -> str:
        names = [name for name, release in releases.items() if release[:2] == minor]
        return "%s (%s)" % (", ".join(names), ", ".join(sorted({_named(releases[n]) for n in names})))

    runs = "; ".join(on(minor) for minor in minors)
    if minors[0][0] != minors[-1][0] or goal[0] != minors[-1][0]:
        return ["the replicas run %s, and this run would install %s: this playbook does not move between major "
                "versions" % (runs, wanted)]
    low, high, major = minors[0][1], minors[-1][1], goal[0]
    if high - low > 1:
        return ["the replicas run %s: more than one minor apart, which Kubernetes' version-skew policy does not allow "
                "and no run of this playbook leaves, nor moves on from. Bring the older replicas to %d.%d by hand "
                "first" % (runs, major, high)]
    if goal[1] > high and low != high:
        return ["the replicas run %s, and this run would install %s: every replica runs the same minor before the "
                "next one. Finish the upgrade to %d.%d first (-e kubernetes_version=%s)" % (
                    runs, wanted, major, high, _named(max(releases.values())))]
    if goal[1] > high + 1:
        return ["the replicas run %s, and this run would install %s: Kubernetes is upgraded one minor at a time. "
                "Upgrade to a release of %d.%d first" % (runs, wanted, major, high + 1)]
    if goal[1] < high - 1:
        return ["the replicas run %s, and this run would install %s: a downgrade goes one minor at a time as well" % (
            runs, wanted)]
    if goal[1] < high and not allow_downgrade:
        return ["the replicas run %s, and this run would install %s: a downgrade to an older minor is refused unless "
                "asked for with -e allow_downgrade=true (see docs/upgrade.md, \"Going back\")" % (runs, wanted)]
    return []


def kubernetes_versions_to_change(running: t.Mapping[str, str], wanted: str) -> list[str]:
    """The replicas (names, sorted) whose kube-apiserver --version output is not release ``wanted`` (a build of its
    own counts as the release it was built from; a pre-release does not)."""
    goal = _release(wanted)
    return sorted(name for name, version in running.items() if _release(version) != goal)


_ETCD = re.compile(r"^v?([0-9]+)[.]([0-9]+)[.]([0-9]+)$")


def _etcd_release(version: t.Any) -> tuple[int, int, int] | None:
    found = _ETCD.match(str(version or "").strip())
    return (int(found.group(1)), int(found.group(2)), int(found.group(3))) if found else None


def _etcd_members(clusters: t.Sequence[t.Mapping[str, t.Any]]) -> t.Iterator[tuple[str, dict[str, t.Any]]]:
    """Each etcd cluster's label ("etcd" for the first and "events etcd" for the second unless it has one) and its
    members' releases by name (None for a member that says no version)."""
    for index, cluster in enumerate(clusters):
        label = cluster.get("label") or ("etcd" if index == 0 else "events etcd")
        yield label, {str(m.get("name") or m.get("id")): _etcd_release(m.get("version")) for m in cluster.get("members") or []}


def etcd_upgrade_problems(clusters: t.Sequence[t.Mapping[str, t.Any]], wanted: str) -> list[str]:
    """Why the etcd members (``clusters``: kubeha.gce.etcd_member_info's results, the main etcd's and the events
    etcd's, each with its ``label``, by default "etcd" for the first and "events etcd" for the second) are not to be
    moved to etcd ``wanted``, by etcd's upgrade rules: one minor at a time, every member on the same minor before the
    next, and never back to an older minor (etcd keeps no way back for its data but a snapshot); patch releases of one
    minor go either way. A member that says no version is named."""
    goal = _etcd_release(wanted)
    if goal is None:
        return ["etcd_version is %s, not an etcd release such as 3.5.16" % wanted]
    problems = []
    for label, releases in _etcd_members(clusters):
        unknown = sorted(name for name, release in releases.items() if release is None)
        if unknown:
            problems.append("%s member %s says no version, so etcd's upgrade rules cannot be checked" % (
                label, ", ".join(unknown)))
            continue
        if not releases:
            continue
        minors = sorted({release[:2] for release in releases.values()})
        runs = "; ".join("%s (%s)" % (", ".join(sorted(n for n, r in releases.items() if r[:2] == minor)), ", ".join(
            sorted({"%d.%d.%d" % r for r in releases.values() if r[:2] == minor}))) for minor in minors)
        low, high = minors[0], minors[-1]
        if goal[0] != high[0] or low[0] != high[0]:
            problems.append("the %s members run %s, and this run would install %s: this playbook does not move etcd "
                            "between major versions" % (label, runs, wanted))
        elif goal[1] < high[1]:
            problems.append("the %s members run %s, and this run would install %s: etcd does not go back to an older "
                            "minor (a member of it cannot read what the newer one wrote); a snapshot taken before the "
                            "upgrade is the way back" % (label, runs, wanted))
        elif goal[1] > high[1] and low != high:
            problems.append("the %s members run %s, and this run would install %s: every member runs the same minor "
                            "before the next one. Finish the upgrade to %d.%d first" % ((label, runs, wanted) + high))
        elif goal[1] > high[1] + 1:
            problems.append("the %s members run %s, and this run would install %s: etcd is upgraded one minor at a "
                            "time. Upgrade to a release of %d.%d first" % (label, runs, wanted, high[0], high[1] + 1))
    return problems


def etcd_version_problems(clusters: t.Sequence[t.Mapping[str, t.Any]], wanted: str) -> list[str]:
    """Why a run that adds or converges etcd members with etcd ``wanted`` must not (``clusters`` as
    etcd_upgrade_problems takes them): the newest member of a cluster runs another minor. etcd refuses a member of an
    older minor than its cluster, and one of a newer minor would move the cluster on one replica; another minor is
    upgrade's. While an upgrade is unfinished the newest minor is the one to give. Members that say no version are not
    counted."""
    goal = _etcd_release(wanted)
    if goal is None:
        return ["etcd_version is %s, not an etcd release such as 3.5.16" % wanted]
    problems = []
    for label, members in _etcd_members(clusters):
        releases = [release for release in members.values() if release]
        if not releases:
            continue
        # While an upgrade is unfinished, members of the newer minor join too: the cluster version is still the older.
        newest = max(releases)
        if goal[:2] != newest[:2]:
            running = ", ".join(sorted({"%d.%d.%d" % r for r in releases}))
            problems.append("the %s members run %s, and this run would install etcd %s: a member is not added or "
                            "converged with another minor than its cluster's newest. Give %s (-e etcd_version=%d.%d.%d)"
                            "%s" % (label, running, wanted, "its version" if len(set(releases)) == 1 else "the newest",
                                    newest[0], newest[1], newest[2], (
                                        ", or move the cluster to %s with upgrade first (docs/upgrade.md)" % wanted)
                                    if goal > newest else ""))
    return problems


def etcd_versions_to_change(clusters: t.Sequence[t.Mapping[str, t.Any]], wanted: str) -> list[str]:
    """The etcd members (LABEL NAME, by cluster in the order of ``clusters``, then by name) that do not run etcd
    ``wanted``."""
    goal = _etcd_release(wanted)
    return ["%s %s" % (label, name) for label, members in _etcd_members(clusters)
            for name in sorted(name for name, release in members.items() if release != goal)]


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
            "kubernetes_upgrade_problems": kubernetes_upgrade_problems,
            "kubernetes_versions_to_change": kubernetes_versions_to_change,
            "etcd_upgrade_problems": etcd_upgrade_problems,
            "etcd_version_problems": etcd_version_problems,
            "etcd_versions_to_change": etcd_versions_to_change,
        }
