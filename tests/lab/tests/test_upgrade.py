# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""upgrade in the lab: three replicas on the custom-mode network move from Kubernetes v1.36 to v1.37.0, the lab's
stand-ins built as each release (tests/lab/standins: the version they report and the feature gates they accept).

First the one replica of a new cluster moves to a patch release (v1.36.1), its API down while kube-apiserver
restarts, as the run says. The cluster runs with a feature gate that v1.37 no longer knows (AnyVolumeDataSource), as
clusters do: the first upgrade to v1.37.0 stops at the first replica, whose new kube-apiserver refuses the gate, and
puts it back into the load balancer while the others serve. The version-skew policy then refuses the next minor until
the upgrade is finished, and the run without the gate finishes it: that replica first, the etcd leader last, each out
of the load balancer while the others serve, with an etcd written every 200 ms and the API asked through the reserved
address every 200 ms.
"""

from __future__ import annotations

import json
import os

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kubeha_lab.__main__ import etcd_releases
from labcli import save_report
from lifecycle_lab import ETCDCTL, etcd_leader, section

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

REPLICAS = ["k-master", "k-master-c", "k-master-d"]
# Where the lifecycle roles keep their etcd snapshots (kubeha_etcd_snapshot_dir).
SNAPSHOTS = "/mnt/disks/master-pd/var/etcd/snapshots"
# A gate of v1.36 (locked to true there) that v1.37 removed.
GATE = json.dumps({"control_plane_extra_flags": {"kube-apiserver": {"feature-gates": "AnyVolumeDataSource=true"}}})
NO_GATE = json.dumps({"control_plane_extra_flags": {}})
# The default health check (kubeha.gce.ha_lb): every 5 s, unhealthy after 2 failures.
DETECTION_S = 10.0


def versions(life, names=tuple(REPLICAS)):
    """The release of kube-apiserver's binary on each replica, as kube-apiserver --version prints it."""
    return {name: life.ssh("/opt/kubernetes/bin/kube-apiserver --version", name=name).stdout.strip() for name in names}


def running(life, name, unit):
    """The version the process of ``unit`` that runs now on ``name`` started as (the last log line of a start that says
    it: "Version" of kube-apiserver, "Starting" of the others), and whether the unit is active."""
    said = life.ssh("sudo journalctl -u %s -o cat --no-pager | grep -E '\"(Version|Starting)\" .*version=' | tail -1; "
                    "systemctl is-active %s" % (unit, unit), name=name, check=False).stdout.splitlines()
    return said[0].split('version="')[1].split('"')[0] if said and 'version="' in said[0] else "", said[-1:] == ["active"]


def etcd_versions(life):
    """The version each etcd member reports, by member name."""
    done = life.ssh("%s --endpoints https://127.0.0.1:2379 endpoint status --cluster -w json" % ETCDCTL)
    names = {member[0]: member[1] for member in life.members()}
    return {names[status["Status"]["header"]["member_id"]]: status["Status"]["version"] for status in json.loads(done.stdout)}


def snapshots(life):
    """The etcd snapshots on the replicas' data disks (REPLICA:FILE): each run takes its own through a replica that
    serves, and keeps the newest few of each."""
    return {"%s:%s" % (name, found) for name in REPLICAS if life.instance(name)
            for found in life.ssh("sudo ls %s 2>/dev/null || true" % SNAPSHOTS, name=name).stdout.split()}


# The files each replica trusts, by CA, under /etc/kubernetes/pki.
TRUSTED = {"cluster": "ca.crt", "etcd": "etcd/ca.crt", "front_proxy": "front-proxy-ca.crt"}
# What each served port presents, and the CA that signs it.
SERVED = ((443, "cluster"), (2379, "etcd"), (2380, "etcd"))


def pem_certs(text):
    return x509.load_pem_x509_certificates(text.encode())


def trusted(life, name):
    """The certificates in each file of ``name`` that its services trust, by CA."""
    return {ca: pem_certs(life.ssh("sudo cat /etc/kubernetes/pki/%s" % path, name=name).stdout) for ca, path in TRUSTED.items()}


def issued_by(cert, ca):
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_signed_by(life, name, cas):
    """Every certificate on ``name``, and what kube-apiserver and etcd present on 443, 2379 and 2380 (read with
    openssl), is signed by the CA of ``cas`` (CA name -> certificate) it belongs to; the services restarted since."""
    ip = life.ssh("hostname -I", name=name).stdout.split()[0]
    for port, ca in SERVED:
        served = life.ssh("openssl s_client -connect %s:%d < /dev/null 2> /dev/null | openssl x509" % (ip, port), name=name)
        assert issued_by(pem_certs(served.stdout)[0], cas[ca]), (name, port)
    for stem, ca in (("apiserver-etcd-client", "etcd"), ("front-proxy-client", "front_proxy"), ("scheduler", "cluster"),
                     ("controller-manager", "cluster"), ("apiserver-kubelet-client", "cluster")):
        cert = pem_certs(life.ssh("sudo cat /etc/kubernetes/pki/%s.crt" % stem, name=name).stdout)[0]
        assert issued_by(cert, cas[ca]), (name, stem)
    # etcd takes kube-apiserver's etcd client certificate (the new CA's), and kube-apiserver is ready through it.
    assert life.ssh("sudo etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt "
                    "--cert /etc/kubernetes/pki/apiserver-etcd-client.crt --key /etc/kubernetes/pki/apiserver-etcd-client.key "
                    "endpoint health", name=name, check=False).returncode == 0
    for unit in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert life.ssh("systemctl is-active %s" % unit, name=name, check=False).stdout.strip() == "active", (name, unit)
    signing = pem_certs(life.ssh("sudo cat /etc/kubernetes/pki/ca-signing.crt", name=name).stdout)
    assert signing == [cas["cluster"]], name


def rotate_the_cas(life, per_replica):
    """rotate_certs authorities=all in three runs: refused while kube-controller-manager signs with ca.crt, for an
    unknown CA and for the cluster CA in one run; check mode changes nothing; trust (both trusted, the old CAs sign: a client of the old cluster CA alone
    still verifies the API), sign (the new CAs sign every certificate in use: that client is refused, the controller's
    copy and kubeconfig trust both), retire (the new CAs alone); the same run again, with its own time, changes
    nothing."""
    before = {name: trusted(life, name) for name in REPLICAS}
    old = {ca: certs[0] for ca, certs in before["k-master"].items()}
    assert all(len(certs) == 1 for name in REPLICAS for certs in before[name].values()), before
    old_only = life.tmp / "old-ca.crt"
    old_only.write_text((life.tmp / "ca.crt").read_text())
    readyz = "https://%s/readyz" % life.address()
    unit = "/etc/systemd/system/kube-controller-manager.service"
    signing = "--cluster-signing-cert-file=/etc/kubernetes/pki/"
    life.ssh("sudo sed -i 's|%sca-signing.crt|%sca.crt|' %s" % (signing, signing, unit), name="k-master-c")
    life.refused("rotate the CAs under an older unit", "rotate_certs", "kube-controller-manager on k-master-c signs with "
                 "/etc/kubernetes/pki/ca.crt", "zone=europe-west1-b", "authorities=all")
    life.ssh("sudo sed -i 's|%sca.crt|%sca-signing.crt|' %s" % (signing, signing, unit), name="k-master-c")
    life.refused("rotate a CA that does not exist", "rotate_certs", "names kubelet, which is not a CA of the cluster",
                 "zone=europe-west1-b", "authorities=cluster,kubelet")
    life.refused("rotate the cluster CA in one run", "rotate_certs", "cluster moves one phase per run",
                 "zone=europe-west1-b", "authorities=cluster,etcd", "ca_phase=all")
    life.step("rotate the CAs, in check mode", "rotate_certs", "zone=europe-west1-b", "authorities=all",
              "certificates=none", "--check")
    assert {name: trusted(life, name) for name in REPLICAS} == before
    kubeconfig = "kubeconfig_dest=%s" % life.kubeconfig

    # trust: every replica trusts old + new, the old CAs still sign; a client of the old cluster CA alone verifies.
    trusting = life.step("rotate the CAs: trust", "rotate_certs", "zone=europe-west1-b", "authorities=all",
                         "certificates=none", kubeconfig)
    when = trusting.stdout.split("finishes it")[0].rsplit("-e issued_before=", 1)[1].split()[0]
    report = section(trusting, "Say what was done on each replica")
    per_replica["rotate the CAs: trust"] = report
    new = {}
    for name in REPLICAS:
        line = next(line for line in report if line.startswith("trust pass, %s:" % name))
        assert "restarted etcd" in line and "kube-apiserver" in line and "out of the load balancer" in line, line
        now = trusted(life, name)
        for ca in TRUSTED:
            assert len(now[ca]) == 2 and now[ca][0] == old[ca] and now[ca][1] != old[ca], (name, ca)
            assert new.setdefault(ca, now[ca][1]) == now[ca][1], (name, ca)
        check_signed_by(life, name, old)
    summary = section(trusting, "Say which CAs are trusted now")
    assert any(line.startswith("cluster CA") and "ca_phase=sign" in line for line in summary), summary
    assert pem_certs((life.tmp / "ca.crt").read_text()) == [old["cluster"], new["cluster"]]
    assert life.fetch(readyz, ca=old_only)["status"] == 200
    assert life.kubectl("get", "--raw", "/readyz").returncode == 0

    # sign: the new CAs sign every certificate in use, both trusted; the old CA alone no longer verifies the API.
    leader = etcd_leader(life)
    signed = life.step("rotate the CAs: sign", "rotate_certs", "zone=europe-west1-b", "authorities=all",
                       "certificates=none", "ca_phase=sign", "issued_before=%s" % when, kubeconfig)
    report = section(signed, "Say what was done on each replica")
    per_replica["rotate the CAs: sign"] = report
    for name in REPLICAS:
        line = next(line for line in report if line.startswith("sign pass, %s:" % name))
        assert "issued again" in line and "apiserver-etcd-client" in line, line
        assert trusted(life, name) == {ca: [new[ca], old[ca]] for ca in TRUSTED}, name
        assert life.ssh("ls /etc/kubernetes/pki/ca-next.key /etc/kubernetes/pki/front-proxy-ca-next.key 2>&1 || true",
                        name=name).stdout.count("No such file") == 2
        check_signed_by(life, name, new)
    assert [line.split(": ")[0].split(", ")[1] for line in report][-1] == leader, (report, leader)
    assert pem_certs((life.tmp / "ca.crt").read_text()) == [new["cluster"], old["cluster"]]
    assert life.fetch(readyz, ca=old_only)["status"] == -1
    assert life.readyz()["status"] == 200
    assert life.kubectl("get", "--raw", "/readyz").returncode == 0

    # retire: the new CAs alone; the same run again changes nothing.
    retired = life.step("rotate the CAs: retire", "rotate_certs", "zone=europe-west1-b", "authorities=all",
                        "certificates=none", "ca_phase=retire", "issued_before=%s" % when, kubeconfig)
    per_replica["rotate the CAs: retire"] = section(retired, "Say what was done on each replica")
    for name in REPLICAS:
        assert trusted(life, name) == {ca: [cert] for ca, cert in new.items()}, name
        check_signed_by(life, name, new)
    assert pem_certs((life.tmp / "ca.crt").read_text()) == [new["cluster"]]
    assert life.readyz()["status"] == 200
    assert life.kubectl("get", "--raw", "/readyz").returncode == 0
    # Again, with the time the retire run printed, as a stopped one is finished: nothing to do, no new CA.
    when = retired.stdout.split("finishes it")[0].rsplit("-e issued_before=", 1)[1].split()[0]
    life.step("rotate the CAs: retire, again", "rotate_certs", "zone=europe-west1-b", "authorities=all",
              "certificates=none", "ca_phase=retire", "issued_before=%s" % when, kubeconfig, expect_changed=0)
    assert {name: trusted(life, name) for name in REPLICAS} == {name: {ca: [cert] for ca, cert in new.items()}
                                                                for name in REPLICAS}


def test_upgrade_one_minor_through_a_stopped_run(life, capsys):  # pylint: disable=redefined-outer-name
    nexts = [version for version in etcd_releases() if version.startswith("3.5.")]
    assert nexts, "no etcd 3.5 in the cache (scripts/bootstrap.sh fetches Debian 13's): etcd's upgrade cannot be tested"
    etcd_next = nexts[0]
    life.step("bootstrap on v1.36.0 with a feature gate", "bootstrap", "zone=europe-west1-b", GATE)

    # -- one replica: a patch release, the API down while kube-apiserver restarts, as the run says ------------------
    single = life.step("upgrade the one replica to v1.36.1", "upgrade", "zone=europe-west1-b",
                       "kubernetes_version=v1.36.1", GATE)
    assert "the cluster has one replica: its API is down while its services restart" in single.stdout, single.stdout[-3000:]
    line = section(single, "Say what was done on each replica")
    assert len(line) == 1 and line[0].startswith("k-master: converged again"), line
    assert "the API down meanwhile: no other replica served it" in line[0], line
    assert versions(life, ["k-master"]) == {"k-master": "Kubernetes v1.36.1-kubeha-lab-standin"}
    assert running(life, "k-master", "kube-apiserver") == ("v1.36.1-kubeha-lab-standin", True)
    assert life.readyz()["status"] == 200

    life.step("replicate into c and d", "replicate", "zone=europe-west1-c,europe-west1-d", "kubernetes_version=v1.36.1",
              GATE)
    assert set(versions(life).values()) == {"Kubernetes v1.36.1-kubeha-lab-standin"}
    life.start_writer()
    life.start_api_poller()

    # -- refused before anything changes -------------------------------------------------------------------------
    life.refused("upgrade without a version", "upgrade", "upgrade needs the Kubernetes release to move the replicas to",
                 "zone=europe-west1-b")
    life.refused("upgrade two minors at once", "upgrade", "Kubernetes is upgraded one minor at a time. Upgrade to a "
                 "release of 1.37 first", "zone=europe-west1-b", "kubernetes_version=v1.38.0", GATE)

    # -- check mode: says what would move, moves nothing -----------------------------------------------------------
    before = {name: running(life, name, "kube-apiserver") for name in REPLICAS}
    taken = snapshots(life)
    plan = life.step("upgrade to v1.37.0 in check mode", "upgrade", "zone=europe-west1-b", "kubernetes_version=v1.37.0",
                     GATE, "--check")
    assert "k-master, k-master-c, k-master-d moves to v1.37.0" in plan.stdout, plan.stdout[-3000:]
    assert set(versions(life).values()) == {"Kubernetes v1.36.1-kubeha-lab-standin"}
    assert {name: running(life, name, "kube-apiserver") for name in REPLICAS} == before
    assert snapshots(life) == taken, "a snapshot in check mode"

    # -- the gate v1.37 removed: the first replica's new kube-apiserver refuses it; the run stops there and puts the
    # replica back, whose health check keeps it from traffic; the others serve on v1.36 ---------------------------
    first_leader = etcd_leader(life)
    stopped = life.stopped("upgrade with a gate v1.37 removed", "upgrade", "again failed at", "zone=europe-west1-b",
                           "kubernetes_version=v1.37.0", GATE, "control_plane_wait_timeout=20")
    assert len(snapshots(life) - taken) == 1, "no etcd snapshot before the first change"
    taken = snapshots(life)
    broken = next(name for name in REPLICAS if "converging %s again failed" % name in stopped.stdout)
    assert broken != first_leader, "the etcd leader was not left for last"
    assert "It was put back into the load balancer" in stopped.stdout, stopped.stdout[-3000:]
    now = versions(life)
    assert now[broken] == "Kubernetes v1.37.0-kubeha-lab-standin", now
    assert [now[name] for name in REPLICAS if name != broken] == ["Kubernetes v1.36.1-kubeha-lab-standin"] * 2, now
    journal = life.ssh("sudo journalctl -u kube-apiserver -o cat --no-pager | tail -50", name=broken, check=False).stdout
    assert "unrecognized feature gate: AnyVolumeDataSource" in journal, journal[-2000:]
    assert life.readyz()["status"] == 200

    # -- the version-skew policy: the next minor waits until every replica runs this one ------------------------------
    life.refused("upgrade to v1.38.0 halfway to v1.37", "upgrade", "Finish the upgrade to 1.37 first "
                 "(-e kubernetes_version=v1.37.0)", "zone=europe-west1-b", "kubernetes_version=v1.38.0")

    # -- without the gate: the broken replica first, the etcd leader last, each out of the load balancer ------------
    last_leader = etcd_leader(life)
    done = life.step("upgrade to v1.37.0 without the gate", "upgrade", "zone=europe-west1-b",
                     "kubernetes_version=v1.37.0", NO_GATE)
    report = section(done, "Say what was done on each replica")
    per_replica = {"upgrade to v1.37.0 without the gate": report}
    order = [line.split(": ")[0] for line in report]
    assert order[0] == broken and order[-1] == last_leader and sorted(order) == REPLICAS, report
    for line in report:
        assert "restarted kube-apiserver" in line and "(out of the load balancer: ready after" in line, line
    assert set(versions(life).values()) == {"Kubernetes v1.37.0-kubeha-lab-standin"}
    for name in REPLICAS:
        for unit in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            assert running(life, name, unit) == ("v1.37.0-kubeha-lab-standin", True), (name, unit)
        unit = life.ssh("systemctl cat kube-apiserver", name=name).stdout
        assert "AnyVolumeDataSource" not in unit, unit
    assert len(snapshots(life) - taken) == 1, "no etcd snapshot before the first change"
    taken = snapshots(life)
    assert '"kubeha_upgraded"' in done.stdout and '"kubernetes_version": "v1.37.0"' in done.stdout, done.stdout[-3000:]
    assert sorted(m[1] for m in life.members()) == REPLICAS
    assert life.readyz()["status"] == 200

    # -- done: the same run changes nothing; a downgrade of the minor is refused unless asked for ------------------
    again = life.step("upgrade to v1.37.0 again", "upgrade", "zone=europe-west1-b", "kubernetes_version=v1.37.0",
                      NO_GATE, expect_changed=0)
    assert "every replica runs v1.37.0" in again.stdout, again.stdout[-3000:]
    assert snapshots(life) == taken, "a snapshot when nothing moves"
    life.refused("downgrade to v1.36.1", "upgrade", "a downgrade to an older minor is refused unless asked for with "
                 "-e allow_downgrade=true", "zone=europe-west1-b", "kubernetes_version=v1.36.1", NO_GATE)
    # Later runs are given the version the cluster runs: the collection's default is refused.
    life.refused("replicate with the default version", "replicate", "runs Kubernetes v1.37.0-kubeha-lab-standin, and "
                 "this run would install v1.36.0", "zone=europe-west1-c,europe-west1-d", NO_GATE)

    # -- etcd, from Debian 12's 3.4 to Debian 13's 3.5 (scripts/bootstrap.sh fetches it), member by member, the
    # leader last, with the Kubernetes release the cluster runs; its cluster version moves once all run it -----------
    life.refused("upgrade etcd two minors at once", "upgrade", "etcd is upgraded one minor at a time. Upgrade to a "
                 "release of 3.5 first", "zone=europe-west1-b", "kubernetes_version=v1.37.0", "etcd_version=3.6.0", NO_GATE)
    etcd_last = etcd_leader(life)
    moved = life.step("upgrade etcd to %s" % etcd_next, "upgrade", "zone=europe-west1-b", "kubernetes_version=v1.37.0",
                      "etcd_version=%s" % etcd_next, NO_GATE)
    assert "etcd k-master, etcd k-master-c, etcd k-master-d moves to etcd %s" % etcd_next in moved.stdout, moved.stdout[-3000:]
    report = section(moved, "Say what was done on each replica")
    per_replica["upgrade etcd to %s" % etcd_next] = report
    assert [line.split(": ")[0] for line in report][-1] == etcd_last, report
    for line in report:
        assert "restarted etcd" in line and "kube-apiserver" not in line.split("restarted ")[1], line
    assert etcd_versions(life) == {name: etcd_next for name in REPLICAS}
    assert life.readyz()["status"] == 200
    life.step("upgrade etcd again", "upgrade", "zone=europe-west1-b", "kubernetes_version=v1.37.0",
              "etcd_version=%s" % etcd_next, NO_GATE, expect_changed=0)
    life.refused("downgrade etcd", "upgrade", "etcd does not go back to an older minor", "zone=europe-west1-b",
                 "kubernetes_version=v1.37.0", "etcd_version=3.4.23", NO_GATE)
    life.refused("replicate with the etcd before", "replicate", "the etcd members run %s, and this run would install "
                 "etcd 3.4.23: a member is not added or converged with another minor" % etcd_next,
                 "zone=europe-west1-c,europe-west1-d", "kubernetes_version=v1.37.0", NO_GATE)

    # -- the CAs rotated with a trust overlap: the new ones join the old ones in what every replica trusts, then sign
    # (every certificate issued again), both still trusted; a later run retires the old ones ------------------------
    rotate_the_cas(life, per_replica)

    # -- what the writer and the API poller saw: no write failed, and the API never went unanswered for longer than
    # the health check takes to notice a replica (each was taken out before it restarted, so it is 0 s here) ----
    life.stop_writer()
    life.stop_api_poller()
    measured = life.report()
    steps = {step["step"]: step for step in measured["steps"] if "ended" in step}
    measured["per_replica"] = per_replica
    path = save_report("upgrade", measured)
    with capsys.disabled():
        print("\n".join(["", "kubeha.gce upgrade in the lab (saved to %s)" % path] + [
            "%-40s %7.1f s  writes %d (%d failed, longest gap %.2f s)  API polls %d (%d failed, longest gap %.2f s)" % (
                title, step["wall_s"], step["writes"], step["failed_writes"], step["write_gap_s"], step["polls"],
                step["failed_polls"], step["api_window_s"]) for title, step in steps.items()] + [
            line for title, lines in per_replica.items() for line in [title + ":"] + ["  " + text for text in lines]]))
    for title in ("upgrade to v1.37.0 in check mode", "upgrade with a gate v1.37 removed",
                  "upgrade to v1.37.0 without the gate", "upgrade to v1.37.0 again", "upgrade etcd to %s" % etcd_next,
                  "rotate the CAs, in check mode", "rotate the CAs: trust", "rotate the CAs: sign",
                  "rotate the CAs: retire"):
        step = steps[title]
        assert step["writes"] > 0 and step["polls"] > 0, step
        assert step["api_window_s"] <= DETECTION_S, step
        # The writer writes through k-master's own member: only while that member restarts may a write fail (it
        # answers again within seconds; 30 s is the margin of a loaded machine).
        if title.startswith("upgrade etcd") or "CAs" in title:
            assert step["write_gap_s"] <= 30.0, step
        else:
            assert step["failed_writes"] == 0, step
