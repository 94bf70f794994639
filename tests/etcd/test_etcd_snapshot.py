# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce.etcd_snapshot against a real etcd 3.4 cluster with client TLS: a snapshot that a new member
restored from serves what was written before it; rotation; a member that cannot serve it; one that cannot
be read back."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import time
import typing as t

from conftest import connection, run_module
from etcd_cluster import Cluster

ETCDCTL = shutil.which("etcdctl") or "etcdctl"


def put(cluster: Cluster, via: str, key: str, value: str) -> int:
    """Write through member ``via``; the revision of the write."""
    answer = cluster.call(via, "/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                              "value": base64.b64encode(value.encode()).decode()})
    return int(answer["header"]["revision"])


def snapshot(cluster: Cluster, dest: str, *names: str, check_mode: bool = False, **args: t.Any) -> dict[str, t.Any]:
    return run_module("etcd_snapshot", dict(connection(cluster, *names), dest=dest, prefix="k", **args), check_mode=check_mode)


def test_a_snapshot_is_read_back_kept_and_restores_what_was_written(three, tmp_path):
    dest = str(tmp_path / "snapshots")
    written = put(three, "a", "/registry/before", "kept")

    plan = snapshot(three, dest, check_mode=True)
    assert plan["changed"] is True and not plan.get("failed"), plan
    assert plan["snapshot"]["path"].startswith(dest + "/k-") and plan["removed"] == []
    assert not os.path.exists(dest), "check mode wrote something"

    taken = snapshot(three, dest)
    assert not taken.get("failed"), taken.get("msg")
    shot = taken["snapshot"]
    assert shot["endpoint"] == three.members["a"].client_url
    assert shot["revision"] >= written and shot["total_keys"] >= 1 and shot["size"] == os.path.getsize(shot["path"])
    assert stat.S_IMODE(os.stat(shot["path"]).st_mode) == 0o600
    assert os.listdir(dest) == [os.path.basename(shot["path"])], "a partial file was left"
    # Read back independently of the module.
    status = json.loads(subprocess.run([ETCDCTL, "snapshot", "status", shot["path"], "-w", "json"], check=True,
                                       capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API="3")).stdout)
    assert (status["hash"], status["revision"]) == (shot["hash"], shot["revision"])

    # A one-member cluster restored from it (etcd's own restore) serves the key written before it.
    member = three.member("e")
    subprocess.run([ETCDCTL, "snapshot", "restore", shot["path"], "--name", "e", "--data-dir", member.data_dir,
                    "--initial-cluster", "e=%s" % member.peer_url, "--initial-advertise-peer-urls", member.peer_url],
                   check=True, capture_output=True, env=dict(os.environ, ETCDCTL_API="3"))
    three.start("e", "e=%s" % member.peer_url, "new")
    three.wait_ready("e")
    kvs = three.call("e", "/v3/kv/range", {"key": base64.b64encode(b"/registry/before").decode()})["kvs"]
    assert base64.b64decode(kvs[0]["value"]) == b"kept"


def test_the_oldest_beyond_keep_are_deleted_and_diff_says_which(three, tmp_path):
    dest = str(tmp_path / "snapshots")
    paths = []
    for _round in range(3):
        result = snapshot(three, dest, keep=2)
        assert not result.get("failed"), result.get("msg")
        paths.append(result["snapshot"]["path"])
        time.sleep(1.05)  # one snapshot per second and prefix
    assert result["removed"] == [paths[0]]
    assert result["diff"] == {"before": {"snapshots": paths[:2]}, "after": {"snapshots": paths[1:]}}
    assert sorted(os.listdir(dest)) == [os.path.basename(p) for p in paths[1:]]
    # Another prefix is left alone.
    (tmp_path / "snapshots" / "other-20200101T000000Z.db").write_text("x")
    assert snapshot(three, dest, keep=1)["removed"] == paths[1:]
    assert "other-20200101T000000Z.db" in os.listdir(dest)


def test_taken_through_the_first_member_that_serves_and_refused_when_none_does(three, tmp_path):
    dest = str(tmp_path / "snapshots")
    three.kill("a")
    taken = snapshot(three, dest, "a", "b")
    assert not taken.get("failed"), taken.get("msg")
    assert taken["snapshot"]["endpoint"] == three.members["b"].client_url
    refused = snapshot(three, str(tmp_path / "none"), "a")
    assert refused["failed"] and refused["msg"].startswith("no etcd endpoint can take a snapshot: cannot reach etcd at")
    assert not os.path.exists(str(tmp_path / "none"))


def test_a_snapshot_that_cannot_be_read_back_is_not_kept(three, tmp_path):
    # An etcdctl whose save writes something that is not a snapshot (a disk that lies, a cut stream).
    fake = tmp_path / "etcdctl"
    fake.write_text('#!/bin/sh\nfor last; do :; done\nif [ "$1" = snapshot ] && [ "$2" = status ]; then exec %s "$@"; fi\n'
                    'echo "not a snapshot" > "$last"\n' % ETCDCTL)
    fake.chmod(0o755)
    dest = str(tmp_path / "snapshots")
    result = snapshot(three, dest, etcdctl=str(fake))
    assert result["failed"] and "cannot be read back (etcdctl snapshot status:" in result["msg"], result
    assert os.listdir(dest) == []


def test_no_room_is_refused_before_etcd_is_asked_and_stale_temporary_files_go(three, tmp_path, monkeypatch):
    dest = tmp_path / "snapshots"
    dest.mkdir()
    stale, fresh = dest / ".k-killed.tmp", dest / ".k-running.tmp"
    stale.write_text("left by a killed run")
    fresh.write_text("another run's")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    # A client certificate file that holds its key too, as the etcd modules accept it.
    combined = tmp_path / "client.pem"
    combined.write_text(open(three.pki.client_cert, encoding="utf-8").read() + open(three.pki.client_key, encoding="utf-8").read())
    args = dict(connection(three), dest=str(dest), prefix="k", client_cert=str(combined))
    del args["client_key"]
    taken = run_module("etcd_snapshot", args)
    assert not taken.get("failed"), taken.get("msg")
    assert sorted(os.listdir(dest)) == [".k-running.tmp", os.path.basename(taken["snapshot"]["path"])]

    class Full(t.NamedTuple):
        f_bavail: int = 1
        f_frsize: int = 1024 * 1024

    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    time.sleep(1.05)
    refused = run_module("etcd_snapshot", args)
    assert refused["failed"] and refused["msg"].startswith("%s has 1 MiB free, and a snapshot of this etcd" % dest), refused
    assert len([n for n in os.listdir(dest) if n.endswith(".db")]) == 1
