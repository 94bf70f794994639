# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import datetime
import os
import stat

import pytest
import yaml
from cryptography import x509

from ansible_collections.kubeha.gce.plugins.module_utils._pki import material
from ansible_collections.kubeha.gce.plugins.modules import admin_kubeconfig, replica_pki
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import run_module

SERVER = "https://203.0.113.10"


@pytest.fixture(scope="module", name="ca")
def cluster_ca():
    return run_module(replica_pki.main, {"create_ca": True}, auth=False)["ca"]["cluster"]


def run(dest, ca, check_mode=False, diff=True, **args):
    return run_module(admin_kubeconfig.main, dict(dict(dest=str(dest), server=SERVER, cluster_name="k", ca=ca), **args),
                      check_mode=check_mode, diff=diff, auth=False)


def client_cert(path):
    with open(path, encoding="utf-8") as stream:
        config = yaml.safe_load(stream)
    user = config["users"][0]["user"]
    return config, x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))


def test_writes_an_admin_kubeconfig_once_and_keeps_it(ca, tmp_path):
    dest = tmp_path / "k.kubeconfig"
    checked = run(dest, ca, check_mode=True)
    assert checked["changed"] is True and checked["reason"] == "missing" and checked["not_after"] is None
    assert not dest.exists()

    written = run(dest, ca)
    assert written["changed"] is True and written["reissued"] is True
    assert written["context"] == "kubernetes-admin@k"
    assert written["subject"] == "CN=kubernetes-admin,O=kubeha:cluster-admins"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    config, cert = client_cert(dest)
    assert config["current-context"] == "kubernetes-admin@k"
    assert config["clusters"] == [{"name": "k", "cluster": {
        "server": SERVER, "certificate-authority-data": base64.b64encode(ca["cert"].encode()).decode()}}]
    assert cert.subject.rfc4514_string() == "CN=kubernetes-admin,O=kubeha:cluster-admins"
    assert material.signed_by(cert, x509.load_pem_x509_certificate(ca["cert"].encode()))
    assert written["diff"]["before"] == {} and written["diff"]["after"]["subject"] == written["subject"]

    again = run(dest, ca)
    assert again["changed"] is False and again["reason"] is None and again["reissued"] is False
    assert client_cert(dest)[1].serial_number == cert.serial_number
    assert again["not_after"] == written["not_after"]


def test_a_new_address_keeps_the_certificate_and_a_loose_mode_is_fixed(ca, tmp_path):
    dest = tmp_path / "k.kubeconfig"
    serial = (run(dest, ca), client_cert(dest)[1].serial_number)[1]
    moved = run(dest, ca, server="https://203.0.113.99")
    assert moved["changed"] is True and moved["reissued"] is False
    assert moved["reason"] == "the server is %s, wanted https://203.0.113.99" % SERVER
    config, cert = client_cert(dest)
    assert config["clusters"][0]["cluster"]["server"] == "https://203.0.113.99" and cert.serial_number == serial
    os.chmod(dest, 0o644)
    fixed = run(dest, ca, server="https://203.0.113.99")
    assert fixed["changed"] is True and fixed["reason"] == "its mode is 0644, wanted 0600"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600


def test_another_identity_a_foreign_ca_or_a_near_expiry_issues_again(ca, tmp_path):
    dest = tmp_path / "k.kubeconfig"
    run(dest, ca)
    # The break-glass identity is a file of its own: its entries are not the admin's.
    refused = run(dest, ca, super_admin=True)
    assert refused["failed"] is True and "holds other entries than this cluster's administrator" in refused["msg"]
    assert "user kubernetes-admin@k" in refused["msg"]
    super_dest = tmp_path / "k-super.kubeconfig"
    sup = run(super_dest, ca, super_admin=True)
    assert sup["subject"] == "CN=kubernetes-super-admin,O=system:masters" and sup["context"] == "kubernetes-super-admin@k"

    other = run_module(replica_pki.main, {"create_ca": True}, auth=False)["ca"]["cluster"]
    moved = run(dest, other)
    assert moved["changed"] is True and moved["reissued"] is True
    assert moved["reason"] == "client certificate: not signed by the cluster CA"

    # A certificate within renew_before_days of its expiry is issued again; one outside it is kept.
    short = run(dest, other, validity_days=10, renew_before_days=9)
    assert short["changed"] is False, "the certificate issued above has a year left"
    dest.unlink()
    assert run(dest, other, validity_days=10, renew_before_days=5)["changed"] is True
    renewed = run(dest, other, validity_days=30, renew_before_days=20)
    assert renewed["changed"] is True and renewed["reason"].startswith("client certificate: expires on ")
    expiry = datetime.datetime.fromisoformat(renewed["not_after"])
    assert datetime.timedelta(days=29) < expiry - datetime.datetime.now(datetime.timezone.utc) < datetime.timedelta(days=31)
    assert run(dest, other, validity_days=30, renew_before_days=20)["changed"] is False


def test_a_kubeconfig_of_other_clusters_is_never_overwritten(ca, tmp_path):
    dest = tmp_path / "config"
    text = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: https://prod}\n" \
           "users: []\ncontexts:\n- name: prod\n  context: {cluster: prod, user: ops}\ncurrent-context: prod\n"
    dest.write_text(text)
    refused = run(dest, ca)
    assert refused["failed"] is True
    assert refused["msg"] == ("%s holds other entries than this cluster's administrator (cluster prod, context prod), "
                              "which writing it would lose; give a path of its own, and merge it with "
                              "KUBECONFIG=%s:... when you use it" % (dest, dest))
    assert dest.read_text() == text
    dest.write_text("just text\n")
    assert run(dest, ca)["msg"] == "%s is not a kubeconfig (no kind: Config); give a path of its own" % dest
    missing = run(tmp_path / "nowhere" / "config", ca)
    assert missing["failed"] is True and missing["msg"] == "the directory %s of dest does not exist" % (tmp_path / "nowhere")


def test_a_symbolic_link_is_followed_and_odd_cluster_names_read_back(ca, tmp_path):
    target = tmp_path / "real.kubeconfig"
    link = tmp_path / "link.kubeconfig"
    link.symlink_to(target)
    assert run(link, ca, cluster_name="yes")["changed"] is True
    assert link.is_symlink() and target.is_file()
    config, _cert = client_cert(target)
    assert config["clusters"][0]["name"] == "yes" and config["current-context"] == "kubernetes-admin@yes"
    assert run(link, ca, cluster_name="yes")["changed"] is False


def test_a_damaged_or_empty_file_of_its_own_is_written_again(ca, tmp_path):
    dest = tmp_path / "k.kubeconfig"
    run(dest, ca)
    dest.write_text(dest.read_text().replace("client-key-data: ", "client-key-data: x"))
    damaged = run(dest, ca)
    assert damaged["changed"] is True and damaged["reason"].startswith("client certificate: ")
    dest.write_text("")
    empty = run(dest, ca)
    assert empty["changed"] is True and empty["reason"] == "missing"
    assert run(dest, ca)["changed"] is False


def test_a_certificate_that_ends_with_its_ca_is_kept_and_the_diff_shows_the_mode(tmp_path):
    short_ca = run_module(replica_pki.main, {"create_ca": True, "ca_validity_days": 20}, auth=False)["ca"]["cluster"]
    dest = tmp_path / "k.kubeconfig"
    first = run(dest, short_ca)
    assert first["changed"] is True
    # Within renew_before_days (30) of its end, but a new one would end with the CA too: kept.
    again = run(dest, short_ca)
    assert again["changed"] is False and again["not_after"] == first["not_after"]
    os.chmod(dest, 0o640)
    fixed = run(dest, short_ca)
    assert fixed["diff"]["before"]["mode"] == "0640" and fixed["diff"]["after"]["mode"] == "0600"
    refused = run(dest, short_ca, validity_days=30, renew_before_days=30)
    assert refused["failed"] is True and "validity_days (30) must be more than renew_before_days (30)" in refused["msg"]
