# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kubeha.gce.plugins.filter.binaries import (
    FilterModule,
    binaries_cache_problems,
    kubernetes_version_problems,
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
    assert set(FilterModule().filters()) == {"kubernetes_version_problems", "binaries_cache_problems"}
