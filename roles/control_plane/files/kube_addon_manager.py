#!/bin/sh
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kube-addon-manager of kubeha.gce: keep the manifests of an addons directory in the cluster.

Every --interval seconds, on the replica whose kube-controller-manager holds
the leader lease (kube-system/kube-controller-manager, whose holderIdentity
is this host name followed by an underscore), it runs kubectl on the
manifests (YAML or JSON, subdirectories included) of --addons-dir:

- objects labelled addonmanager.kubernetes.io/mode=EnsureExists are created
  when they are missing, and otherwise left as they are (kubectl create);
- objects labelled addonmanager.kubernetes.io/mode=Reconcile are applied
  (kubectl apply), so a deleted one comes back and a changed field is set
  back to what the file says; then every object of the --prune-types that
  carries that label and was applied by kubectl, but is no longer in any
  file, is deleted. When the files hold no Reconcile object at all, nothing
  is deleted (an empty or unreadable directory must not empty the cluster).

Objects without either label are ignored. On the other replicas it only
looks at the lease (every 10 seconds, or every interval if shorter), so that
replicas do not work against each other, and one of them takes over soon
after the lease moves to its kube-controller-manager. With
--once it makes one pass and exits 0, or 1 when a step failed; otherwise it
runs until stopped, logging to stderr, and a failed step is tried again at
the next pass. It needs python3 (standard library) and kubectl only.

This file is python3 started through /bin/sh, the only shebangs that
ansible-test allows besides one naming python, which Debian lacks.
" 2>/dev/null; exec /usr/bin/python3 "$0" "$@"  # sh: run this file with python3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import typing as t

MODE = "addonmanager.kubernetes.io/mode"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
#: How long one kubectl call may take.
KUBECTL_TIMEOUT = 120
#: Seconds between two looks at the lease while another replica leads (or the interval, if shorter).
STANDBY_POLL = 10.0
#: Types whose Reconcile objects are pruned unless --prune-types says otherwise. Namespaces and volumes are
#: left out on purpose: deleting them deletes what they hold.
PRUNE_TYPES = ("configmaps,secrets,serviceaccounts,services,deployments.apps,daemonsets.apps,statefulsets.apps,"
               "jobs.batch,cronjobs.batch,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,"
               "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io,"
               "storageclasses.storage.k8s.io,priorityclasses.scheduling.k8s.io,"
               "networkpolicies.networking.k8s.io,poddisruptionbudgets.policy")


class KubectlError(Exception):
    """kubectl failed, or said something this program cannot read."""


class Key(t.NamedTuple):
    """What identifies an object: API group, kind, namespace (empty when cluster-scoped) and name."""

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, t.Any]) -> Key:
        api_version = obj.get("apiVersion") or ""
        meta = obj.get("metadata") or {}
        return cls(api_version.rpartition("/")[0], obj.get("kind") or "", meta.get("namespace") or "",
                   meta.get("name") or "")

    def __str__(self) -> str:
        kind = self.kind.lower() + ("." + self.group if self.group else "")
        return "%s %s" % (kind, "%s/%s" % (self.namespace, self.name) if self.namespace else self.name)


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class AddonManager:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.hostname = socket.gethostname()
        self.leading: bool | None = None
        #: resourceVersion of each applied object at the previous pass, to log only what changed.
        self.seen: dict[Key, str] = {}

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [self.options.kubectl, "--kubeconfig=%s" % self.options.kubeconfig] + list(args)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise KubectlError("kubectl %s did not finish within %d s" % (" ".join(args), KUBECTL_TIMEOUT)) from None
        except OSError as exc:
            raise KubectlError("cannot run %s: %s" % (self.options.kubectl, exc)) from None

    @staticmethod
    def decode(answer: subprocess.CompletedProcess[str], what: str) -> list[dict[str, t.Any]]:
        """The objects kubectl printed with -o json (one object, or a List)."""
        try:
            printed = json.loads(answer.stdout) if answer.stdout.strip() else {}
        except ValueError:
            raise KubectlError("%s: kubectl printed no JSON: %s" % (what, answer.stdout[:200])) from None
        if "items" in printed and (printed.get("kind") or "").endswith("List"):
            return list(printed.get("items") or [])
        return [printed] if printed else []

    # -- the leader rule ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Whether this host's kube-controller-manager holds the leader lease (logged when it changes)."""
        if not self.options.leader_check:
            return True
        namespace, _slash, name = self.options.leader_lease.partition("/")
        answer = self.kubectl("get", "lease", name, "--namespace=%s" % namespace, "--ignore-not-found", "-o", "json")
        if answer.returncode != 0:
            raise KubectlError("reading the lease %s: %s" % (self.options.leader_lease, answer.stderr.strip()))
        leases = self.decode(answer, "the lease %s" % self.options.leader_lease)
        holder = ((leases[0].get("spec") or {}).get("holderIdentity") or "") if leases else ""
        leading = holder.startswith(self.hostname + "_")
        if leading != self.leading:
            if leading:
                log("leading: the kube-controller-manager of %s holds the lease %s (%s); managing the addons"
                    % (self.hostname, self.options.leader_lease, holder))
            else:
                log("standing by: the lease %s is held by %s, not by the kube-controller-manager of %s"
                    % (self.options.leader_lease, holder or "nobody", self.hostname))
            self.leading = leading
        return leading

    # -- one pass ----------------------------------------------------------------------------------

    def manifests_present(self) -> bool:
        directory = self.options.addons_dir
        if not os.path.isdir(directory):
            raise KubectlError("the addons directory %s does not exist" % directory)
        for _root, _dirs, files in os.walk(directory):
            if any(name.endswith(MANIFEST_SUFFIXES) for name in files):
                return True
        return False

    def ensure_exists(self) -> None:
        """Create the EnsureExists objects that are missing; those that exist are not touched."""
        answer = self.kubectl("create", "--filename=%s" % self.options.addons_dir, "--recursive",
                              "--selector=%s=EnsureExists" % MODE, "-o", "name")
        for line in answer.stdout.splitlines():
            log("created %s (EnsureExists)" % line.strip())
        if answer.returncode == 0:
            return
        # An object that exists is what EnsureExists expects; warnings of the API server are no failure either.
        problems = [line for line in answer.stderr.splitlines()
                    if line.strip() and "(AlreadyExists)" not in line and "no objects passed to create" not in line
                    and not line.startswith("Warning:")]
        if problems:
            raise KubectlError("creating the EnsureExists addons: %s" % " | ".join(problems))

    def reconcile(self) -> set[Key]:
        """Apply the Reconcile objects; the keys of those applied (empty when the files hold none)."""
        answer = self.kubectl("apply", "--filename=%s" % self.options.addons_dir, "--recursive",
                              "--selector=%s=Reconcile" % MODE, "-o", "json")
        if answer.returncode != 0:
            if "no objects passed to apply" in answer.stderr:
                return set()
            raise KubectlError("applying the Reconcile addons: %s" % " | ".join(answer.stderr.strip().splitlines()))
        applied = {}
        for obj in self.decode(answer, "applying the Reconcile addons"):
            applied[Key.of(obj)] = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        for key, version in sorted(applied.items()):
            if not self.seen:
                log("reconciled %s" % (key,))
            elif self.seen.get(key) != version:
                log("reconciled %s (new or changed since the last pass)" % (key,))
        self.seen = applied
        return set(applied)

    def prune(self, applied: set[Key]) -> None:
        """Delete the Reconcile objects, applied by kubectl, whose manifests are gone."""
        failures = []
        for type_name in self.options.prune_types:
            answer = self.kubectl("get", type_name, "--all-namespaces", "--selector=%s=Reconcile" % MODE, "-o", "json")
            if answer.returncode != 0:
                failures.append("listing %s: %s" % (type_name, answer.stderr.strip()))
                continue
            for obj in self.decode(answer, "listing %s" % type_name):
                key = Key.of(obj)
                annotations = (obj.get("metadata") or {}).get("annotations") or {}
                if key in applied or LAST_APPLIED not in annotations:
                    continue
                where = ["--namespace=%s" % key.namespace] if key.namespace else []
                gone = self.kubectl("delete", type_name, key.name, *where, "--ignore-not-found", "--wait=false")
                if gone.returncode == 0:
                    log("pruned %s: it is labelled Reconcile and no manifest has it any more" % (key,))
                else:
                    failures.append("deleting %s: %s" % (key, gone.stderr.strip()))
        if failures:
            raise KubectlError("pruning: %s" % " | ".join(failures))

    def run_once(self) -> bool:
        """One pass; False when a step failed (it is logged)."""
        try:
            if not self.is_leader():
                return True
            if not self.manifests_present():
                log("no manifests in %s: nothing to do" % self.options.addons_dir)
                return True
            failed = False
            try:
                self.ensure_exists()
            except KubectlError as exc:
                log("error: %s" % exc)
                failed = True
            applied = self.reconcile()
            if applied:
                self.prune(applied)
            return not failed
        except KubectlError as exc:
            log("error: %s" % exc)
            return False


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError("%r is not true or false" % text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kube-addon-manager", description=(__doc__ or "").split("\n", maxsplit=1)[0])
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of a user allowed to manage the addons")
    parser.add_argument("--kubectl", default="kubectl", help="the kubectl to run (default: the one on the PATH)")
    parser.add_argument("--addons-dir", default="/etc/kubernetes/addons", help="the manifests (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between passes (default: 60)")
    parser.add_argument("--leader-check", type=boolean, default=True,
                        help="work only while this host's kube-controller-manager leads (default: true)")
    parser.add_argument("--leader-lease", default="kube-system/kube-controller-manager",
                        help="NAMESPACE/NAME of that lease (default: %(default)s)")
    parser.add_argument("--prune-types", default=PRUNE_TYPES,
                        help="comma-separated kubectl resource types whose Reconcile objects are pruned")
    parser.add_argument("--once", action="store_true", help="make one pass and exit (0 when it succeeded)")
    options = parser.parse_args(argv)
    options.prune_types = [name.strip() for name in options.prune_types.split(",") if name.strip()]
    if options.interval <= 0:
        parser.error("--interval must be positive")
    if options.leader_lease.count("/") != 1 or not all(options.leader_lease.split("/")):
        parser.error("--leader-lease must be NAMESPACE/NAME")
    return options


def main(argv: list[str]) -> int:
    options = parse(argv)
    manager = AddonManager(options)
    if options.once:
        return 0 if manager.run_once() else 1

    def stop(signum: int, _frame: t.Any) -> None:
        log("stopping on %s" % signal.Signals(signum).name)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("kube-addon-manager on %s: %s every %g s, leader check %s" % (
        manager.hostname, options.addons_dir, options.interval,
        "on the lease " + options.leader_lease if options.leader_check else "off"))
    while True:
        started = time.monotonic()
        manager.run_once()
        # Standing by, it looks at the lease more often, to take over soon after the lease moves here.
        pause = min(options.interval, STANDBY_POLL) if manager.leading is False else options.interval
        time.sleep(max(0.0, pause - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
