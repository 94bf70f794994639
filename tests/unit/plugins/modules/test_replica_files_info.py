# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import os

from ansible_collections.kubeha.gce.plugins.modules import replica_files_info
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import run_module


def run(check_mode=False, **args):
    return run_module(replica_files_info.main, args, check_mode=check_mode, auth=False)


def test_reads_files_and_globs_and_leaves_out_what_is_absent(tmp_path):
    pki = tmp_path / "pki"
    (pki / "etcd").mkdir(parents=True)
    (pki / "ca.crt").write_text("cert\n")
    (pki / "ca.key").write_text("key\n")
    os.chmod(pki / "ca.key", 0o600)
    (pki / "etcd" / "peer.crt").write_text("peer\n")
    result = run(paths=[str(pki / "*.crt"), str(pki / "etcd" / "*.crt"), str(pki / "ca.key"), str(pki / "absent.crt")])
    assert result["changed"] is False
    assert sorted(result["files"]) == [str(pki / "ca.crt"), str(pki / "ca.key"), str(pki / "etcd" / "peer.crt")]
    key = result["files"][str(pki / "ca.key")]
    assert key == {"content": "key\n", "mode": "0600", "uid": os.getuid(), "gid": os.getgid(), "size": 4,
                   "sha256": hashlib.sha256(b"key\n").hexdigest()}
    # Check mode reads the same; without content, a binary is fine.
    (pki / "blob").write_bytes(b"\xff\x00")
    assert run(check_mode=True, paths=[str(pki / "ca.crt")])["files"] == {str(pki / "ca.crt"): result["files"][str(pki / "ca.crt")]}
    assert "content" not in run(paths=[str(pki / "blob")], content=False)["files"][str(pki / "blob")]


def test_what_cannot_be_read_as_asked_fails_naming_it(tmp_path):
    (tmp_path / "blob").write_bytes(b"\xff\x00")
    assert run(paths=[str(tmp_path / "blob")])["msg"] == "%s is not UTF-8 text; read it with content=false" % (tmp_path / "blob")
    assert run(paths=[str(tmp_path)])["msg"] == "%s is not a regular file" % tmp_path
    assert run(paths=["relative/path"])["msg"] == "paths must be absolute: relative/path"
