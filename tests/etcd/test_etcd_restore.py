# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce.etcd_restore against a real etcd 3.4 cluster with TLS that loses its majority: the survivor is rebuilt
from a snapshot as a one-member cluster with a new cluster ID, serves what was written before the snapshot, and a
member of the old cluster that comes back cannot join it."""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import time

from conftest import connection, run_module
from etcd_cluster import Cluster


def put(cluster: Cluster, via: str, key: str, value: str) -> None:
    cluster.call(via, "/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                     "value": base64.b64encode(value.encode()).decode()})


def get(cluster: Cluster, via: str, key: str) -> str | None:
    kvs = cluster.call(via, "/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()}).get("kvs") or []
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def restore(cluster: Cluster, name: str, snapshot: str, check_mode: bool = False, **args):
    member = cluster.members[name]
    options = dict(connection(cluster, name), snapshot=snapshot, data_dir=member.data_dir, name=name,
                   peer_url=member.peer_url, owner=pwd.getpwuid(os.getuid()).pw_name, **args)
    return run_module("etcd_restore", options, check_mode=check_mode)


def test_the_survivor_of_a_lost_majority_is_rebuilt_from_a_snapshot(three, tmp_path):
    put(three, "a", "/registry/before", "kept")
    shot = run_module("etcd_snapshot", dict(connection(three), dest=str(tmp_path / "snapshots"), prefix="k"))
    assert not shot.get("failed"), shot.get("msg")
    path = shot["snapshot"]["path"]
    put(three, "a", "/registry/after", "lost with the majority")
    old_id = three.call("a", "/v3/cluster/member/list", {})["header"]["cluster_id"]

    # Two of three are gone: a has no quorum. Its etcd runs on: the restore refuses to touch its data under it.
    three.kill("b")
    three.kill("c")
    refused = restore(three, "a", path)
    assert refused["failed"] is True and "etcd still answers at %s" % three.members["a"].client_url in refused["msg"]
    assert not os.path.exists(three.members["a"].data_dir + ".restored.json")

    three.kill("a")
    plan = restore(three, "a", path, check_mode=True)
    assert plan["changed"] is True and plan["restored"]["revision"] == shot["snapshot"]["revision"], plan
    assert not os.path.exists(three.members["a"].data_dir + ".restored.json"), "check mode wrote something"

    done = restore(three, "a", path)
    assert done["changed"] is True and not done.get("failed"), done.get("msg")
    previous = done["previous_data_dir"]
    assert previous.startswith(three.members["a"].data_dir + ".before-restore-") and os.path.isdir(previous + "/member")
    assert done["restored"]["cluster_token"].startswith("kubeha-restored-")
    assert restore(three, "a", path)["changed"] is False, "a second run restored again"

    # Started on the restored data: one member, a new cluster, the data of the snapshot.
    three.start("a", "a=%s" % three.members["a"].peer_url, "new")
    three.wait_ready("a")
    listed = three.call("a", "/v3/cluster/member/list", {})
    assert [m["name"] for m in listed["members"]] == ["a"]
    assert listed["header"]["cluster_id"] != old_id
    assert get(three, "a", "/registry/before") == "kept"
    assert get(three, "a", "/registry/after") is None
    put(three, "a", "/registry/restored", "writable")

    # A member of the old cluster that comes back (its zone returns) is refused by the new one.
    three.start("b", ",".join("%s=%s" % (n, three.members[n].peer_url) for n in "abc"))
    time.sleep(3)
    assert [m["name"] for m in three.call("a", "/v3/cluster/member/list", {})["members"]] == ["a"]
    assert get(three, "a", "/registry/restored") == "writable"
    assert "cluster ID mismatch" in three.tail("a", 200) + three.tail("b", 200)


def test_a_snapshot_that_cannot_be_read_changes_nothing(three, tmp_path):
    three.kill("a")
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a snapshot")
    result = restore(three, "a", str(broken))
    assert result["failed"] is True and "cannot be read" in result["msg"] and "nothing was changed" in result["msg"]
    assert os.path.isdir(three.members["a"].data_dir + "/member")
    assert not [n for n in os.listdir(os.path.dirname(three.members["a"].data_dir)) if "restor" in n]
    missing = restore(three, "a", str(tmp_path / "none.db"))
    assert missing["failed"] is True and "does not exist on this replica" in missing["msg"]


def test_a_restore_stopped_halfway_is_finished_and_force_restores_again(three, tmp_path):
    shot = run_module("etcd_snapshot", dict(connection(three), dest=str(tmp_path / "snapshots"), prefix="k"))
    path = shot["snapshot"]["path"]
    three.kill("a")
    data_dir = three.members["a"].data_dir
    record_file = data_dir + ".restored.json"
    first = restore(three, "a", path)
    assert first["changed"] is True and first["restored"]["state"] == "restored"
    previous = first["previous_data_dir"]
    # Swapped, not yet started: the record says so until the caller says the member runs on the data, once.
    assert restore(three, "a", path)["changed"] is False
    # Not even with force, which is for a later quorum loss: this is the same restore's tail.
    assert restore(three, "a", path, force=True)["changed"] is False
    assert restore(three, "a", path, started=True, check_mode=True)["changed"] is True
    assert json.load(open(record_file, encoding="utf-8"))["state"] == "restored"
    assert restore(three, "a", path, started=True)["restored"]["state"] == "done"
    assert restore(three, "a", path, started=True)["changed"] is False
    assert json.load(open(record_file, encoding="utf-8"))["state"] == "done"

    def pending():
        record = json.load(open(record_file, encoding="utf-8"))
        record["state"] = "pending"
        with open(record_file, "w", encoding="utf-8") as handle:
            json.dump(record, handle)

    # Killed after both renames, before the record said done: only the record is finished.
    pending()
    inode = os.stat(data_dir).st_ino
    finished = restore(three, "a", path)
    assert finished["changed"] is True and os.stat(data_dir).st_ino == inode
    assert finished["previous_data_dir"] == previous and os.path.isdir(previous + "/member")
    # Killed between the renames: the data before the restore is moved already, and is not moved again.
    pending()
    shutil.rmtree(data_dir)
    again = restore(three, "a", path)
    assert again["changed"] is True and os.path.isdir(data_dir + "/member") and again["previous_data_dir"] == previous
    assert json.load(open(record_file, encoding="utf-8"))["state"] == "restored"
    assert [n for n in os.listdir(os.path.dirname(data_dir)) if ".before-restore-" in n] == [os.path.basename(previous)]
    assert restore(three, "a", path)["changed"] is False
    # A later quorum loss, once etcd ran on the restored data, restored from the same file: force restores it
    # again, keeping what it replaces.
    assert restore(three, "a", path, started=True)["changed"] is True
    time.sleep(1.1)
    forced = restore(three, "a", path, force=True)
    assert forced["changed"] is True and forced["previous_data_dir"] != previous
    assert os.path.isdir(forced["previous_data_dir"] + "/member")
    # Killed after it recorded that a restore begins and stopped etcd, before the restore itself: the record says
    # pending, the data is untouched, and the next run restores into the place the record names.
    assert restore(three, "a", path, started=True)["changed"] is True
    time.sleep(1.1)
    begun = restore(three, "a", path, force=True, begin=True)
    assert begun["changed"] is True and json.load(open(record_file, encoding="utf-8"))["state"] == "pending"
    inode = os.stat(data_dir).st_ino
    assert restore(three, "a", path, begin=True)["changed"] is False and os.stat(data_dir).st_ino == inode
    resumed = restore(three, "a", path)
    assert resumed["changed"] is True and os.stat(data_dir).st_ino != inode
    assert resumed["previous_data_dir"] == begun["previous_data_dir"] and os.path.isdir(resumed["previous_data_dir"] + "/member")
    assert json.load(open(record_file, encoding="utf-8"))["state"] == "restored"
    # A start recorded for another snapshot than the one restored is refused, naming the record.
    other = str(tmp_path / "other.db")
    shutil.copy(path, other)
    with open(other, "ab") as handle:
        handle.write(b"\0")
    refused = restore(three, "a", other, started=True)
    assert refused.get("failed") and "so its start cannot be recorded" in refused["msg"], refused
