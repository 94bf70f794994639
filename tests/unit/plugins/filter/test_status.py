# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.kubeha.gce.plugins.filter.status import FilterModule, cluster_report, workflow_report


def replica(name, zone, status="RUNNING"):
    return {"name": name, "zone": zone, "status": status}


def member(name, healthy=True, learner=False, leader=False):
    return {"name": name, "healthy": healthy, "is_learner": learner, "is_leader": leader, "peer_urls": []}


def etcd(*members, quorum=2):
    voters = [m for m in members if not m["is_learner"]]
    healthy = len([m for m in voters if m["healthy"]])
    leader = next((m for m in members if m["is_leader"]), None)
    return {"members": list(members), "voters": len(voters), "healthy_voters": healthy, "quorum": quorum,
            "has_quorum": healthy >= quorum, "leader": leader}


THREE = {"replicas": [replica("k-master", "europe-west1-b"), replica("k-master-c", "europe-west1-c"),
                      replica("k-master-d", "europe-west1-d")], "unavailable_zones": []}
LB = {"state": "balanced", "members": [{"name": "k-master", "health": "HEALTHY"},
                                       {"name": "k-master-c", "health": "HEALTHY"}]}


def test_a_healthy_cluster_is_not_degraded():
    report = cluster_report(THREE, etcd(member("k-master", leader=True), member("k-master-c"), member("k-master-d")),
                            LB, ["k-master", "k-master-c", "k-master-d"])
    assert report["degraded"] is False and report["problems"] == [] and report["advice"] == []
    assert [r["state"] for r in report["replicas"]] == ["ok", "ok", "ok"]
    assert report["etcd"] == {"voters": 3, "healthy_voters": 3, "quorum": 2, "has_quorum": True}
    assert report["etcd_leader"] == "k-master"
    assert report["load_balancer"] == {"state": "balanced", "members": {"k-master": "HEALTHY", "k-master-c": "HEALTHY"}}
    assert FilterModule().filters()["cluster_report"] is cluster_report
    assert sorted(FilterModule().filters()) == [
        "certificate_expiry", "cluster_report", "etcd_summary", "snapshot_summary", "workflow_report"]


def test_a_zone_outage_reports_the_member_there_and_keeps_the_rest():
    cluster = {"replicas": [replica("k-master", "europe-west1-b"), replica("k-master-d", "europe-west1-d")],
               "unavailable_zones": [{"name": "europe-west1-c", "message": "Scope 'zones/europe-west1-c' is unreachable."}]}
    read = etcd(member("k-master", leader=True), member("k-master-c", healthy=False), member("k-master-d"))
    report = cluster_report(cluster, read, LB, ["k-master", "k-master-d"])
    assert report["degraded"] is True
    states = {r["name"]: (r["zone"], r["state"]) for r in report["replicas"]}
    assert states == {"k-master": ("europe-west1-b", "ok"), "k-master-c": (None, "zone unavailable"),
                      "k-master-d": ("europe-west1-d", "ok")}
    assert report["problems"] == ["zone europe-west1-c does not answer Compute Engine; its replicas cannot be listed "
                                  "(etcd members not found in the zones that answer: k-master-c)"]
    assert report["advice"] == ["etcd keeps its quorum (2 of 3 voting members healthy, 2 needed) and the API is served "
                                "by the replicas that answer; wait for europe-west1-c to come back, then run status "
                                "again"]
    assert report["unavailable_zones"] == ["europe-west1-c"]


def test_no_quorum_says_so_and_what_to_do():
    read = etcd(member("k-master"), member("k-master-c", healthy=False), member("k-master-d", healthy=False))
    report = cluster_report(THREE, read, LB, ["k-master"])
    assert report["etcd"]["has_quorum"] is False
    assert "etcd has NO QUORUM: 1 of 3 voting members healthy, 2 needed; the API cannot write" in report["problems"]
    assert report["advice"][0].startswith("bring the unhealthy members back")
    assert {r["name"]: r["state"] for r in report["replicas"]}["k-master-c"] == "no SSH answer"


def test_a_broken_replica_in_a_zone_that_answers_is_to_be_recovered():
    cluster = dict(THREE, replicas=[replica("k-master", "europe-west1-b"), replica("k-master-c", "europe-west1-c",
                                                                                   "TERMINATED"),
                                    replica("k-master-d", "europe-west1-d")])
    read = etcd(member("k-master"), member("k-master-c", healthy=False), member("k-master-d"), {"name": "",
                "healthy": False, "is_learner": True, "is_leader": False})
    report = cluster_report(cluster, read, LB, ["k-master", "k-master-d"])
    assert "k-master-c (europe-west1-c): VM terminated" in report["problems"]
    assert "1 etcd learner(s) never started (a run stopped midway)" in report["problems"]
    assert report["advice"] == ["replace k-master-c in place: ansible-playbook kubeha.gce.recover -e zone=europe-west1-c "
                                "-e replica_name=k-master-c"]


def test_etcd_unreadable_is_degraded_with_unknown_quorum():
    report = cluster_report(THREE, {}, {}, [])
    assert report["degraded"] is True and report["etcd"]["has_quorum"] is None
    assert "etcd could not be read through any replica" in report["problems"]
    assert all(r["state"] == "no SSH answer" for r in report["replicas"])


def test_certificate_expiry_names_each_under_the_base_soonest_first():
    def pem(days):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
        now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=days))
                .sign(key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    files = {"/etc/kubernetes/pki/apiserver.crt": {"content": pem(365)}, "/etc/kubernetes/pki/etcd/peer.crt": {"content": pem(10)},
             "/other/x.crt": {"content": pem(20)}}
    files["/etc/kubernetes/pki/ca.crt"] = {"content": "nope"}
    found = FilterModule().filters()["certificate_expiry"](files)
    # One that cannot be read comes first, with the reason; the others soonest first.
    assert found[0]["name"] == "ca.crt" and found[0]["not_after"] is None and found[0]["error"].startswith("ca.crt is not a PEM certificate")
    assert found[1:] == [
        {"name": "etcd/peer.crt", "not_after": "2030-01-11T00:00:00Z", "error": None},
        {"name": "/other/x.crt", "not_after": "2030-01-21T00:00:00Z", "error": None},
        {"name": "apiserver.crt", "not_after": "2031-01-01T00:00:00Z", "error": None}]


def test_snapshot_summary_names_the_file_the_replica_and_the_copy():
    summary = FilterModule().filters()["snapshot_summary"]
    taken = {"snapshot": {"path": "/d/k-20261205T031500Z.db", "revision": 812, "total_keys": 312}}
    assert summary(taken, "k-master") == "etcd snapshot: /d/k-20261205T031500Z.db on k-master (revision 812, 312 keys)"
    assert summary(taken, "k-master", "/backups/k/k-20261205T031500Z.db").endswith(
        "(revision 812, 312 keys); copied to /backups/k/k-20261205T031500Z.db")
    assert summary({"snapshot": {"path": "/d/k-1.db"}}, "k-master") == "etcd snapshot: /d/k-1.db on k-master would be taken (check mode)"
    assert summary({}, "k-master") == summary({"skipped": True}, "k-master") == \
        "etcd snapshot: none taken (the etcd membership did not change)"


def test_the_events_etcd_is_reported_beside_the_main_one():
    main = etcd(member("k-master", leader=True), member("k-master-c"), member("k-master-d"))
    reachable = ["k-master", "k-master-c", "k-master-d"]
    events = etcd(member("k-master"), member("k-master-c", leader=True), member("k-master-d"))
    report = cluster_report(THREE, main, LB, reachable, events=events)
    assert report["degraded"] is False and report["events_etcd"]["has_quorum"] is True
    # Without an events etcd there is nothing to say of it.
    assert cluster_report(THREE, main, LB, reachable)["events_etcd"] is None
    # A replica that is a healthy voter of the main etcd but not of the events one, and an events etcd that no
    # replica could read, each degrade the cluster.
    learner = etcd(member("k-master"), member("k-master-c"), member("k-master-d", learner=True))
    report = cluster_report(THREE, main, LB, reachable, events=learner)
    assert report["degraded"] is True and report["problems"] == ["k-master-d: events etcd learner"]
    lost = etcd(member("k-master"), member("k-master-c", healthy=False), member("k-master-d", healthy=False))
    assert cluster_report(THREE, main, LB, reachable, events=lost)["problems"] == [
        "the events etcd has NO QUORUM: 1 of 3 voting members healthy, 2 needed; the API cannot write events"]
    assert cluster_report(THREE, main, LB, reachable, events={})["problems"] == [
        "the events etcd could not be read through any replica"]
    # A member of no replica (a run stopped between the two etcds), and a learner that never started, are said too.
    left = etcd(member("k-master"), member("k-master-c"), member("k-master-d"), member("k-master-x", healthy=False),
                member("", learner=True))
    assert cluster_report(THREE, main, LB, reachable, events=left)["problems"] == [
        "events etcd member k-master-x belongs to no replica of the cluster (unhealthy)",
        "1 events etcd learner(s) never started (a run stopped midway)"]


def test_etcd_summary_is_one_line_per_etcd_cluster():
    summary = FilterModule().filters()["etcd_summary"]
    main = etcd(member("k-master", leader=True), member("k-master-c"), member("k-master-d", healthy=False))
    main["learners"] = []
    assert summary(main) == "etcd: 3 voting members, 2 healthy, leader k-master, 0 learners"
    assert summary({}, "events etcd") == "events etcd: not read"
    # Read in a loop over the etcd clusters, each result carries its cluster's label.
    assert summary(dict(main, item={"name": "events", "label": "events etcd"})).startswith("events etcd: 3 voting")


def test_workflow_report_gives_each_replica_its_zone_and_etcd_state():
    read = etcd(member("k-master", leader=True), member("k-master-c", healthy=False), member("k-master-d", learner=True),
                member("k-master-e"))
    # A loop over the etcd clusters: the first result, the main etcd, is the one reported.
    looped = {"results": [dict(read, item={"label": "etcd"}), etcd(quorum=9)]}
    replicas = [replica("k-master", "europe-west1-b"), replica("k-master-c", "europe-west1-c"),
                replica("k-master-d", "europe-west1-d"), replica("k-master-f", "europe-west1-f")]
    report = FilterModule().filters()["workflow_report"](looped, replicas, "replicate", "k", region="europe-west1",
                                                         address="203.0.113.10", done=["k-master-f", "k-master-d"])
    assert report["replicas"] == [
        {"name": "k-master", "zone": "europe-west1-b", "state": "ok"},
        {"name": "k-master-c", "zone": "europe-west1-c", "state": "etcd unhealthy"},
        {"name": "k-master-d", "zone": "europe-west1-d", "state": "learner"},
        {"name": "k-master-e", "zone": None, "state": "ok"},
        {"name": "k-master-f", "zone": "europe-west1-f", "state": "not a member"},
    ]
    assert report["etcd"] == {"voters": 3, "healthy_voters": 2, "quorum": 2, "has_quorum": True}
    assert report["etcd_leader"] == "k-master"
    assert (report["action"], report["cluster"], report["region"], report["address"]) == (
        "replicate", "k", "europe-west1", "203.0.113.10")
    assert report["changed"] is True and report["done"] == ["k-master-d", "k-master-f"]


def test_workflow_report_without_an_etcd_read_says_so():
    for nothing in ({}, {"skipped": True}, {"results": []}, None):
        report = workflow_report(nothing, [replica("k-master", "europe-west1-b")], "bootstrap", "k")
        assert report["replicas"] == [{"name": "k-master", "zone": "europe-west1-b", "state": "not read"}]
        assert report["etcd"] == {"voters": None, "healthy_voters": None, "quorum": None, "has_quorum": None}
        assert report["etcd_leader"] is None and report["changed"] is False and report["done"] == []
