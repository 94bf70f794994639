# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: an etcd member rebuilt from a snapshot as a new one-member cluster.

After a quorum loss, one replica's etcd is made again from a v3 snapshot with ``snapshot restore`` (of ``etcdutl``
where it is installed, else ``etcdctl``): the restored data directory holds one member (the replica's name and peer
URL) of a new cluster (a new cluster ID, from a new cluster token), so the members of the old cluster can never join
it. The snapshot is read first (``snapshot status``, its sha256); the member's etcd must be stopped. The restore is
written beside the data directory and swapped in by renames on the same file system: the data directory before the
restore is kept as ``DATA_DIR.before-restore-STAMP``. A record ``DATA_DIR.restored.json`` says which snapshot the
data directory was made from (``pending`` while the swap is under way), so a second run with the same snapshot
changes nothing, and one after a run that was killed halfway finishes it. Standard library only: this runs on the
replicas.
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import shutil
import tempfile
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import EtcdClient, EtcdError
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.snapshot import Runner, read_status, reader_for
from ansible_collections.kubeha.gce.plugins.module_utils._stamp import file_sha256

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
STAMP = "%Y%m%dT%H%M%SZ"


class Request(t.NamedTuple):
    snapshot: str
    data_dir: str
    name: str
    peer_url: str
    owner: str
    #: What restores and reads a snapshot (``etcdutl`` or ``etcdctl``).
    tool: str


def request_from_params(params: t.Mapping[str, t.Any], etcdctl: str) -> Request:
    """Check the options before anything is read or written."""
    for option in ("snapshot", "data_dir"):
        if not os.path.isabs(params[option]):
            raise EtcdError("%s must be an absolute path, not %s" % (option, params[option]))
    data_dir = os.path.normpath(params["data_dir"])
    if data_dir in ("/", os.path.dirname(data_dir) + "/") or len(data_dir.strip("/").split("/")) < 2:
        raise EtcdError("data_dir %s is not a directory of its own for etcd's data" % data_dir)
    if not NAME.match(params["name"] or ""):
        raise EtcdError("name %r is not a member name: 1-63 letters, digits, '_', '.' or '-'" % params["name"])
    if not re.match(r"^https?://[^/\s]+:\d+$", params["peer_url"] or ""):
        raise EtcdError("peer_url %r is not a peer URL such as https://10.132.0.5:2380" % params["peer_url"])
    return Request(params["snapshot"], data_dir, params["name"], params["peer_url"], params["owner"],
                   reader_for(etcdctl))


def record_path(data_dir: str) -> str:
    return data_dir + ".restored.json"


def read_record(data_dir: str) -> dict[str, t.Any] | None:
    try:
        with open(record_path(data_dir), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def snapshot_status(request: Request, run: Runner) -> dict[str, t.Any]:
    """The snapshot's hash, revision and number of keys; an EtcdError when it cannot be read."""
    if not os.path.isfile(request.snapshot):
        raise EtcdError("the snapshot %s does not exist on this replica" % request.snapshot)
    return read_status(request.tool, request.snapshot, run, "cannot be read; nothing was changed")


def check_stopped(client: EtcdClient) -> None:
    """Refuse while an etcd answers at the member's client URLs: its data directory must not change under it."""
    for url in client.connection.endpoints:
        if client.connect_error(url) is None:
            raise EtcdError("etcd still answers at %s: stop the member (systemctl stop etcd) before its data directory "
                            "is restored; nothing was changed" % url, url=url)


def _chown_tree(top: str, owner: str) -> None:
    entry = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(top):
        for name in [root] + [os.path.join(root, d) for d in dirs] + [os.path.join(root, f) for f in files]:
            os.chown(name, entry.pw_uid, entry.pw_gid)
    os.chmod(top, 0o700)


def _write_record(data_dir: str, record: t.Mapping[str, t.Any]) -> None:
    parent = os.path.dirname(data_dir)
    handle, partial = tempfile.mkstemp(dir=parent, prefix=".restored-", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out_file:
        json.dump(record, out_file, indent=2, sort_keys=True)
    os.chmod(partial, 0o644)
    os.rename(partial, record_path(data_dir))


def _record_started(request: Request, record: dict[str, t.Any] | None, check_mode: bool,
                    before: dict[str, t.Any]) -> dict[str, t.Any]:
    """Say in the record that the member was started on the data restored from the snapshot (``restored`` to
    ``done``). The snapshot is the one at the path the record names (the file may be gone since)."""
    made = (record is not None and record.get("snapshot") == request.snapshot and record.get("name") == request.name
            and record.get("peer_url") == request.peer_url and record.get("state", "done") in ("restored", "done"))
    if made and record is not None and record.get("state", "done") == "done":
        return {"changed": False, "restored": dict(record), "previous_data_dir": record.get("previous_data_dir"),
                "diff": {"before": before, "after": before}}
    if made and record is not None:
        done = dict(record, state="done")
        if not check_mode:
            _write_record(request.data_dir, done)
        return {"changed": True, "restored": done, "previous_data_dir": record.get("previous_data_dir"),
                "diff": {"before": before, "after": {"data_dir": request.data_dir, "restored_from": done}}}
    if check_mode:
        # After a restore that check mode only predicted.
        return {"changed": True, "restored": dict(record or {}, state="done"), "previous_data_dir": None,
                "diff": {"before": before, "after": {"data_dir": request.data_dir, "restored_from": "(the restore)"}}}
    raise EtcdError("%s was not restored from %s as member %s at %s, so its start cannot be recorded; the record %s "
                    "says %s" % (request.data_dir, request.snapshot, request.name, request.peer_url,
                                 record_path(request.data_dir), json.dumps(record) if record else "nothing"))


def restore(client: EtcdClient, request: Request, run: Runner, now: datetime.datetime,
            check_mode: bool = False, force: bool = False, begin: bool = False,
            started: bool = False) -> dict[str, t.Any]:
    """Restore the member's data directory from the snapshot, unless it was made from it already (``force``: a
    later quorum loss, whatever an earlier restore recorded).

    The record says ``pending`` from before the first rename to after the last: a run killed in between is finished
    by the next one with the same snapshot, which neither moves the data before the restore twice nor keeps a
    half-made directory. With ``begin``, only that record is written (the member may still run): a caller writes it
    before it stops etcd, so that a run killed between the stop and the restore is known to be restoring. The swap
    ends with the record saying ``restored``, until the caller, once it started the member on the data, says so
    with ``started`` (``done``): a run killed in between is known to have stopped the member for this restore.
    """
    digest = file_sha256(request.snapshot) if os.path.isfile(request.snapshot) else None
    record = read_record(request.data_dir)
    same = (record is not None and record.get("sha256") == digest and record.get("name") == request.name
            and record.get("peer_url") == request.peer_url)
    member = os.path.isdir(os.path.join(request.data_dir, "member"))
    before = {"data_dir": request.data_dir, "restored_from": record}
    state = record.get("state", "done") if record is not None else None
    if started:
        return _record_started(request, record, check_mode, before)
    # Swapped by a run stopped before etcd was started on it: that restore's own tail, not one to make again, even
    # with force (a later quorum loss finds the record done).
    if same and member and (state == "restored" or (state == "done" and not force)):
        return {"changed": False, "restored": dict(record), "previous_data_dir": record.get("previous_data_dir"),
                "diff": {"before": before, "after": before}}
    # A restore of this snapshot that was stopped halfway: its record says where the data before it went.
    resumed = same and record.get("state") == "pending"
    status = snapshot_status(request, run)
    stamp = now.strftime(STAMP)
    if resumed and record is not None:
        token, previous = record["cluster_token"], record.get("previous_data_dir")
    else:
        # A new cluster token, and so a new cluster ID: the old cluster's members cannot join the restored one.
        token = "kubeha-restored-%s" % stamp.lower()
        previous = "%s.before-restore-%s" % (request.data_dir, stamp) if os.path.exists(request.data_dir) else None
    restored = {"snapshot": request.snapshot, "sha256": digest, "name": request.name, "peer_url": request.peer_url,
                "cluster_token": token, "restored_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "previous_data_dir": previous, "state": "restored", **status}
    diff = {"before": before, "after": {"data_dir": request.data_dir, "restored_from": restored}}
    if begin:
        if resumed and record is not None:
            return {"changed": False, "restored": dict(record), "previous_data_dir": previous,
                    "diff": {"before": before, "after": before}}
        pending = dict(restored, state="pending")
        if not check_mode:
            _write_record(request.data_dir, pending)
        return {"changed": True, "restored": pending, "previous_data_dir": previous,
                "diff": {"before": before, "after": {"data_dir": request.data_dir, "restored_from": pending}}}
    if check_mode:
        return {"changed": True, "restored": restored, "previous_data_dir": previous, "diff": diff}
    check_stopped(client)
    parent = os.path.dirname(request.data_dir)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    # Killed after both renames: the data directory is the restored one; only the record was not finished.
    if resumed and previous and os.path.exists(previous) and member:
        _write_record(request.data_dir, restored)
        return {"changed": True, "restored": restored, "previous_data_dir": previous, "diff": diff}
    _write_record(request.data_dir, dict(restored, state="pending"))
    # Beside the data directory, so that the swap below is a rename on one file system; a name of its own.
    work = tempfile.mkdtemp(dir=parent, prefix=".%s.restoring-" % os.path.basename(request.data_dir))
    target = os.path.join(work, "data")
    try:
        rc, out, err = run([request.tool, "snapshot", "restore", request.snapshot, "--name", request.name,
                            "--initial-cluster", "%s=%s" % (request.name, request.peer_url),
                            "--initial-cluster-token", token, "--initial-advertise-peer-urls", request.peer_url,
                            "--data-dir", target], {"ETCDCTL_API": "3"})
        if rc != 0:
            raise EtcdError("%s snapshot restore of %s failed: %s; the data directory was not changed"
                            % (os.path.basename(request.tool), request.snapshot, (err or out).strip() or "rc %d" % rc))
        _chown_tree(target, request.owner)
        if os.path.exists(request.data_dir):
            if previous is None or os.path.exists(previous):
                previous = "%s.before-restore-%s" % (request.data_dir, stamp)
                restored["previous_data_dir"] = previous
                _write_record(request.data_dir, dict(restored, state="pending"))
            os.rename(request.data_dir, previous)
        os.rename(target, request.data_dir)
    except OSError as exc:
        raise EtcdError("restoring %s into %s failed: %s%s" % (
            request.snapshot, request.data_dir, exc,
            "; the data directory before the restore is %s" % previous if previous and os.path.exists(previous) else ""
        )) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _write_record(request.data_dir, restored)
    return {"changed": True, "restored": restored, "previous_data_dir": previous, "diff": diff}
