# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat

import pytest

from ansible_collections.kubeha.gce.plugins.modules import replica_files
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import run_module

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run(check_mode=False, diff=False, **args):
    args.setdefault("owner", OWNER)
    args.setdefault("group", GROUP)
    return run_module(replica_files.main, args, check_mode=check_mode, auth=False, diff=diff)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_what_differs_in_one_run_and_check_mode_only_predicts(tmp_path):
    cert, key, same = tmp_path / "ca.crt", tmp_path / "ca.key", tmp_path / "same.crt"
    key.write_text("old key\n")
    os.chmod(key, 0o644)
    same.write_text("same\n")
    os.chmod(same, 0o644)
    files = [{"path": str(cert), "content": "cert\n", "mode": "0644"}, {"path": str(key), "content": "SECRET-KEY\n"},
             {"path": str(same), "content": "same\n", "mode": "0644"}]

    planned = run(check_mode=True, diff=True, files=files)
    assert planned["changed"] is True
    assert planned["files"] == {str(cert): "created", str(key): "replaced", str(same): "unchanged"}
    assert not cert.exists() and key.read_text() == "old key\n"
    # The diff names files with their sha256, never their content; an unchanged file is not in it.
    assert "%s: absent" % cert in planned["diff"]["before"]
    assert hashlib.sha256(b"SECRET-KEY\n").hexdigest() in planned["diff"]["after"]
    assert "SECRET" not in planned["diff"]["before"] + planned["diff"]["after"] and str(same) not in planned["diff"]["after"]

    written = run(files=files)
    assert written["files"] == planned["files"]
    assert cert.read_text() == "cert\n" and mode(cert) == 0o644
    assert key.read_text() == "SECRET-KEY\n" and mode(key) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "a temporary file was left behind"

    again = run(files=files)
    assert again["changed"] is False and set(again["files"].values()) == {"unchanged"}


def test_a_file_with_the_same_content_only_gets_its_mode(tmp_path):
    key = tmp_path / "sa.key"
    key.write_text("key\n")
    os.chmod(key, 0o644)
    inode = os.stat(key).st_ino
    result = run(files=[{"path": str(key), "content": "key\n", "mode": "0600"}])
    assert result["files"] == {str(key): "attributes"}
    assert mode(key) == 0o600 and os.stat(key).st_ino == inode


def test_bad_input_fails_naming_the_file_before_anything_is_written(tmp_path):
    first = tmp_path / "first.crt"
    ok = {"path": str(first), "content": "first file"}
    cases = [
        ([ok, {"path": "relative.crt", "content": "other file"}], "paths must be absolute: relative.crt"),
        ([ok, ok], "%s is given twice" % first),
        ([ok, {"path": str(tmp_path / "none" / "a.crt"), "content": "other file"}],
         "the directory of %s does not exist" % (tmp_path / "none" / "a.crt")),
        ([ok, {"path": str(tmp_path), "content": "other file"}], "%s is not a regular file" % tmp_path),
        ([{"path": str(first), "content": "other file", "mode": "u+rw"}], "the mode of %s is not octal: u+rw" % first),
    ]
    for files, message in cases:
        result = run(files=files)
        assert result.get("failed") and result["msg"] == message, (files, result)
        assert not first.exists()
    assert run(files=[ok], owner="no-such-user-here")["msg"] == "user no-such-user-here does not exist on this host"
    assert run(files=[ok], group="no-such-group-here")["msg"] == "group no-such-group-here does not exist on this host"
    assert not first.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="setting another owner needs root")
def test_the_owner_is_set_on_new_and_rewritten_files(tmp_path):
    path = tmp_path / "peer.key"
    run(files=[{"path": str(path), "content": "peer key material"}], owner="nobody", group="nogroup")
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    assert run(files=[{"path": str(path), "content": "peer key material"}], owner="root", group="root")["files"] == {str(path): "attributes"}
    assert os.stat(path).st_uid == 0


def test_a_symbolic_link_is_refused_never_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("not ours")
    os.chmod(target, 0o640)
    link = tmp_path / "server.key"
    os.symlink(target, link)
    for content in ("not ours", "new key material"):  # the same content (mode only) and new content
        result = run(files=[{"path": str(link), "content": content, "mode": "0600"}])
        assert result["msg"] == "%s is a symbolic link, not a regular file" % link
    assert target.read_text() == "not ours" and mode(target) == 0o640 and os.path.islink(link)


def test_a_file_swapped_after_it_was_compared_gets_no_mode(tmp_path):
    from ansible_collections.kubeha.gce.plugins.module_utils import _files

    key = tmp_path / "peer.key"
    key.write_text("key material")
    os.chmod(key, 0o644)
    [change] = _files.plan_writes([{"path": str(key), "content": "key material", "mode": "0600"}], os.getuid(), os.getgid())
    assert change.action == "attributes"
    other = tmp_path / "other"
    other.write_text("key material")
    os.chmod(other, 0o644)
    os.rename(other, key)  # another inode: the compared one is still held by nothing but the plan
    with pytest.raises(_files.FilesError, match="changed while it was written: it is another file"):
        _files.apply_writes([change], os.getuid(), os.getgid())
    assert mode(key) == 0o644


def test_check_mode_predicts_what_an_earlier_task_would_make_possible(tmp_path):
    missing = tmp_path / "pki" / "ca.crt"
    planned = run(check_mode=True, files=[{"path": str(missing), "content": "the cluster CA"}],
                  owner="no-such-user-here", group="no-such-group-here")
    assert planned["changed"] is True and planned["files"] == {str(missing): "created"}
    assert not missing.parent.exists()


def test_an_unquoted_yaml_mode_and_a_create_only_file(tmp_path):
    cert = tmp_path / "ca.crt"
    assert run(files=[{"path": str(cert), "content": "the etcd CA", "mode": 0o644}])["files"] == {str(cert): "created"}
    assert mode(cert) == 0o644
    kept = run(files=[{"path": str(cert), "content": "another CA", "mode": "0600", "force": False}])
    assert kept["changed"] is False and cert.read_text() == "the etcd CA" and mode(cert) == 0o644


def test_a_failure_while_writing_leaves_every_file_as_it_was(tmp_path):
    # The second file cannot be written, for root too: the name of the file its content goes to first
    # (".NAME.XXXXXXXX", beside it) is longer than a file name can be.
    first, second = tmp_path / "ca.crt", tmp_path / ("k" * 250)
    first.write_text("the old CA")
    result = run(files=[{"path": str(first), "content": "a new CA"}, {"path": str(second), "content": "its key"}])
    assert result["failed"] and result["msg"].startswith("%s cannot be written: File name too long" % second)
    assert result["changed"] is False and result["files"] == {}
    assert first.read_text() == "the old CA" and not second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt"]  # nothing left of the files begun


def test_a_rename_that_fails_leaves_no_staged_file(tmp_path):
    from ansible_collections.kubeha.gce.plugins.module_utils import _files

    first, second = tmp_path / "ca.crt", tmp_path / "ca.key"
    changes = _files.plan_writes([{"path": str(first), "content": "a new CA"}, {"path": str(second), "content": "key"}],
                                 os.getuid(), os.getgid())
    second.mkdir()  # after the plan: a directory cannot be renamed over
    with pytest.raises(_files.FilesError, match="ca.key cannot be written: Is a directory"):
        _files.apply_writes(changes, os.getuid(), os.getgid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key"]  # no staged key material left
