# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import datetime
import time

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ansible_collections.kubeha.gce.plugins.module_utils._pki import material
from ansible_collections.kubeha.gce.plugins.module_utils._pki.material import cert_pem
from ansible_collections.kubeha.gce.plugins.modules import replica_ca_rotation, replica_pki
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import run_module

REPLICAS = ("k-master", "k-master-c", "k-master-d")


def rotate(check_mode=False, diff=False, **args):
    args.setdefault("issued_before", datetime.datetime.now(datetime.timezone.utc).isoformat())
    return run_module(replica_ca_rotation.main, args, check_mode=check_mode, diff=diff, auth=False)


def pki(**args):
    return run_module(replica_pki.main, args, auth=False)


@pytest.fixture()
def cluster():
    ca = pki(create_ca=True)["ca"]
    return {name: {k: dict(v) for k, v in ca.items()} for name in REPLICAS}


def apply(replicas, step):
    """What the role writes in a pass: each replica's material as the pass has it (a next key dropped with it)."""
    for name, material in step["material"].items():
        if material:
            replicas[name] = {k: dict(v) for k, v in material.items()}
    return replicas


def certs(pem):
    return x509.load_pem_x509_certificates(pem.encode())


def run_through(replicas, **args):
    result = rotate(replicas=replicas, **args)
    assert result.get("failed") is not True, result
    for step in result["passes"]:
        apply(replicas, step)
    return result


def test_the_trust_phase_adds_a_new_cluster_ca_that_does_not_sign_yet(cluster):
    result = rotate(replicas=cluster, authorities=["cluster"])
    assert [p["name"] for p in result["passes"]] == ["trust"] and result["authorities"]["cluster"]["created"] is True
    assert "ca_phase=sign" in result["summary"][0] and "nodes' kubelets" in result["summary"][0]


def test_the_cluster_and_front_proxy_cas_move_one_phase_per_run(cluster):
    for authority in ("cluster", "front_proxy"):
        refused = rotate(replicas=cluster, authorities=[authority, "etcd"], phase="all")
        assert refused["failed"] is True and "ca_phase=all" in refused["msg"] and authority in refused["msg"], refused
        # Nothing under way: sign and retire find nothing to do, and make no CA.
        idle = rotate(replicas=cluster, authorities=[authority], phase="retire")
        assert idle["changed"] is False and idle["passes"] == [] and "no rotation under way" in idle["plan"][
            ["cluster", "etcd", "front_proxy"].index(authority)]
    run_through(cluster, authorities=["cluster"])
    # Trusted everywhere, the old CA signing: retire would take it two passes in one run.
    refused = rotate(replicas=cluster, authorities=["cluster"], phase="retire")
    assert refused["failed"] is True and "run -e ca_phase=sign first" in refused["msg"], refused
    # The etcd CA has no clients outside the masters: all three passes in one run.
    result = rotate(replicas=cluster, authorities=["etcd"], phase="all")
    assert [p["name"] for p in result["passes"]] == ["trust", "sign", "retire"]


def test_a_rotation_trusts_both_then_signs_with_the_new_ca_and_keeps_the_old_trusted(cluster):
    old = certs(cluster["k-master"]["cluster"]["cert"])[0]
    first = run_through(cluster, authorities=["cluster"])
    assert [p["name"] for p in first["passes"]] == ["trust"]
    trusting = {k: dict(v) for k, v in cluster["k-master"].items()}
    result = rotate(replicas=cluster, authorities=["cluster"], phase="sign", diff=True)
    assert result["changed"] is True
    assert [p["name"] for p in result["passes"]] == ["sign"]
    assert result["authorities"]["cluster"]["created"] is False
    assert result["authorities"]["etcd"]["goal"] is None
    [sign] = result["passes"]
    assert sign["authorities"] == ["cluster"]
    first = trusting["cluster"]
    bundle = certs(first["cert"])
    assert bundle[0] == old and len(bundle) == 2
    new = bundle[1]
    # The old CA still signs in the first pass, and the new key waits beside it.
    assert first["key"] != first["next_key"] and certs(first["cert"])[0] == old
    second = sign["material"]["k-master"]["cluster"]
    assert certs(second["cert"]) == [new, old] and second["key"] == first["next_key"] and "next_key" not in second
    # Every replica gets the same CA; the other CAs are passed through as they were.
    assert {sign["material"][r]["cluster"]["cert"] for r in REPLICAS} == {second["cert"]}
    assert sign["material"]["k-master-c"]["etcd"] == cluster["k-master-c"]["etcd"]
    assert "trusts both, the old CA signs" in result["plan"][0] and "sign, to:" in result["plan"][0]
    assert "ca_phase=retire" in result["summary"][0]
    assert result["diff"]["before"]["cluster"]["k-master"] == "trusts both, the old CA signs"


def test_leaves_issued_with_the_new_ca_are_trusted_through_every_pass(cluster):
    """A client certificate of the old CA and one of the new are both accepted by a bundle-trusting server in the
    overlap, and the pki module issues again (only) what the CA no longer signs."""
    replica = {"name": "k-master", "internal_ip": "10.132.0.3"}
    before = pki(ca=cluster["k-master"], replica=replica)
    current = {n: {"cert": leaf["cert"], "key": leaf["key"]} for n, leaf in before["leaves"].items()}
    result = rotate(replicas=cluster, authorities=["etcd"], phase="all")
    trust, sign = result["passes"][:2]
    kept = pki(ca=trust["material"]["k-master"], replica=replica, current=current)
    assert kept["changed_leaves"] == []
    signed = pki(ca=sign["material"]["k-master"], replica=replica, current=current)
    assert sorted(signed["changed_leaves"]) == ["apiserver-etcd-client", "etcd-peer", "etcd-server"]
    assert all("not signed by the etcd CA" in signed["leaves"][n]["reason"] for n in signed["changed_leaves"])
    assert signed["signers"]["etcd"] == cert_pem(certs(sign["material"]["k-master"]["etcd"]["cert"])[0])
    # Each leaf in use, the old CA's and the new CA's, is signed by a certificate of the bundle every replica trusts.
    bundle = certs(sign["material"]["k-master"]["etcd"]["cert"])
    for leaf, signer in ((before["leaves"]["etcd-server"], bundle[1]), (signed["leaves"]["etcd-server"], bundle[0])):
        cert = x509.load_pem_x509_certificate(leaf["cert"].encode())
        verifying = []
        for candidate in bundle:
            try:
                cert.verify_directly_issued_by(candidate)
            except InvalidSignature:
                continue
            verifying.append(candidate)
        assert verifying == [signer]


def test_a_second_run_with_the_same_time_changes_nothing_and_retire_finishes(cluster):
    # As the role gives it: to the second, after the second the cluster's CA was made in.
    time.sleep(1.1)
    began = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_through(cluster, authorities=["cluster", "front_proxy"], issued_before=began)
    run_through(cluster, authorities=["cluster", "front_proxy"], phase="sign", issued_before=began)
    again = rotate(replicas=cluster, authorities=["cluster", "front_proxy"], phase="sign", issued_before=began)
    assert again["changed"] is False and again["passes"] == []
    assert set(again["authorities"]["cluster"]["states"].values()) == {"trusts both, the new CA signs"}
    retired = run_through(cluster, authorities=["cluster"], phase="retire", issued_before=began)
    assert [p["name"] for p in retired["passes"]] == ["retire"]
    assert len(certs(cluster["k-master"]["cluster"]["cert"])) == 1
    assert len(certs(cluster["k-master"]["front_proxy"]["cert"])) == 2
    assert "retired" in retired["summary"][0]
    done = rotate(replicas=cluster, authorities=["cluster"], phase="retire", issued_before=began)
    assert done["changed"] is False
    # Asked again with another time (a stopped retire run's own), a finished rotation is not started anew.
    anew = rotate(replicas=cluster, authorities=["cluster"], phase="retire")
    assert anew["changed"] is False and anew["passes"] == [] and not anew["authorities"]["cluster"]["created"]


def test_a_stopped_rotation_is_taken_up_where_the_replicas_are(cluster):
    first = rotate(replicas=cluster, authorities=["cluster"])
    trust = first["passes"][0]
    # Stopped after the first replica of the trust pass: the sign phase would take the others two passes at once.
    cluster["k-master"] = trust["material"]["k-master"]
    later = datetime.datetime.now(datetime.timezone.utc).isoformat()
    refused = rotate(replicas=cluster, authorities=["cluster"], phase="sign", issued_before=later)
    assert refused["failed"] is True and "run -e ca_phase=trust first" in refused["msg"], refused
    result = rotate(replicas=cluster, authorities=["cluster"], issued_before=later)
    assert result["authorities"]["cluster"]["created"] is False
    assert [p["name"] for p in result["passes"]] == ["trust"]
    assert result["passes"][0]["material"]["k-master"] is None
    assert result["passes"][0]["material"]["k-master-c"]["cluster"]["cert"] == trust["material"]["k-master"]["cluster"]["cert"]
    apply(cluster, result["passes"][0])
    # Stopped in the sign pass: one replica signs with the new CA; a run of another CA leaves it, saying so.
    signing = rotate(replicas=cluster, authorities=["cluster"], phase="sign", issued_before=later)
    cluster["k-master"] = signing["passes"][0]["material"]["k-master"]
    other = rotate(replicas=cluster, authorities=["etcd"])
    assert other["authorities"]["cluster"]["rotating"] is True and "left as it is" in other["plan"][0]
    assert all(p["material"][r] is None or p["material"][r]["cluster"] == cluster[r]["cluster"]
               for p in other["passes"] for r in REPLICAS)
    refused = rotate(replicas=cluster, authorities=["cluster"], phase="retire", issued_before=later)
    assert refused["failed"] is True and "run -e ca_phase=sign first" in refused["msg"], refused
    resumed = rotate(replicas=cluster, authorities=["cluster"], phase="sign", issued_before=later)
    assert [p["name"] for p in resumed["passes"]] == ["sign"]
    assert resumed["passes"][0]["material"]["k-master"] is None


def test_check_mode_makes_no_ca_and_plans_every_pass(cluster):
    result = rotate(replicas=cluster, authorities=["etcd"], phase="all", check_mode=True)
    assert result["changed"] is True and [p["name"] for p in result["passes"]] == ["trust", "sign", "retire"]
    assert all(m == {} for p in result["passes"] for m in p["material"].values())
    assert result["authorities"]["etcd"]["new"] is None and result["authorities"]["etcd"]["created"] is True


@pytest.mark.parametrize("mangle, message", [
    (lambda c, other: c["k-master"]["cluster"].update(key=other["cluster"]["key"]), "in no state of a rotation"),
    # A CA certificate no other replica has, without its key: the new one, whose key is nowhere.
    (lambda c, other: c["k-master"]["cluster"].update(cert=other["cluster"]["cert"]), "the key of the new cluster CA"),
    # Another CA altogether on one replica, with its key: as if it had retired a CA the others never trusted.
    (lambda c, other: c["k-master"].update(cluster=dict(other["cluster"])), "more than one pass apart"),
    (lambda c, other: c["k-master"].pop("etcd"), "k-master holds no whole etcd CA"),
])
def test_bad_ca_material_is_named_and_nothing_planned(cluster, mangle, message, monkeypatch):
    # The other CA is made an hour on, as a CA made later is, so that its time tells it apart.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    monkeypatch.setattr(material, "now", lambda: later)
    other = pki(create_ca=True)["ca"]
    monkeypatch.undo()
    mangle(cluster, other)
    result = rotate(replicas=cluster, authorities=["cluster"])
    assert result["failed"] is True and message in result["msg"], result


def test_three_ca_certificates_or_a_lost_new_key_are_refused(cluster, monkeypatch):
    # The new CA is made an hour on, as it is in life (a bootstrap long before), so that its time tells it.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    monkeypatch.setattr(material, "now", lambda: later)
    first = rotate(replicas=cluster, authorities=["cluster"])
    monkeypatch.undo()
    trust = first["passes"][0]["material"]["k-master"]["cluster"]
    lost = {k: dict(v) for k, v in cluster["k-master"].items()}
    lost["cluster"] = {"cert": trust["cert"], "key": trust["key"]}
    result = rotate(replicas=dict(cluster, **{"k-master": lost}), authorities=["cluster"])
    assert result["failed"] is True and "no replica holds the key of the new cluster CA" in result["msg"]
    third = pki(create_ca=True)["ca"]["cluster"]["cert"]
    odd = {k: dict(v) for k, v in cluster["k-master-c"].items()}
    odd["cluster"]["cert"] = trust["cert"]
    replicas = dict(cluster, **{"k-master": dict(cluster["k-master"], cluster=dict(trust)),
                                "k-master-c": dict(odd, cluster={"cert": cluster["k-master-c"]["cluster"]["cert"] + third,
                                                                 "key": cluster["k-master-c"]["cluster"]["key"]})})
    result = rotate(replicas=replicas, authorities=["cluster"])
    assert result["failed"] is True and "3 different cluster CA certificates" in result["msg"]


def test_a_time_in_the_future_is_refused(cluster):
    result = rotate(replicas=cluster, authorities=["cluster"], issued_before="2999-01-01T00:00:00Z")
    assert result["failed"] is True and "in the future" in result["msg"]


def test_replica_pki_signs_with_the_certificate_that_matches_the_key_of_a_bundle(cluster):
    result = rotate(replicas=cluster, authorities=["etcd", "cluster"])
    [trust] = result["passes"]
    apply(cluster, trust)
    [sign] = rotate(replicas=cluster, authorities=["cluster"], phase="sign")["passes"]
    replica = {"name": "k-master", "internal_ip": "10.132.0.3"}
    for step, index in ((trust, 0), (sign, 0)):
        ca = step["material"]["k-master"]
        issued = pki(ca=ca, replica=replica)
        signer = certs(ca["cluster"]["cert"])[index]
        assert issued["signers"]["cluster"] == cert_pem(signer)
        leaf = x509.load_pem_x509_certificate(issued["leaves"]["apiserver"]["cert"].encode())
        assert leaf.issuer == signer.subject
        leaf.verify_directly_issued_by(signer)
        # The kubeconfigs trust the whole bundle.
        conf = issued["kubeconfigs"]["controller-manager"]
        assert base64.b64encode(ca["cluster"]["cert"].encode()).decode() in conf


def test_a_pass_starts_from_what_the_passes_before_it_wrote(cluster):
    """The etcd CA retired on one replica when a run stopped, then a run that starts the cluster CA's rotation: the
    retire pass that finishes etcd must keep the cluster CA where the trust pass took it."""
    etcd_run = rotate(replicas=cluster, authorities=["etcd"], phase="all")
    for step in etcd_run["passes"][:2]:
        apply(cluster, step)
    cluster["k-master"] = etcd_run["passes"][2]["material"]["k-master"]
    result = rotate(replicas=cluster, authorities=["cluster", "etcd"],
                    issued_before=datetime.datetime.now(datetime.timezone.utc).isoformat())
    assert [p["name"] for p in result["passes"]] == ["trust", "retire"]
    trust, retire = result["passes"]
    assert trust["authorities"] == ["cluster"] and retire["authorities"] == ["etcd"]
    assert retire["material"]["k-master"] is None
    for replica in ("k-master-c", "k-master-d"):
        assert retire["material"][replica]["cluster"] == trust["material"][replica]["cluster"]
        assert len(certs(retire["material"][replica]["cluster"]["cert"])) == 2
        assert len(certs(retire["material"][replica]["etcd"]["cert"])) == 1
