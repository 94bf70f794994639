# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The control_plane role's kube-addon-manager, run for real against the kube-apiserver stand-in on a real TLS etcd.

The script (files/kube_addon_manager.py, run by its path as the unit runs its installed copy), its kubeconfig
and the addon it ships are the role's own files (the templates rendered with the role's variables); the client
certificate comes from replica_pki; kubectl is the real one. Every process started here is killed by PID at
the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import typing as t

import jinja2
import pytest

from conftest import KUBECTL, REPO, REPORT
from etcd_cluster import free_port
# control_plane_pki and processes_fixture are the fixtures cp and procs.
from test_standins import (  # noqa: F401  pylint: disable=unused-import
    LEASE_PATH,
    ControlPlanePki,
    Processes,
    _replica_pki,
    _write,
    control_plane_pki,
    https,
    lease,
    processes_fixture,
    start_apiserver,
    wait_for,
)

SCRIPT = os.path.join(REPO, "roles", "control_plane", "files", "kube_addon_manager.py")
TEMPLATES = os.path.join(REPO, "roles", "control_plane", "templates")
ADMIN = "apiserver-kubelet-client"  # O=system:masters, to look at and change the cluster as a user would
CM_PATH = "/api/v1/namespaces/kube-system/configmaps"
#: A short list keeps each pass fast; the role passes its whole list.
PRUNE_TYPES = "configmaps,secrets,clusterroles.rbac.authorization.k8s.io"
ME = socket.gethostname()


def render(template: str, **values: t.Any) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    return environment.get_template(template).render(ansible_managed="Ansible managed", **values)


def configmap(name: str, mode: str | None, data: dict[str, str], namespace: str = "kube-system") -> str:
    """A manifest in YAML, as operators write them."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: %s" % name, "  namespace: %s" % namespace]
    if mode:
        lines += ["  labels:", "    addonmanager.kubernetes.io/mode: %s" % mode]
    lines += ["data:"] + ["  %s: %s" % (key, json.dumps(value)) for key, value in data.items()]
    return "\n".join(lines) + "\n"


class Cluster:
    """One API server with the addon manager's credentials and an addons directory."""

    def __init__(self, cp: ControlPlanePki, port: int, directory: str) -> None:
        self.cp, self.port, self.directory = cp, port, directory
        pki_dir = os.path.join(directory, "pki")
        os.makedirs(pki_dir)
        leaf = _replica_pki({"ca": cp.ca, "leaves": ["addon-manager"]})["leaves"]["addon-manager"]
        _write(os.path.join(pki_dir, "ca.crt"), cp.ca["cluster"]["cert"], 0o644)
        _write(os.path.join(pki_dir, "addon-manager.crt"), leaf["cert"], 0o644)
        _write(os.path.join(pki_dir, "addon-manager.key"), leaf["key"])
        self.kubeconfig = _write(os.path.join(directory, "addon-manager.conf"), render(
            "addon-manager.conf.j2", control_plane_secure_port=port, control_plane_pki_dir=pki_dir))
        self.addons = os.path.join(directory, "addons")
        os.makedirs(self.addons, mode=0o700)

    def args(self, *extra: str) -> list[str]:
        return ["--kubeconfig=%s" % self.kubeconfig, "--kubectl=%s" % KUBECTL,
                "--addons-dir=%s" % self.addons, "--prune-types=%s" % PRUNE_TYPES] + list(extra)

    def run_once(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SCRIPT] + self.args("--once", *extra), capture_output=True, text=True, timeout=60,
                              check=False)

    def addon(self, filename: str, text: str) -> None:
        _write(os.path.join(self.addons, filename), text, 0o600)

    def drop(self, filename: str) -> None:
        os.unlink(os.path.join(self.addons, filename))

    def hold_lease(self, holder: str) -> None:
        """The controller-manager lease, held by ``holder`` (as the kube-controller-manager writes it)."""
        current = https(self.port, LEASE_PATH + "/kube-controller-manager", self.cp, ADMIN)
        if current.status == 404:
            created = https(self.port, LEASE_PATH, self.cp, ADMIN, "POST", lease("kube-controller-manager", holder))
            assert created.status == 201, created
            return
        obj = current.json()
        obj["spec"]["holderIdentity"] = holder
        assert https(self.port, LEASE_PATH + "/kube-controller-manager", self.cp, ADMIN, "PUT", obj).status == 200

    def configmaps(self) -> dict[str, dict[str, t.Any]]:
        answer = https(self.port, CM_PATH, self.cp, ADMIN)
        assert answer.status == 200, answer
        return {item["metadata"]["name"]: item for item in answer.json()["items"]}

    def edit(self, name: str, data: dict[str, str]) -> None:
        """What a user does with kubectl edit: change the data of a configmap."""
        obj = self.configmaps()[name]
        obj["data"] = data
        assert https(self.port, "%s/%s" % (CM_PATH, name), self.cp, ADMIN, "PUT", obj).status == 200

    def delete(self, name: str) -> None:
        assert https(self.port, "%s/%s" % (CM_PATH, name), self.cp, ADMIN, "DELETE").status == 200


@pytest.fixture(name="cluster")
def cluster_fixture(etcd: t.Any, cp: ControlPlanePki, procs: Processes, tmp_path: t.Any) -> Cluster:
    port = start_apiserver(procs, cp, etcd.new(["a"]))[1]
    return Cluster(cp, port, str(tmp_path))


def passed(answer: subprocess.CompletedProcess[str]) -> str:
    assert answer.returncode == 0, "kube-addon-manager --once exited %d:\n%s" % (answer.returncode, answer.stderr)
    return answer.stderr


def test_the_addon_manager_reconciles_ensures_and_prunes_only_while_its_host_leads(cluster):
    cluster.addon("reconciled.yaml", configmap("reconciled", "Reconcile", {"replicas": "3", "zone": "b"}))
    cluster.addon("recreated.yaml", configmap("recreated", "Reconcile", {"a": "1"}))
    cluster.addon("dropped.yaml", configmap("dropped", "Reconcile", {"a": "1"}))
    cluster.addon("ensured.yaml", configmap("ensured", "EnsureExists", {"setting": "default"}))
    cluster.addon("unlabelled.yaml", configmap("unlabelled", None, {"a": "1"}))
    cluster.addon("kubeha-cluster.yaml", render("kubeha-cluster.yaml.j2", control_plane_cluster_name="lab"))

    # No lease yet (no kube-controller-manager leads): nothing is done.
    log = passed(cluster.run_once())
    assert cluster.configmaps() == {} and "held by nobody" in log, log
    # Another replica's kube-controller-manager leads: nothing is done either.
    cluster.hold_lease("%s-elsewhere_0f3c" % ME)
    log = passed(cluster.run_once())
    assert cluster.configmaps() == {}
    assert "standing by: the lease kube-system/kube-controller-manager is held by %s-elsewhere_0f3c" % ME in log

    # This host leads: the Reconcile and EnsureExists objects are made; unlabelled manifests are not addons.
    cluster.hold_lease("%s_6a1f9d52-8d36-4a57-a8de-3c0b8f8e0c11" % ME)
    log = passed(cluster.run_once())
    made = cluster.configmaps()
    assert sorted(made) == ["dropped", "ensured", "kubeha-cluster", "reconciled", "recreated"], log
    assert made["reconciled"]["data"] == {"replicas": "3", "zone": "b"}
    assert made["kubeha-cluster"]["data"] == {"cluster-name": "lab"}
    assert made["kubeha-cluster"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubeha.gce"
    assert "leading" in log and "created configmap/ensured (EnsureExists)" in log
    assert "reconciled configmap kube-system/reconciled" in log

    # A second pass changes nothing.
    passed(cluster.run_once())
    versions = {name: obj["metadata"]["resourceVersion"] for name, obj in cluster.configmaps().items()}
    assert versions == {name: obj["metadata"]["resourceVersion"] for name, obj in made.items()}

    # Users change things: Reconcile objects come back as written, an EnsureExists one keeps the user's edit.
    cluster.edit("reconciled", {"replicas": "9", "zone": "b", "extra": "x"})
    cluster.delete("recreated")
    cluster.edit("ensured", {"setting": "mine"})
    log = passed(cluster.run_once())
    now = cluster.configmaps()
    assert now["reconciled"]["data"]["replicas"] == "3", now["reconciled"]
    assert "recreated" in now and now["recreated"]["metadata"]["uid"] != made["recreated"]["metadata"]["uid"]
    assert now["ensured"]["data"] == {"setting": "mine"}
    assert "reconciled configmap kube-system/recreated" in log, log

    # A Reconcile object whose manifest is gone is deleted; one that kubectl never applied is not.
    hand_made = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}, "metadata": {
        "name": "hand-made", "labels": {"addonmanager.kubernetes.io/mode": "Reconcile"}}}
    assert https(cluster.port, CM_PATH, cluster.cp, ADMIN, "POST", hand_made).status == 201
    cluster.drop("dropped.yaml")
    log = passed(cluster.run_once())
    assert sorted(cluster.configmaps()) == ["ensured", "hand-made", "kubeha-cluster", "reconciled", "recreated"]
    assert "pruned configmap kube-system/dropped" in log, log

    # Without any Reconcile manifest nothing is pruned (an emptied directory must not empty the cluster).
    for name in ("reconciled.yaml", "recreated.yaml", "kubeha-cluster.yaml"):
        cluster.drop(name)
    passed(cluster.run_once())
    assert sorted(cluster.configmaps()) == ["ensured", "hand-made", "kubeha-cluster", "reconciled", "recreated"]

    # The lease moves to another replica: deleted objects stay deleted here.
    cluster.addon("recreated.yaml", configmap("recreated", "Reconcile", {"a": "1"}))
    cluster.hold_lease("%s-elsewhere_77aa" % ME)
    cluster.delete("recreated")
    log = passed(cluster.run_once())
    assert "recreated" not in cluster.configmaps() and "standing by" in log

    # With the leader check off every replica works.
    passed(cluster.run_once("--leader-check=false"))
    assert "recreated" in cluster.configmaps()


def test_the_addon_manager_reports_failures_and_goes_on(cluster):
    cluster.addon("widget.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  labels:\n"
                  "    addonmanager.kubernetes.io/mode: Reconcile\n")  # a kind the API server does not serve
    cluster.addon("reconciled.yaml", configmap("reconciled", "Reconcile", {"a": "1"}))
    cluster.addon("ensured.yaml", configmap("ensured", "EnsureExists", {"setting": "default"}))
    cluster.hold_lease("%s_1" % ME)
    answer = cluster.run_once()
    assert answer.returncode == 1 and "error: applying the Reconcile addons:" in answer.stderr, answer.stderr
    assert 'no matches for kind "Widget" in version "example.com/v1"' in answer.stderr
    # What can be done is done; pruning waits for a pass in which every Reconcile object was applied.
    assert sorted(cluster.configmaps()) == ["ensured", "reconciled"]
    assert "pruned" not in answer.stderr

    # An API server that does not answer fails the pass, naming what was being done.
    down = Cluster(cluster.cp, free_port(), os.path.join(cluster.directory, "down"))
    answer = down.run_once()
    assert answer.returncode == 1 and "error: reading the lease kube-system/kube-controller-manager" in answer.stderr
    assert "refused" in answer.stderr, answer.stderr
    # A missing directory is an error too, not an empty set of addons.
    answer = cluster.run_once("--addons-dir=%s" % os.path.join(cluster.directory, "nowhere"))
    assert answer.returncode == 1 and "does not exist" in answer.stderr
    # The command line is checked.
    answer = subprocess.run([SCRIPT] + cluster.args("--leader-lease=kube-controller-manager"), capture_output=True,
                            text=True, timeout=30, check=False)
    assert answer.returncode == 2 and "--leader-lease must be NAMESPACE/NAME" in answer.stderr


def start_service(cluster, procs, *args):
    """The addon manager as its unit runs it, in a loop; its output goes to a log that ``procs`` keeps."""
    log_path = os.path.join(cluster.directory, "kube-addon-manager.log")
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([SCRIPT] + cluster.args(*args),  # pylint: disable=consider-using-with
                                   stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    procs.started.append((process, log_path))
    return process


def test_the_addon_manager_runs_as_a_service_until_stopped(cluster, procs):
    cluster.addon("reconciled.yaml", configmap("reconciled", "Reconcile", {"a": "1"}))
    cluster.hold_lease("%s_1" % ME)
    process = start_service(cluster, procs, "--interval=0.5")
    wait_for(lambda: "reconciled" in cluster.configmaps(), 20, "the addon applied")
    # Delete it once that pass is over, so that a later pass (not this one) puts it back.
    wait_for(lambda: "reconciled configmap kube-system/reconciled\n" in procs.log(process), 20, "the first pass over")
    cluster.delete("reconciled")
    deleted = time.monotonic()
    wait_for(lambda: "reconciled" in cluster.configmaps(), 20, "the addon applied again")
    REPORT.append("kube-addon-manager: a deleted Reconcile addon back after %.1fs (interval 0.5s)"
                  % (time.monotonic() - deleted))
    # The object is back as soon as kubectl has applied it, a moment before the pass logs it: stop only after that.
    wait_for(lambda: "(new or changed since the last pass)" in procs.log(process), 20, "the second pass logged")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    log = procs.log(process)
    assert "every 0.5 s, leader check on the lease kube-system/kube-controller-manager" in log, log
    assert "reconciled configmap kube-system/reconciled (new or changed since the last pass)" in log
    assert "stopping on SIGTERM" in log


def test_a_standing_by_addon_manager_takes_over_soon_after_the_lease_moves_to_its_host(cluster, procs):
    cluster.addon("reconciled.yaml", configmap("reconciled", "Reconcile", {"a": "1"}))
    cluster.hold_lease("%s-elsewhere_1" % ME)
    process = start_service(cluster, procs, "--interval=60")
    wait_for(lambda: "standing by" in procs.log(process), 20, "the addon manager standing by")
    cluster.hold_lease("%s_2" % ME)
    moved = time.monotonic()
    # It looks at the lease every 10 s while standing by, not every interval (60 s); 10 s more for a loaded host,
    # still well under the interval.
    wait_for(lambda: "reconciled" in cluster.configmaps(), 20, "the addon applied after the lease moved here")
    REPORT.append("kube-addon-manager: took over %.1fs after the lease moved to its host (interval 60s)"
                  % (time.monotonic() - moved))
    assert "leading: the kube-controller-manager of %s holds the lease" % ME in procs.log(process)
