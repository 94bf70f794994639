# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import datetime
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ansible_collections.kubeha.gce.plugins.module_utils._pki import material
from ansible_collections.kubeha.gce.plugins.modules import replica_pki
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import run_module

REPLICA = {"name": "k-master-c1x", "internal_ip": "10.132.0.3", "reserved_ip": "203.0.113.10",
           "external_ip": "203.0.113.20"}


def run(check_mode=False, diff=False, **args):
    return run_module(replica_pki.main, args, check_mode=check_mode, diff=diff, auth=False)


@pytest.fixture(scope="module")
def ca():
    result = run(create_ca=True)
    assert result["changed"] is True
    return result["ca"]


def current_of(result):
    return {name: {"cert": leaf["cert"], "key": leaf["key"]} for name, leaf in result["leaves"].items()}


def test_create_ca_creates_every_authority_once(ca):
    assert sorted(ca) == ["cluster", "etcd", "front_proxy", "service_account"]
    for name, common_name in (("cluster", "kubernetes"), ("etcd", "etcd-ca"), ("front_proxy", "front-proxy-ca")):
        cert = x509.load_pem_x509_certificate(ca[name]["cert"].encode())
        assert cert.subject.rfc4514_string() == "CN=%s" % common_name
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert "BEGIN PUBLIC KEY" in ca["service_account"]["public"]
    again = run(create_ca=True, ca=ca)
    assert again["changed"] is False and again["created_ca"] == [] and again["ca"] == ca


def test_issues_the_replica_set_with_the_designed_names(ca):
    result = run(ca=ca, replica=REPLICA)
    assert result["changed"] is True
    assert sorted(result["changed_leaves"]) == sorted(replica_pki.LEAVES)
    api = result["leaves"]["apiserver"]["after"]
    assert api["ip_addresses"] == sorted(["10.0.0.1", "10.132.0.3", "127.0.0.1", "203.0.113.10", "203.0.113.20"])
    assert api["dns_names"] == sorted(["k-master-c1x", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                       "kubernetes.default.svc.cluster.local"])
    assert api["usages"] == ["server"]
    assert result["earliest_expiry"] == min(leaf["after"]["not_after"] for leaf in result["leaves"].values())
    peer = result["leaves"]["etcd-peer"]["after"]
    assert peer["ip_addresses"] == ["10.132.0.3", "127.0.0.1"] and peer["dns_names"] == ["k-master-c1x", "localhost"]
    assert peer["usages"] == ["client", "server"]
    assert result["leaves"]["controller-manager"]["after"]["subject"] == "CN=system:kube-controller-manager"
    assert result["leaves"]["apiserver-kubelet-client"]["after"]["subject"] == "CN=kube-apiserver-kubelet-client,O=system:masters"
    etcd_ca = x509.load_pem_x509_certificate(ca["etcd"]["cert"].encode())
    for name in ("etcd-peer", "etcd-server", "apiserver-etcd-client"):
        assert material.signed_by(x509.load_pem_x509_certificate(result["leaves"][name]["cert"].encode()), etcd_ca)
    # ECDSA P-256 by default.
    key = material.load_key(result["leaves"]["apiserver"]["key"], "apiserver")
    assert key.curve.name == "secp256r1"
    assert "client-certificate-data:" in result["kubeconfigs"]["scheduler"]
    assert "server: https://127.0.0.1:443" in result["kubeconfigs"]["controller-manager"]


def test_the_addon_manager_is_a_system_masters_client_without_a_kubeconfig(ca):
    result = run(ca=ca, replica=REPLICA, leaves=["addon-manager", "scheduler"])
    leaf = result["leaves"]["addon-manager"]
    assert leaf["authority"] == "cluster" and leaf["reissued"] is True and leaf["reason"] == "missing"
    assert leaf["after"]["subject"] == "CN=system:kube-addon-manager,O=system:masters"
    assert leaf["after"]["usages"] == ["client"] and leaf["after"]["dns_names"] == leaf["after"]["ip_addresses"] == []
    cert = x509.load_pem_x509_certificate(leaf["cert"].encode())
    assert material.signed_by(cert, x509.load_pem_x509_certificate(ca["cluster"]["cert"].encode()))
    # The control_plane role writes its kubeconfig (naming the certificate files).
    assert sorted(result["kubeconfigs"]) == ["scheduler"]
    # A certificate of another identity given as the addon manager's is issued again.
    wrong = {"addon-manager": current_of(result)["scheduler"]}
    again = run(ca=ca, replica=REPLICA, leaves=["addon-manager"], current=wrong)
    assert again["changed_leaves"] == ["addon-manager"]
    assert again["leaves"]["addon-manager"]["reason"] == ("subject is CN=system:kube-scheduler, wanted "
                                                          "CN=system:kube-addon-manager,O=system:masters")


def test_rerun_with_current_certificates_is_a_no_op(ca):
    first = run(ca=ca, replica=REPLICA)
    again = run(ca=ca, replica=REPLICA, current=current_of(first), diff=True)
    assert again["changed"] is False and again["changed_leaves"] == []
    assert current_of(again) == current_of(first)
    assert again["diff"]["before"] == again["diff"]["after"]


def test_only_the_leaf_whose_names_changed_is_issued_again(ca):
    first = run(ca=ca, replica=REPLICA)
    moved = dict(REPLICA, external_ip="203.0.113.99")
    second = run(ca=ca, replica=moved, current=current_of(first), diff=True)
    assert second["changed_leaves"] == ["apiserver"]
    assert "IP addresses are" in second["leaves"]["apiserver"]["reason"]
    assert second["leaves"]["etcd-peer"]["cert"] == first["leaves"]["etcd-peer"]["cert"]
    assert second["leaves"]["apiserver"]["key"] != first["leaves"]["apiserver"]["key"]
    assert "203.0.113.99" in second["diff"]["after"]["apiserver"]["ip_addresses"]
    assert "203.0.113.99" not in second["diff"]["before"]["apiserver"]["ip_addresses"]


def test_check_mode_predicts_without_new_keys(ca):
    first = run(ca=ca, replica=REPLICA)
    planned = run(ca=ca, replica=dict(REPLICA, internal_ip="10.132.0.9"), current=current_of(first), check_mode=True)
    assert planned["changed"] is True
    assert sorted(planned["changed_leaves"]) == ["apiserver", "etcd-peer", "etcd-server"]
    assert planned["leaves"]["apiserver"]["cert"] is None and planned["leaves"]["apiserver"]["key"] is None
    assert planned["leaves"]["scheduler"]["cert"] == first["leaves"]["scheduler"]["cert"]
    assert "kubeconfigs" not in planned
    created = run(create_ca=True, check_mode=True)
    assert created["changed"] is True and created["created_ca"] == ["cluster", "etcd", "front_proxy", "service_account"]


def test_certificate_near_expiry_or_from_another_ca_is_issued_again(ca):
    short = run(ca=ca, replica=REPLICA, leaves=["scheduler"], validity_days=10)
    renewed = run(ca=ca, replica=REPLICA, leaves=["scheduler"], current=current_of(short), renew_before_days=30)
    assert renewed["changed_leaves"] == ["scheduler"]
    assert "within the renewal window" in renewed["leaves"]["scheduler"]["reason"]
    # The stamp records the expiry of the certificate issued again, not of the one it replaces.
    assert renewed["earliest_expiry"] == renewed["leaves"]["scheduler"]["after"]["not_after"]
    assert renewed["earliest_expiry"] > short["earliest_expiry"]
    other_ca = run(create_ca=True)["ca"]
    foreign = run(ca=other_ca, replica=REPLICA, leaves=["scheduler"])
    again = run(ca=ca, replica=REPLICA, leaves=["scheduler"], current=current_of(foreign))
    assert again["leaves"]["scheduler"]["reason"] == "not signed by the cluster CA"


def test_rotation_issues_again_what_was_issued_before_the_given_time_once(ca):
    old = run(ca=ca, replica=REPLICA)
    # Certificates issued before the rotation began (their validity starts 5 minutes before they were issued).
    for leaf in old["leaves"].values():
        leaf["cert"] = backdated(leaf["cert"], ca[leaf["authority"]], minutes=30)
    start = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    planned = run(ca=ca, replica=REPLICA, current=current_of(old), reissue=["apiserver", "etcd-peer"], issued_before=start,
                  check_mode=True)
    assert planned["changed"] is True and sorted(planned["changed_leaves"]) == ["apiserver", "etcd-peer"]
    assert planned["leaves"]["apiserver"]["cert"] is None
    rotated = run(ca=ca, replica=REPLICA, current=current_of(old), reissue=["apiserver", "etcd-peer"], issued_before=start)
    assert sorted(rotated["changed_leaves"]) == ["apiserver", "etcd-peer"]
    assert rotated["leaves"]["apiserver"]["reason"].endswith("rotation asked")
    assert rotated["leaves"]["apiserver"]["key"] != old["leaves"]["apiserver"]["key"]
    assert rotated["leaves"]["scheduler"]["cert"] == old["leaves"]["scheduler"]["cert"]
    # The same request again, with the same time (here with an offset): what it issued is not issued again...
    same = datetime.datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    for when in (start, same.astimezone(datetime.timezone(datetime.timedelta(hours=-2))).isoformat()):
        again = run(ca=ca, replica=REPLICA, current=current_of(rotated), reissue=["apiserver", "etcd-peer"], issued_before=when)
        assert again["changed"] is False and again["changed_leaves"] == [], when
    # ...and without a time, everything asked is.
    forced = run(ca=ca, replica=REPLICA, current=current_of(rotated), reissue=["scheduler"])
    assert forced["changed_leaves"] == ["scheduler"] and forced["leaves"]["scheduler"]["reason"] == "rotation asked"
    assert forced["leaves"]["scheduler"]["cert"] in base64.b64decode(
        forced["kubeconfigs"]["scheduler"].split("client-certificate-data: ")[1].split()[0]).decode()


def backdated(pem, authority, minutes):
    """``pem`` signed again by ``authority`` with its validity starting ``minutes`` earlier."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    key = material.load_key(authority["key"], "ca")
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer).public_key(cert.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(cert.not_valid_before_utc - datetime.timedelta(minutes=minutes))
               .not_valid_after(cert.not_valid_after_utc))
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return material.cert_pem(builder.sign(key, hashes.SHA256()))


@pytest.mark.parametrize("args, message", [
    ({"reissue": ["apiserver"], "issued_before": "yesterday"},
     "issued_before must be an ISO 8601 time such as 2026-12-06T14:00:00Z, not 'yesterday'"),
    ({"reissue": ["apiserver"], "leaves": ["scheduler"]}, "reissue names apiserver, which leaves does not ask for (scheduler)"),
    ({"reissue": ["apiserver"], "issued_before": "2999-01-01T00:00:00Z"}, "issued_before 2999-01-01T00:00:00Z is in the future"),
])
def test_bad_rotation_input_is_named(ca, args, message):
    result = run(ca=ca, replica=REPLICA, **args)
    assert result["failed"] is True and message in result["msg"], result


def test_rsa_keys_when_asked(ca):
    result = run(ca=ca, replica=REPLICA, leaves=["apiserver"], key_type="rsa")
    assert material.load_key(result["leaves"]["apiserver"]["key"], "apiserver").key_size == 2048


@pytest.mark.parametrize("args, message", [
    ({"replica": dict(REPLICA, internal_ip="10.132.0.300")}, "replica.internal_ip '10.132.0.300' is not an IP address"),
    ({"replica": dict(REPLICA, reserved_ip="k-master-ip")}, "replica.reserved_ip 'k-master-ip' is not an IP address"),
    ({"replica": dict(REPLICA, extra_sans=["bad name"])}, "replica.extra_sans[0] 'bad name' is neither"),
])
def test_bad_input_is_named(ca, args, message):
    result = run(ca=ca, **args)
    assert result["failed"] is True and message in result["msg"]


def test_ca_key_that_does_not_match_its_cert_is_refused(ca):
    other = run(create_ca=True)["ca"]
    mixed = dict(ca, cluster={"cert": ca["cluster"]["cert"], "key": other["cluster"]["key"]})
    result = run(ca=mixed, replica=REPLICA)
    assert result["failed"] is True
    assert result["msg"] == "ca.cluster.key does not match ca.cluster.cert (CN=kubernetes)"


def test_expired_ca_is_refused(ca):
    expired = material.new_authority("cluster", "kubernetes", "ecdsa", 1)
    builder = (x509.CertificateBuilder().subject_name(expired.cert.subject).issuer_name(expired.cert.subject)
               .public_key(expired.key.public_key()).serial_number(1)
               .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
               .not_valid_after(datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    from cryptography.hazmat.primitives import hashes

    old = material.cert_pem(builder.sign(expired.key, hashes.SHA256()))
    result = run(ca=dict(ca, cluster={"cert": old, "key": expired.key_pem}), replica=REPLICA)
    assert result["failed"] is True and "ca.cluster.cert (CN=kubernetes) expired on 2021-01-01" in result["msg"]


def test_missing_ca_is_refused():
    result = run(replica=REPLICA)
    assert result["failed"] is True and result["msg"] == "ca is required unless create_ca is true"


def test_the_serving_certificate_works_for_tls_to_each_address(ca):
    """A real TLS handshake: a client that trusts the cluster CA accepts the apiserver cert for every SAN."""
    result = run(ca=ca, replica=dict(REPLICA, internal_ip="127.0.0.1"), leaves=["apiserver"])
    leaf = result["leaves"]["apiserver"]
    import tempfile
    import os

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, text in (("cert", leaf["cert"]), ("key", leaf["key"]), ("ca", ca["cluster"]["cert"])):
            paths[name] = os.path.join(tmp, name + ".pem")
            with open(paths[name], "w", encoding="utf-8") as handle:
                handle.write(text)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(paths["cert"], paths["key"])
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve():
            for _attempt in range(3):
                connection, _address = listener.accept()
                try:
                    with server_context.wrap_socket(connection, server_side=True) as tls:
                        tls.sendall(b"ok")
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ssl.create_default_context(cafile=paths["ca"])
        for name in ("127.0.0.1", "kubernetes.default.svc"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with client.wrap_socket(raw, server_hostname=name) as tls:
                    assert tls.recv(2) == b"ok"
        # A name that is not in the certificate is refused.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                client.wrap_socket(raw, server_hostname="evil.example")
        thread.join(timeout=5)
        listener.close()
