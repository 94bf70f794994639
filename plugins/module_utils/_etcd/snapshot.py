# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: etcd v3 snapshots on a replica, checked and rotated.

A snapshot is taken with ``etcdctl snapshot save`` through one member that has a leader, once the directory
has room for it, written under a temporary name of its own, read back with ``snapshot status`` (of ``etcdutl``
where it is installed, as etcd 3.6 has it there only; else of ``etcdctl``), and only then given its final name
``PREFIX-YYYYmmddTHHMMSSZ.db`` (mode 0600), so a snapshot under that name is always a whole one. The oldest
beyond ``keep`` are deleted afterwards. Standard library only: this runs on the replicas.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
import time
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import EtcdClient, EtcdError
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.cluster import Status

#: Runs a command with extra environment variables: (argv, env) -> (rc, stdout, stderr).
Runner = t.Callable[[t.Sequence[str], t.Mapping[str, str]], t.Tuple[int, str, str]]

PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
STAMP = "%Y%m%dT%H%M%SZ"
#: Free space a snapshot needs beyond the member's database size (etcd's dbSize, which the file about matches).
MARGIN = 64 * 1024 * 1024
#: A temporary file older than this is what a run that was killed left behind.
STALE_SECONDS = 3600


class Request(t.NamedTuple):
    dest: str
    prefix: str
    keep: int
    etcdctl: str
    #: What reads a snapshot back (``etcdutl`` or ``etcdctl``).
    reader: str


def reader_for(etcdctl: str) -> str:
    """``etcdutl`` next to etcdctl (etcd 3.5 and later ship it; 3.6 reads snapshots with it only), else etcdctl."""
    etcdutl = os.path.join(os.path.dirname(os.path.realpath(etcdctl)), "etcdutl")
    return etcdutl if os.access(etcdutl, os.X_OK) else etcdctl


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
    return Request(dest, params["prefix"], params["keep"], etcdctl, reader_for(etcdctl))


def existing(dest: str, prefix: str) -> list[str]:
    """The snapshots of ``prefix`` in ``dest``, oldest first."""
    pattern = re.compile(r"^%s-\d{8}T\d{6}Z\.db$" % re.escape(prefix))
    try:
        names = os.listdir(dest)
    except FileNotFoundError:
        return []
    return [os.path.join(dest, n) for n in sorted(names) if pattern.match(n)]


def pick_endpoint(client: EtcdClient) -> tuple[str, Status]:
    """The first configured endpoint whose member answers and has a leader, and what it said."""
    problems = []
    for url in client.connection.endpoints:
        try:
            status = Status.from_api(client.status(url))
        except EtcdError as exc:
            problems.append(str(exc))
            continue
        if status.leader:
            return url, status
        problems.append("%s has no leader" % url)
    raise EtcdError("no etcd endpoint can take a snapshot: %s" % "; ".join(problems), unreachable=True)


def etcdctl_connection(client: EtcdClient, url: str, etcdctl: str) -> list[str]:
    conn = client.connection
    argv = [etcdctl, "--endpoints", url, "--dial-timeout", "%ds" % max(1, int(conn.timeout))]
    # etcdctl wants --key with --cert; the modules take a key inside the certificate's file too.
    key = conn.client_key or conn.client_cert
    for flag, value in (("--cacert", conn.ca_cert), ("--cert", conn.client_cert), ("--key", key)):
        if value:
            argv += [flag, value]
    return argv


def read_status(reader: str, path: str, run: Runner, what: str = "cannot be read back") -> dict[str, t.Any]:
    """The hash, revision and number of keys of the snapshot ``path``, as ``reader snapshot status`` reads them; an
    EtcdError saying that it ``what`` otherwise."""
    rc, out, err = run([reader, "snapshot", "status", path, "--write-out", "json"], {"ETCDCTL_API": "3"})
    try:
        status = json.loads(out) if rc == 0 else None
        return {"hash": int(status["hash"]), "revision": int(status["revision"]), "total_keys": int(status["totalKey"])}
    except (ValueError, TypeError, KeyError):
        raise EtcdError("the snapshot %s %s (%s snapshot status: %s)"
                        % (path, what, os.path.basename(reader), (err or out).strip() or "rc %d" % rc)) from None


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _sweep(dest: str, prefix: str, now: float) -> None:
    """Delete the temporary files that runs which were killed left behind."""
    for name in os.listdir(dest):
        path = os.path.join(dest, name)
        if name.startswith(".%s-" % prefix) and ".tmp" in name and now - os.path.getmtime(path) > STALE_SECONDS:
            _remove(path)


def _room(dest: str, status: Status) -> None:
    stats = os.statvfs(dest)
    free = stats.f_bavail * stats.f_frsize
    needed = status.db_size + MARGIN
    if free < needed:
        raise EtcdError("%s has %d MiB free, and a snapshot of this etcd (%d MiB) needs about %d MiB: free some space "
                        "(or lower keep), then run again" % (dest, free >> 20, status.db_size >> 20, needed >> 20))


def take(client: EtcdClient, request: Request, run: Runner, now: datetime.datetime,
         check_mode: bool = False) -> dict[str, t.Any]:
    """Take, check and keep one snapshot; delete the oldest beyond ``keep``. The result of the module."""
    url, status = pick_endpoint(client)
    path = os.path.join(request.dest, "%s-%s.db" % (request.prefix, now.strftime(STAMP)))
    before = existing(request.dest, request.prefix)
    removed = (before + [path])[:-request.keep]
    snapshot: dict[str, t.Any] = {"path": path, "endpoint": url, "taken_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    diff = {"before": {"snapshots": before}, "after": {"snapshots": [p for p in before + [path] if p not in removed]}}
    if check_mode:
        return {"changed": True, "snapshot": snapshot, "removed": removed, "diff": diff, "warnings": []}
    os.makedirs(request.dest, mode=0o700, exist_ok=True)
    _sweep(request.dest, request.prefix, time.time())
    _room(request.dest, status)
    # A name of its own, in the same directory (so that the rename below is atomic): two runs never share one.
    handle, partial = tempfile.mkstemp(dir=request.dest, prefix=".%s-" % request.prefix, suffix=".tmp")
    os.close(handle)
    rc, out, err = run(etcdctl_connection(client, url, request.etcdctl) + ["snapshot", "save", partial], {"ETCDCTL_API": "3"})
    if rc != 0:
        _remove(partial, partial + ".part")
        raise EtcdError("etcdctl snapshot save through %s failed: %s" % (url, (err or out).strip() or "rc %d" % rc), url=url)
    try:
        os.chmod(partial, 0o600)
        snapshot.update(read_status(request.reader, partial, run), size=os.path.getsize(partial))
        # link, not rename: a snapshot of the same second is never replaced.
        os.link(partial, path)
    except FileExistsError:
        _remove(partial)
        raise EtcdError("a snapshot named %s exists already (one per second at most)" % path) from None
    except OSError as exc:
        _remove(partial)
        raise EtcdError("the snapshot %s cannot be kept: %s" % (path, exc)) from None
    except EtcdError:
        _remove(partial)
        raise
    _remove(partial)
    # The snapshot is kept: an old one that cannot be deleted is a warning, not a failure.
    warnings = []
    for old in removed:
        try:
            _remove(old)
        except OSError as exc:
            warnings.append("the old snapshot %s could not be deleted: %s" % (old, exc))
    return {"changed": True, "snapshot": snapshot, "removed": removed, "diff": diff, "warnings": warnings}
