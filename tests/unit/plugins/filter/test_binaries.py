# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kubeha.gce.plugins.filter.binaries import (
    FilterModule,
    binaries_cache_problems,
    etcd_upgrade_problems,
    etcd_version_problems,
    etcd_versions_to_change,
    kubernetes_upgrade_problems,
    kubernetes_version_problems,
    kubernetes_versions_to_change,
)


@pytest.mark.parametrize("running", ["", "Kubernetes v1.36.0\n", "Kubernetes v1.36.4-gke.1", "v1.36.0-kubeha-lab-standin",
                                     "not a version", None])
def test_the_same_minor_or_nothing_running_is_fine(running):
    assert kubernetes_version_problems(running, "v1.36.0", "k-master") == []


def test_another_minor_is_refused_naming_the_version_to_give():
    problems = kubernetes_version_problems("Kubernetes v1.35.4-kubeha-lab-standin\n", "v1.36.0", "k-master-c")
    assert problems == [
        "k-master-c runs Kubernetes v1.35.4-kubeha-lab-standin, and this run would install v1.36.0: a replica is not "
        "added or converged with another minor version than the cluster runs. Give the cluster's version, "
        "-e kubernetes_version=v1.35.4 (with kubernetes_server_archive_checksum when the collection knows no checksum "
        "for it, see docs/lifecycle.md \"The Kubernetes version\")"]


@pytest.mark.parametrize("running,wanted", [("Kubernetes v1.3.6", "v1.36.0"), ("Kubernetes v1.36.0", "v1.3.6"),
                                            ("Kubernetes v2.36.0", "v1.36.0"), ("Kubernetes v1.37.0", "v1.36.9")])
def test_minor_versions_are_compared_as_numbers_not_prefixes(running, wanted):
    assert len(kubernetes_version_problems(running, wanted, "k-master")) == 1


def stat(item, **fields):
    found = {"exists": True, "isdir": item == "", "isreg": item != "", "executable": True, "uid": 1000,
             "wgrp": False, "woth": False}
    found.update(fields)
    return {"item": item, "stat": found}


BINARIES = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]
WHOLE = [stat("")] + [stat(name) for name in BINARIES]


def test_a_whole_directory_of_the_users_own_is_fine():
    assert binaries_cache_problems(WHOLE, 1000) == []
    assert binaries_cache_problems(WHOLE, "1000") == []  # as id -u prints it


def test_no_directory_is_nothing_to_check():
    assert binaries_cache_problems([{"item": "", "stat": {"exists": False}}] + WHOLE[1:], 1000) == []
    assert binaries_cache_problems([], 1000) == []


@pytest.mark.parametrize("index,fields,bad", [
    (0, {"uid": 0}, "the directory itself"),
    (0, {"wgrp": True}, "the directory itself"),
    (0, {"isdir": False, "isreg": True}, "the directory itself"),
    (1, {"exists": False}, "kube-apiserver"),
    (2, {"isreg": False, "isdir": True}, "kube-controller-manager"),
    (3, {"executable": False}, "kube-scheduler"),
    (4, {"woth": True}, "kubectl"),
    (4, {"wgrp": True}, "kubectl"),
    (4, {"uid": 1001}, "kubectl"),
])
def test_what_is_not_as_left_is_named(index, fields, bad):
    found = list(WHOLE)
    found[index] = stat(found[index]["item"], **fields)
    assert binaries_cache_problems(found, 1000) == [bad]


def test_a_stat_that_failed_is_not_trusted():
    """A file where the directory should be: the directory is not one, and each binary's stat fails (ENOTDIR)."""
    found = [stat("", isdir=False, isreg=True)] + [{"item": name, "failed": True} for name in BINARIES]
    assert binaries_cache_problems(found, 1000) == ["the directory itself"] + BINARIES
    failed_root = [{"item": "", "failed": True}] + WHOLE[1:]
    assert binaries_cache_problems(failed_root, 1000) == ["the directory itself"]


def test_the_filters_are_registered():
    assert set(FilterModule().filters()) == {"kubernetes_version_problems", "binaries_cache_problems",
                                             "kubernetes_upgrade_problems", "kubernetes_versions_to_change",
                                             "etcd_upgrade_problems", "etcd_versions_to_change", "etcd_version_problems"}


def _running(*versions):
    return {name: "Kubernetes %s\n" % version for name, version in zip(["k-master", "k-master-c", "k-master-d"], versions)}


@pytest.mark.parametrize("running, wanted", [
    (("v1.36.0", "v1.36.0", "v1.36.0"), "v1.37.0"),  # the next minor
    (("v1.36.0", "v1.36.2", "v1.36.0"), "v1.36.4"),  # a patch release, from replicas on two
    (("v1.36.4", "v1.36.4", "v1.36.4"), "v1.36.1"),  # a patch downgrade stays within the minor
    (("v1.37.0", "v1.36.0", "v1.36.0"), "v1.37.0"),  # a stopped upgrade, finished
    (("v1.37.0", "v1.36.0", "v1.36.0"), "v1.37.2"),  # ... with a later patch release of the newer minor
    (("v1.36.0-kubeha-lab-standin",), "v1.37.0"),  # a build suffix
    (("", "v1.36.0", "v1.36.0"), "v1.37.0"),  # a replica without a control plane yet is not counted
    (("v1.37.0-rc.1", "v1.36.0", "v1.36.0"), "v1.37.0"),  # a pre-release of the newer minor, finished
])
def test_an_upgrade_allowed_by_the_version_skew_policy(running, wanted):
    assert kubernetes_upgrade_problems(_running(*running), wanted) == []


@pytest.mark.parametrize("running, wanted, said", [
    (("v1.36.0", "v1.36.0", "v1.36.0"), "v1.38.0",
     "the replicas run k-master, k-master-c, k-master-d (v1.36.0), and this run would install v1.38.0: Kubernetes is "
     "upgraded one minor at a time. Upgrade to a release of 1.37 first"),
    (("v1.37.0", "v1.36.0", "v1.36.1"), "v1.38.0",
     "the replicas run k-master-c, k-master-d (v1.36.0, v1.36.1); k-master (v1.37.0), and this run would install "
     "v1.38.0: every replica runs the same minor before the next one. Finish the upgrade to 1.37 first "
     "(-e kubernetes_version=v1.37.0)"),
    (("v1.37.0", "v1.36.0", "v1.36.1"), "v1.39.0", "Finish the upgrade to 1.37 first"),
    (("", "", ""), "v1.37.0", "no replica's kube-apiserver says its version (k-master, k-master-c, k-master-d)"),
    (("v1.37.0", "v1.37.0", "v1.37.0"), "v1.36.5",
     "the replicas run k-master, k-master-c, k-master-d (v1.37.0), and this run would install v1.36.5: a downgrade to an "
     "older minor is refused unless asked for with -e allow_downgrade=true"),
    (("v1.37.0", "v1.36.0", "v1.36.0"), "v1.36.0", "a downgrade to an older minor is refused unless asked for"),
    (("v1.37.0", "v1.37.0", "v1.37.0"), "v1.35.0", "a downgrade goes one minor at a time as well"),
    (("v1.38.0", "v1.36.0", "v1.36.0"), "v1.38.0", "more than one minor apart"),
    (("v1.36.0", "v1.36.0", "v1.36.0"), "v2.0.0", "does not move between major versions"),
    (("v1.36.0",), "1.37", "kubernetes_version is 1.37, not a Kubernetes release such as v1.37.0"),
])
def test_an_upgrade_refused_by_the_version_skew_policy(running, wanted, said):
    problems = kubernetes_upgrade_problems(_running(*running), wanted)
    assert len(problems) == 1 and said in problems[0], problems


def test_a_downgrade_of_one_minor_when_asked_for():
    running = _running("v1.37.0", "v1.37.0", "v1.36.0")
    assert kubernetes_upgrade_problems(running, "v1.36.3", allow_downgrade=True) == []
    assert kubernetes_upgrade_problems(_running("v1.37.0"), "v1.35.0", allow_downgrade=True) != []


def test_a_replica_whose_process_is_older_than_its_binary_takes_only_that_binary():
    running = _running("v1.37.0", "v1.37.0", "v1.37.0")
    problems = kubernetes_upgrade_problems(running, "v1.38.0", restart_pending=["k-master-c"])
    assert problems == ["k-master-c runs a kube-apiserver process older than its binary (v1.37.0): a run stopped before it "
                        "restarted it. Finish that run first (-e kubernetes_version=v1.37.0)"]
    assert kubernetes_upgrade_problems(running, "v1.37.0", restart_pending=["k-master-c"]) == []


def test_the_replicas_to_change():
    running = _running("v1.37.0-kubeha-lab-standin", "v1.36.0", "")
    assert kubernetes_versions_to_change(running, "v1.37.0") == ["k-master-c", "k-master-d"]
    assert kubernetes_versions_to_change(running, "v1.36.0") == ["k-master", "k-master-d"]
    # A pre-release is not its release, either way; a vendor's build is.
    assert kubernetes_versions_to_change(_running("v1.37.0-rc.1", "v1.37.0-gke.2"), "v1.37.0") == ["k-master"]
    assert kubernetes_versions_to_change(_running("v1.37.0"), "v1.37.0-rc.1") == ["k-master"]


def _etcd(*versions, label="etcd"):
    return {"label": label, "members": [{"name": name, "version": version}
                                        for name, version in zip(["k-master", "k-master-c", "k-master-d"], versions)]}


@pytest.mark.parametrize("clusters, wanted", [
    ([_etcd("3.4.23", "3.4.23", "3.4.23")], "3.5.16"),  # the next minor
    ([_etcd("3.4.23", "3.4.23"), _etcd("3.4.23", "3.4.23", label="events etcd")], "3.4.20"),  # a patch, either way
    ([_etcd("3.5.16", "3.4.23", "3.4.23")], "3.5.16"),  # a stopped upgrade, finished
    ([_etcd("3.5.16", "3.5.16", "3.5.16")], "v3.5.16"),
])
def test_an_etcd_upgrade_allowed(clusters, wanted):
    assert etcd_upgrade_problems(clusters, wanted) == []


@pytest.mark.parametrize("clusters, wanted, said", [
    ([_etcd("3.4.23", "3.4.23", "3.4.23")], "3.6.0",
     "the etcd members run k-master, k-master-c, k-master-d (3.4.23), and this run would install 3.6.0: etcd is upgraded "
     "one minor at a time. Upgrade to a release of 3.5 first"),
    ([_etcd("3.5.16", "3.4.23", "3.4.23")], "3.6.0",
     "the etcd members run k-master-c, k-master-d (3.4.23); k-master (3.5.16), and this run would install 3.6.0: every "
     "member runs the same minor before the next one. Finish the upgrade to 3.5 first"),
    ([_etcd("3.5.16", "3.5.16", "3.5.16")], "3.4.23", "etcd does not go back to an older minor"),
    ([_etcd("3.5.16", "3.4.23", "3.4.23")], "3.4.23", "etcd does not go back to an older minor"),
    ([_etcd("3.4.23", "", "3.4.23", label="events etcd")], "3.5.16",
     "events etcd member k-master-c says no version"),
    ([_etcd("3.4.23")], "3.5", "etcd_version is 3.5, not an etcd release such as 3.5.16"),
    ([_etcd("3.4.23")], "4.0.0", "does not move etcd between major versions"),
])
def test_an_etcd_upgrade_refused(clusters, wanted, said):
    problems = etcd_upgrade_problems(clusters, wanted)
    assert len(problems) == 1 and said in problems[0], problems


def test_the_etcd_members_to_change():
    clusters = [_etcd("3.4.23", "3.4.23"), _etcd("3.4.23", "3.5.16", label="events etcd")]
    clusters[0]["members"].reverse()  # etcd lists its members by ID
    assert etcd_versions_to_change(clusters, "3.5.16") == ["etcd k-master", "etcd k-master-c", "events etcd k-master"]


def test_a_member_is_added_or_converged_with_the_clusters_etcd_minor_only():
    assert etcd_version_problems([_etcd("3.4.23", "3.4.23"), _etcd("3.4.23", label="events etcd")], "3.4.20") == []
    assert etcd_version_problems([_etcd("3.4.23", "")], "3.4.23") == []
    # An unfinished upgrade: the newer minor joins (a replica recovered meanwhile), the older is refused.
    assert etcd_version_problems([_etcd("3.5.16", "3.4.23")], "3.5.16") == []
    assert etcd_version_problems([_etcd("3.5.16", "3.4.23")], "3.4.23") == [
        "the etcd members run 3.4.23, 3.5.16, and this run would install etcd 3.4.23: a member is not added or converged "
        "with another minor than its cluster's newest. Give the newest (-e etcd_version=3.5.16)"]
    assert etcd_version_problems([_etcd("3.5.16", "3.5.16"), _etcd("3.5.16", label="events etcd")], "3.4.23") == [
        "the etcd members run 3.5.16, and this run would install etcd 3.4.23: a member is not added or converged with "
        "another minor than its cluster's newest. Give its version (-e etcd_version=3.5.16)",
        "the events etcd members run 3.5.16, and this run would install etcd 3.4.23: a member is not added or converged "
        "with another minor than its cluster's newest. Give its version (-e etcd_version=3.5.16)"]
    assert etcd_version_problems([_etcd("3.4.23")], "3.5.16")[0].endswith(
        "(-e etcd_version=3.4.23), or move the cluster to 3.5.16 with upgrade first (docs/upgrade.md)")
