# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: etcd v3 snapshots on a replica, checked and rotated.

A snapshot is taken with ``etcdctl snapshot save`` through one member that has a leader, written under a
temporary name, read back with ``etcdctl snapshot status`` (its hash and revision), and only then given its
final name ``PREFIX-YYYYmmddTHHMMSSZ.db`` (mode 0600), so a snapshot under that name is always a whole one.
The oldest beyond ``keep`` are deleted afterwards. Standard library only: this runs on the replicas.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import EtcdClient, EtcdError
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.cluster import Status

#: Runs a command with extra environment variables: (argv, env) -> (rc, stdout, stderr).
Runner = t.Callable[[t.Sequence[str], t.Mapping[str, str]], t.Tuple[int, str, str]]

PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
STAMP = "%Y%m%dT%H%M%SZ"


class Request(t.NamedTuple):
    dest: str
    prefix: str
    keep: int
    etcdctl: str


def request_from_params(params: t.Mapping[str, t.Any], etcdctl: str) -> Request:
    """Check the snapshot options before anything is read or written."""
    dest = params["dest"]
    if not os.path.isabs(dest):
        raise EtcdError("dest must be an absolute directory, not %s" % dest)
    if not PREFIX.match(params["prefix"] or ""):
        raise EtcdError("prefix %r must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
                        % params["prefix"])
    if params["keep"] < 1:
        raise EtcdError("keep must be at least 1, not %d" % params["keep"])
    return Request(dest, params["prefix"], params["keep"], etcdctl)


def existing(dest: str, prefix: str) -> list[str]:
    """The snapshots of ``prefix`` in ``dest``, oldest first."""
    pattern = re.compile(r"^%s-\d{8}T\d{6}Z\.db$" % re.escape(prefix))
    try:
        names = os.listdir(dest)
    except FileNotFoundError:
        return []
    return [os.path.join(dest, n) for n in sorted(names) if pattern.match(n)]


def pick_endpoint(client: EtcdClient) -> str:
    """The first configured endpoint whose member answers and has a leader."""
    problems = []
    for url in client.connection.endpoints:
        try:
            status = Status.from_api(client.status(url))
        except EtcdError as exc:
            problems.append(str(exc))
            continue
        if status.leader:
            return url
        problems.append("%s has no leader" % url)
    raise EtcdError("no etcd endpoint can take a snapshot: %s" % "; ".join(problems), unreachable=True)


def etcdctl_connection(client: EtcdClient, url: str, etcdctl: str) -> list[str]:
    conn = client.connection
    argv = [etcdctl, "--endpoints", url, "--dial-timeout", "%ds" % max(1, int(conn.timeout))]
    for flag, value in (("--cacert", conn.ca_cert), ("--cert", conn.client_cert), ("--key", conn.client_key)):
        if value:
            argv += [flag, value]
    return argv


def _status(request: Request, path: str, run: Runner) -> dict[str, t.Any]:
    rc, out, err = run([request.etcdctl, "snapshot", "status", path, "--write-out", "json"], {"ETCDCTL_API": "3"})
    try:
        status = json.loads(out) if rc == 0 else None
        return {"hash": int(status["hash"]), "revision": int(status["revision"]), "total_keys": int(status["totalKey"])}
    except (ValueError, TypeError, KeyError):
        raise EtcdError("the snapshot %s cannot be read back (etcdctl snapshot status: %s)"
                        % (path, (err or out).strip() or "rc %d" % rc)) from None


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def take(client: EtcdClient, request: Request, run: Runner, now: datetime.datetime,
         check_mode: bool = False) -> dict[str, t.Any]:
    """Take, check and keep one snapshot; delete the oldest beyond ``keep``. The result of the module."""
    url = pick_endpoint(client)
    path = os.path.join(request.dest, "%s-%s.db" % (request.prefix, now.strftime(STAMP)))
    if os.path.exists(path):
        raise EtcdError("a snapshot named %s exists already (one per second at most)" % path)
    before = existing(request.dest, request.prefix)
    removed = (before + [path])[:-request.keep]
    snapshot: dict[str, t.Any] = {"path": path, "endpoint": url, "taken_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    diff = {"before": {"snapshots": before}, "after": {"snapshots": [p for p in before + [path] if p not in removed]}}
    if check_mode:
        return {"changed": True, "snapshot": snapshot, "removed": removed, "diff": diff}
    os.makedirs(request.dest, mode=0o700, exist_ok=True)
    partial = path + ".tmp"
    rc, out, err = run(etcdctl_connection(client, url, request.etcdctl) + ["snapshot", "save", partial], {"ETCDCTL_API": "3"})
    if rc != 0:
        _remove(partial, partial + ".part")
        raise EtcdError("etcdctl snapshot save through %s failed: %s" % (url, (err or out).strip() or "rc %d" % rc), url=url)
    try:
        os.chmod(partial, 0o600)
        snapshot.update(_status(request, partial, run), size=os.path.getsize(partial))
    except OSError as exc:
        _remove(partial)
        raise EtcdError("the snapshot %s cannot be kept: %s" % (partial, exc)) from None
    except EtcdError:
        _remove(partial)
        raise
    os.rename(partial, path)
    _remove(*removed)
    return {"changed": True, "snapshot": snapshot, "removed": removed, "diff": diff}
