# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeha.gce.plugins.filter.files import FilterModule, ca_material, files_to_write, replica_pki_files

LAYOUT = {
    "dir": "/etc/kubernetes/pki", "kubeconfig_dir": "/etc/kubernetes",
    "ca_paths": [{"ca": "cluster", "part": "cert", "path": "ca.crt"}, {"ca": "cluster", "part": "key", "path": "ca.key"},
                 {"ca": "etcd", "part": "cert", "path": "etcd/ca.crt"},
                 {"ca": "service_account", "part": "public", "path": "sa.pub"}],
    "leaf_paths": {"etcd-peer": "etcd/peer", "apiserver": "apiserver", "scheduler": "scheduler"},
    "kubeconfigs": ["controller-manager", "scheduler"],
    "create_only_ca_paths": ["etcd/ca.crt"], "skip_leaves": ["etcd-peer"],
}
MATERIAL = {
    "ca": {"cluster": {"cert": "CA", "key": "CAKEY"}, "etcd": {"cert": "ECA"}, "service_account": {"public": "PUB"}},
    "leaves": {"etcd-peer": {"cert": "P", "key": "PK"}, "apiserver": {"cert": "A", "key": "AK"},
               "scheduler": {"cert": "S", "key": "SK"}},
    "kubeconfigs": {"controller-manager": "CMCONF", "scheduler": "SCONF"}, "changed_leaves": [],
}


def test_the_material_becomes_files_with_their_modes_leaving_out_what_etcd_writes():
    files = replica_pki_files(MATERIAL, LAYOUT)
    assert [(f["path"], f["content"], f["mode"]) for f in files] == [
        ("/etc/kubernetes/pki/ca.crt", "CA", "0644"), ("/etc/kubernetes/pki/ca.key", "CAKEY", "0600"),
        ("/etc/kubernetes/pki/etcd/ca.crt", "ECA", "0644"), ("/etc/kubernetes/pki/sa.pub", "PUB", "0644"),
        ("/etc/kubernetes/pki/apiserver.crt", "A", "0644"), ("/etc/kubernetes/pki/apiserver.key", "AK", "0600"),
        ("/etc/kubernetes/pki/scheduler.crt", "S", "0644"), ("/etc/kubernetes/pki/scheduler.key", "SK", "0600"),
        ("/etc/kubernetes/controller-manager.conf", "CMCONF", "0600"), ("/etc/kubernetes/scheduler.conf", "SCONF", "0600"),
    ]
    # The etcd role owns etcd/ca.crt once it runs: written here only when missing.
    assert [f["path"] for f in files if f.get("force") is False] == ["/etc/kubernetes/pki/etcd/ca.crt"]
    assert FilterModule().filters()["replica_pki_files"] is replica_pki_files


def test_a_next_key_is_written_only_while_the_material_has_it_and_the_signer_beside_the_bundle():
    layout = dict(LAYOUT, ca_paths=LAYOUT["ca_paths"] + [{"ca": "cluster", "part": "next_key", "path": "ca-next.key",
                                                          "optional": True}],
                  signer_paths={"cluster": "ca-signing.crt"})
    rotating = dict(MATERIAL, ca=dict(MATERIAL["ca"], cluster={"cert": "OLD+NEW", "key": "OLDKEY", "next_key": "NEWKEY"}),
                    signers={"cluster": "OLD"})
    files = {f["path"]: (f["content"], f["mode"]) for f in replica_pki_files(rotating, layout)}
    assert files["/etc/kubernetes/pki/ca-next.key"] == ("NEWKEY", "0600")
    assert files["/etc/kubernetes/pki/ca-signing.crt"] == ("OLD", "0644")
    assert files["/etc/kubernetes/pki/ca.crt"] == ("OLD+NEW", "0644")
    plain = [f["path"] for f in replica_pki_files(MATERIAL, layout)]
    assert "/etc/kubernetes/pki/ca-next.key" not in plain and "/etc/kubernetes/pki/ca-signing.crt" not in plain


def test_ca_material_is_gathered_from_the_files_read_leaving_out_what_is_missing():
    read = {"/etc/kubernetes/pki/ca.crt": {"content": "CA"}, "/etc/kubernetes/pki/ca.key": {"content": "CAKEY"},
            "/etc/kubernetes/pki/sa.pub": {"content": "PUB"}, "/etc/kubernetes/pki/apiserver.crt": {"content": "A"}}
    assert ca_material(read, LAYOUT["ca_paths"], "/etc/kubernetes/pki") == {
        "cluster": {"cert": "CA", "key": "CAKEY"}, "service_account": {"public": "PUB"}}
    assert FilterModule().filters()["ca_material"] is ca_material
    with pytest.raises(AnsibleFilterError, match="ca_material"):
        ca_material(read, [{"ca": "cluster"}], "/etc/kubernetes/pki")


def test_in_check_mode_a_kubeconfig_is_listed_only_when_its_certificate_changes():
    planned = dict(MATERIAL, kubeconfigs={}, changed_leaves=["scheduler"])
    kubeconfigs = [f for f in replica_pki_files(planned, LAYOUT) if f["path"].endswith(".conf")]
    assert kubeconfigs == [{"path": "/etc/kubernetes/scheduler.conf", "content": "", "mode": "0600"}]


def test_material_not_made_as_the_role_makes_it_fails_naming_the_filter():
    with pytest.raises(AnsibleFilterError, match="replica_pki_files"):
        replica_pki_files(MATERIAL, {"dir": "/etc/kubernetes/pki"})


def test_only_files_whose_content_mode_or_owner_differ_are_to_be_written():
    wanted = [{"path": "/p/same", "content": "x", "mode": "0644"}, {"path": "/p/text", "content": "new", "mode": "0644"},
              {"path": "/p/mode", "content": "k"}, {"path": "/p/owner", "content": "o", "mode": "600"},
              {"path": "/p/absent", "content": "a", "mode": "0600"}]
    current = {"/p/same": {"content": "x", "mode": "0644", "uid": 0, "gid": 0},
               "/p/text": {"content": "old", "mode": "0644", "uid": 0, "gid": 0},
               "/p/mode": {"content": "k", "mode": "0644", "uid": 0, "gid": 0},
               "/p/owner": {"content": "o", "mode": "0600", "uid": 0, "gid": 110}}
    assert [f["path"] for f in files_to_write(wanted, current)] == ["/p/text", "/p/mode", "/p/owner", "/p/absent"]
    assert [f["path"] for f in files_to_write(wanted[3:4], current, gid=110)] == []
    # A create-only file differs only when it is missing.
    create_only = [dict(wanted[1], force=False), dict(wanted[4], force=False)]
    assert [f["path"] for f in files_to_write(create_only, current)] == ["/p/absent"]
    with pytest.raises(AnsibleFilterError, match="needs a path"):
        files_to_write([{"content": "x"}], current)
