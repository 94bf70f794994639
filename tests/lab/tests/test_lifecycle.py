# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lifecycle playbooks end to end in the lab: real machines, real etcd, the control-plane stand-ins, on a
custom-mode network that has no firewall rule but those the collection makes (``lab up --network custom``).

Each playbook runs as a user runs it (``tests/lab/lab exec -- ansible-playbook playbooks/X.yml -e ...``);
a run with nothing left to do must report changed=0 (a plain re-run of each role is its molecule scenario's
idempotence step). A bad request to each playbook, and each preflight rule that needs live etcd or a zone
outage, must fail with the rule's message and leave the simulator's resources and the etcd membership as they
were (the rules themselves are unit-tested with their filters). A background writer puts a key into etcd every
200 ms throughout; its failed writes are reported per step. The first replicate is killed in the middle of a
membership change; the next run must finish it. Each way a replica's join can fail after it changed something
is provoked once (an instance insert that ends in an error, etcd failing to start on the new replica, the load
balancer failing after the etcd join): the run must stop saying what it undid and what it left, with the etcd
membership as it was, and the next run must finish the join. (A learner that does not catch up, so that etcd
refuses to promote it, fails the same step of the join; its timeout is etcd_member's test in tests/etcd.)
At the end the masters are torn down as a whole, beside a worker node that must stay, with a zone down: what is
there is left and said, and deleted by the same command once the zone answers.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from labcli import control, save_report
from lifecycle_lab import ETCDCTL, etcd_leader, recap, section

# The etcd data directory on a replica's data disk (kubeha_etcd_data_dir).
ETCD_DATA = "/mnt/disks/master-pd/var/etcd/data"

# Where the lifecycle roles keep their etcd snapshots (kubeha_etcd_snapshot_dir).
SNAPSHOTS = "/mnt/disks/master-pd/var/etcd/snapshots"

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]


def failure_text(output):
    """The end of a run's output, where its failure is."""
    return output[-4000:]


def table(report):
    lines = ["kubeha.gce lifecycle in the lab (a write to etcd every 200 ms; a new TLS connection to the reserved "
             "address asking /readyz every 200 ms)",
             "%-46s %8s %8s %8s %8s %10s %10s" % (
                 "step", "wall s", "changed", "writes", "failed", "API failed", "API gap s")]
    for step in report["steps"]:
        if "wall_s" in step:
            changed = "killed" if step.get("killed") else "stopped" if step.get("stopped") else step["changed"]
            lines.append("%-46s %8.1f %8s %8d %8d %10s %10.2f" % (
                step["step"][:46], step["wall_s"], changed, step.get("writes", 0), step.get("failed_writes", 0),
                "%d/%d" % (step.get("failed_polls", 0), step.get("polls", 0)), step.get("api_window_s", 0.0)))
        elif "stopped" in step:
            lines.append("%-46s %s" % (step["step"][:46], "stopped, etcd unchanged"))
        else:
            lines.append("%-46s %s" % (step["step"][:46], "refused, nothing changed"))
    lines.append("writes: %d, failed: %d; API polls: %d, failed: %d" % (report["writes"], report["failed_writes"],
                                                                        report["polls"], report["failed_polls"]))
    return "\n".join(lines)


def cloud_controller_holder(life, other_than="", limit=150):
    """Who holds the lease kube-system/cloud-controller-manager (REPLICA_UUID: a process on a replica), read with the
    real kubectl; with other_than, once another process than that one holds it. A cloud-controller-manager may take
    it once the addon manager has applied its RBAC, and another only once the last holder's lease has expired (a
    stopped one does not give it up)."""
    deadline = time.time() + limit
    while True:
        held = life.kubectl("-n", "kube-system", "get", "lease", "cloud-controller-manager", "-o",
                            "jsonpath={.spec.holderIdentity}")
        if held.returncode == 0 and held.stdout and held.stdout != other_than:
            return held.stdout
        assert time.time() < deadline, "no cloud-controller-manager took its lease within %d s: %s" % (limit, held)
        time.sleep(3)


def near_expiry(life, stem, ca, kubeconfig=None, name="k-master"):
    """Sign ``/etc/kubernetes/pki/STEM.crt`` on replica ``name`` again with the CA ``ca`` (a path under pki/ without
    .crt), with the same names, extensions and key, valid for 5 more days: as if it had been issued 5 days before it
    expires. ``kubeconfig`` (a path) gets the same certificate. Returns its serial."""
    pki = "/etc/kubernetes/pki/"
    ca_cert = x509.load_pem_x509_certificate(life.ssh("sudo cat %s%s.crt" % (pki, ca), name=name).stdout.encode())
    ca_key = serialization.load_pem_private_key(life.ssh("sudo cat %s%s.key" % (pki, ca), name=name).stdout.encode(),
                                                None)
    old = x509.load_pem_x509_certificate(life.ssh("sudo cat %s%s.crt" % (pki, stem), name=name).stdout.encode())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(ca_cert.subject)
               .public_key(old.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=360)).not_valid_after(now + datetime.timedelta(days=5)))
    for extension in old.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    renewed = builder.sign(ca_key, hashes.SHA256())
    pem = renewed.public_bytes(serialization.Encoding.PEM).decode()
    life.ssh("sudo tee %s%s.crt > /dev/null" % (pki, stem), name=name, input_text=pem)
    if kubeconfig:
        config = yaml.safe_load(life.ssh("sudo cat %s" % kubeconfig, name=name).stdout)
        config["users"][0]["user"]["client-certificate-data"] = base64.b64encode(pem.encode()).decode()
        life.ssh("sudo tee %s > /dev/null" % kubeconfig, name=name, input_text=yaml.safe_dump(config))
    return renewed.serial_number


def started_after(life, unit, path, name="k-master"):
    """Whether ``unit`` on replica ``name`` runs a process started after ``path`` was last written."""
    return life.ssh("test $(date -d \"$(ps -o lstart= -p $(systemctl show -p MainPID --value %s))\" +%%s) -ge "
                    "$(sudo stat -c %%Y %s)" % (unit, path), name=name, check=False).returncode == 0


# Each certificate of a replica (under /etc/kubernetes/pki, without .crt), and its name as kubeha.gce.replica_pki has it.
LEAVES = ("etcd/peer", "etcd/server", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client",
          "front-proxy-client", "controller-manager", "scheduler", "addon-manager", "cloud-controller-manager")
LEAF_NAMES = [stem.replace("/", "-") for stem in LEAVES]


def leaf_serials(life, name):
    """The serial of each certificate of replica ``name``."""
    return {stem: x509.load_pem_x509_certificate(life.ssh("sudo cat /etc/kubernetes/pki/%s.crt" % stem,
                                                          name=name).stdout.encode()).serial_number
            for stem in LEAVES}


def rotate_every_certificate(life, replicas):
    """rotate-certs in check mode (nothing changes), then for real: every certificate of each replica is issued again,
    the etcd leader's last, each service restarted runs with the new ones (what etcd and kube-apiserver present is
    what is on disk), each replica was out of the load balancer while it restarted and is back; the same run again
    with the time the first printed changes nothing. Returns what the run said it did on each replica."""
    before = {name: leaf_serials(life, name) for name in replicas}
    leader = etcd_leader(life)
    life.step("rotate-certs in check mode", "rotate_certs", "zone=europe-west1-b", "--check")
    assert {name: leaf_serials(life, name) for name in replicas} == before
    rotated = life.step("rotate-certs", "rotate_certs", "zone=europe-west1-b")
    when = rotated.stdout.split("finishes it")[0].rsplit("-e issued_before=", 1)[1].split()[0]
    order = [line.split(": ")[0] for line in section(rotated, "Say what was done on each replica")]
    assert sorted(order) == sorted(replicas) and order[-1] == leader, (order, leader)
    for name in replicas:
        after = leaf_serials(life, name)
        assert all(after[stem] != before[name][stem] for stem in LEAVES), (name, before[name], after)
        line = next(line for line in section(rotated, "Say what was done on each replica") if line.startswith(name + ":"))
        assert "issued again %s;" % ", ".join(LEAF_NAMES) in line and "(out of the load balancer: ready after" in line, line
        for unit, path in (("etcd", "etcd/peer.crt"), ("kube-apiserver", "apiserver-etcd-client.crt"),
                           ("kube-controller-manager", "controller-manager.crt"), ("kube-scheduler", "scheduler.crt")):
            assert unit in line.split("restarted ")[1] and started_after(life, unit, "/etc/kubernetes/pki/" + path, name), (
                name, unit, line)
        # What kube-apiserver presents on 443, and etcd to its clients and peers, is what is on disk now.
        ip = life.ssh("hostname -I", name=name).stdout.split()[0]
        for port, stem in ((443, "apiserver"), (2379, "etcd/server"), (2380, "etcd/peer")):
            served = life.ssh("openssl s_client -connect %s:%d < /dev/null 2> /dev/null | openssl x509 -noout -serial"
                              % (ip, port), name=name).stdout.strip()
            assert served.startswith("serial=") and int(served[7:], 16) == after[stem], (name, port, served, after[stem])
        # etcd takes kube-apiserver's new client certificate; kube-apiserver, started with it, is ready through it.
        assert life.ssh("%s --endpoints https://127.0.0.1:2379 endpoint health" % ETCDCTL, name=name,
                        check=False).returncode == 0
    [rule] = life.network()["forwarding_rules"]
    assert sorted(m["name"] for m in rule["members"]) == list(replicas)
    check_kubectl(life)
    life.step("rotate-certs again, with the time the first run printed", "rotate_certs", "zone=europe-west1-b",
              "issued_before=%s" % when, expect_changed=0)
    return section(rotated, "Say what was done on each replica")


def process_args(life, unit, name):
    """The command line of ``unit``'s main process on replica ``name``."""
    return life.ssh("tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value %s)/cmdline" % unit, name=name).stdout


def reconfigure_flags(life, replicas):
    """reconfigure on a cluster as it was converged changes nothing; a feature gate of kube-apiserver and a flag of
    kube-controller-manager reach every replica one at a time (out of the load balancer while kube-apiserver restarts,
    the etcd leader last), a check-mode run first changing nothing, and the next run changes nothing; a new service
    range is refused; a flag kube-apiserver refuses stops the run at the first replica, which the next run (without
    it) takes first; without them, they are taken away the same way."""
    life.step("reconfigure, nothing changed", "reconfigure", "zone=europe-west1-b", expect_changed=0)
    flags = json.dumps({"control_plane_extra_flags": {"kube-apiserver": {"feature-gates": "AllAlpha=false"},
                                                      "kube-controller-manager": {"v": "3"}}})
    started = {name: process_args(life, "kube-apiserver", name) for name in replicas}
    life.step("reconfigure a feature gate and a flag, in check mode", "reconfigure", "zone=europe-west1-b", flags,
              "--check", "--diff")
    assert {name: process_args(life, "kube-apiserver", name) for name in replicas} == started
    leader = etcd_leader(life)
    done = life.step("reconfigure a feature gate and a flag", "reconfigure", "zone=europe-west1-b", flags)
    said = section(done, "Say what was done on each replica")
    assert [line.split(": ")[0] for line in said][-1] == leader and len(said) == len(replicas), (said, leader)
    for name in replicas:
        line = next(line for line in said if line.startswith(name + ":"))
        assert "converged again (services: the inputs changed" in line and "(out of the load balancer: ready after" in line, line
        restarted = line.split("restarted ")[1].split(" (")[0].split(", ")
        assert "kube-apiserver" in restarted and "kube-controller-manager" in restarted and "etcd" not in restarted, line
        assert "--feature-gates=AllAlpha=false" in process_args(life, "kube-apiserver", name)
        assert "--v=3" in process_args(life, "kube-controller-manager", name)
    [rule] = life.network()["forwarding_rules"]
    assert sorted(m["name"] for m in rule["members"]) == list(replicas)
    life.step("reconfigure again, as it is", "reconfigure", "zone=europe-west1-b", flags, expect_changed=0)
    life.refused("reconfigure to another service range", "reconfigure",
                 "kube-apiserver on k-master runs with --service-cluster-ip-range=10.0.0.0/16, and "
                 "kubeha_service_cluster_ip_range (or kube-apiserver's extra flag service-cluster-ip-range) would make it "
                 "10.1.0.0/16", "zone=europe-west1-b", flags,
                 "kubeha_service_cluster_ip_range=10.1.0.0/16")
    # A flag that kube-apiserver refuses: the first replica's API server does not come back; the run stops there,
    # saying so, with that replica back in the load balancer (its health check keeps it from traffic) and the others
    # as they were. The run without it takes that replica first, and puts every replica right.
    bad = json.dumps({"control_plane_extra_flags": {"kube-apiserver": {"kubeha-lab-no-such-flag": "1"}}})
    stopped = life.stopped("reconfigure with a flag kube-apiserver refuses", "reconfigure", "again failed at",
                           "zone=europe-west1-b", bad, "control_plane_wait_timeout=20")
    broken = stopped.stdout.split("converging ")[1].split(" again failed at")[0]
    assert broken in replicas and "It was put back into the load balancer" in stopped.stdout, failure_text(stopped.stdout)
    assert all("--feature-gates=AllAlpha=false" in process_args(life, "kube-apiserver", name)
               for name in replicas if name != broken)
    fixed = life.step("reconfigure without them again", "reconfigure", "zone=europe-west1-b")
    assert section(fixed, "Say what was done on each replica")[0].startswith(broken + ": converged again"), fixed.stdout[-3000:]
    for name in replicas:
        assert "--feature-gates" not in process_args(life, "kube-apiserver", name)
    [rule] = life.network()["forwarding_rules"]
    assert sorted(m["name"] for m in rule["members"]) == list(replicas)
    return said


def check_kubectl(life):
    """The real kubectl, with the kubeconfig bootstrap wrote, through the reserved address: what a user does first."""
    version = life.kubectl("version")
    assert version.returncode == 0 and "Server Version: v1.36.0-kubeha-lab-standin" in version.stdout, version
    ready = life.kubectl("get", "--raw", "/readyz")
    assert ready.returncode == 0 and ready.stdout == "ok", ready
    leases = life.kubectl("-n", "kube-system", "get", "leases", "-o", "name")
    assert leases.returncode == 0, leases
    held = leases.stdout.split()
    for lease in ("kube-controller-manager", "kube-scheduler"):
        assert "lease.coordination.k8s.io/%s" % lease in held, held
    # kubernetes-admin is cluster-admin through the binding the run made, not through system:masters.
    whoami = life.kubectl("get", "clusterrolebinding", "kubeha:cluster-admins", "-o", "jsonpath={.subjects[0].name}")
    assert whoami.stdout == "kubeha:cluster-admins", whoami


def test_bootstrap_replicate_recover_remove(life, capsys):  # pylint: disable=redefined-outer-name
    # -- before anything exists: bad requests are refused (each rule of the filters is unit-tested; here, that a
    # refusal of each playbook changes nothing, and the rules that live in the roles' YAML and need the lab) ----------
    life.refused("bootstrap: etcd_quorum_read=false", "bootstrap", "etcd_quorum_read=false (kube-up's ENABLE_ETCD_QUORUM_READS=false)",
                 "zone=europe-west1-b", "etcd_quorum_read=false")
    life.refused("bootstrap: no credentials", "bootstrap",
                 "cannot read cluster k from Compute Engine: auth_kind=serviceaccount needs service_account_file",
                 "zone=europe-west1-b", env_unset=("GCP_SERVICE_ACCOUNT_FILE",))

    # -- bootstrap: the first replica holds the reserved address; the API answers there -----------
    life.step("bootstrap in europe-west1-b", "bootstrap", "zone=europe-west1-b", "kubeconfig_dest=%s" % life.kubeconfig)
    assert life.instance("k-master")["nat_ip"] == life.address()
    ready = life.readyz()
    assert ready["status"] == 200 and "[+]etcd ok" in ready["body"], ready
    # The administrator's kubeconfig works with the real kubectl through the reserved address, on the first replica.
    assert oct(life.kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert "server: https://%s\n" % life.address() in life.kubeconfig.read_text()
    check_kubectl(life)
    kubeconfig = life.kubeconfig.read_text()
    # Another minor than the cluster runs is refused in the checks: no replica is converged to it, or added with it.
    minor = "k-master runs Kubernetes v1.36.0-kubeha-lab-standin, and this run would install v1.35.4: a replica is not"
    life.refused("bootstrap again with another Kubernetes minor", "bootstrap", minor, "zone=europe-west1-b",
                 "kubernetes_version=v1.35.4")
    life.refused("replicate with another Kubernetes minor", "replicate", minor, "zone=europe-west1-c,europe-west1-d",
                 "kubernetes_version=v1.35.4")
    assert life.instance("k-master-c") is None
    holder = cloud_controller_holder(life)
    assert holder.startswith("k-master_"), holder

    # -- the cloud-controller-manager's binary no longer given: a run stops it and takes it and gce.conf away, and
    # kube-controller-manager runs without --cloud-provider; its RBAC addon stays, as every replica ships it --------
    life.step("bootstrap again without the cloud-controller-manager", "bootstrap", "zone=europe-west1-b",
              "kubeha_cloud_controller_url=")
    said = life.ssh("systemctl show -p LoadState -p ActiveState cloud-controller-manager; "
                    "for f in /etc/gce.conf /opt/kubernetes/bin/cloud-controller-manager; do test -e $f && echo $f; done; "
                    "sudo ls /etc/kubernetes/addons; systemctl cat kube-controller-manager | grep -c -e --cloud-provider",
                    check=False).stdout
    assert said == ("LoadState=not-found\nActiveState=inactive\n"
                    "kubeha-cloud-controller-manager.yaml\nkubeha-cluster.yaml\n0\n"), said
    life.step("bootstrap again without it, unchanged", "bootstrap", "zone=europe-west1-b", "kubeha_cloud_controller_url=",
              expect_changed=0)
    life.step("bootstrap again with the cloud-controller-manager", "bootstrap", "zone=europe-west1-b")
    # A new process takes the lease (its RBAC is still there) and keeps running.
    assert cloud_controller_holder(life, other_than=holder).startswith("k-master_")
    said = life.ssh("systemctl show -p ActiveState -p NRestarts cloud-controller-manager").stdout
    assert sorted(said.split()) == ["ActiveState=active", "NRestarts=0"], said
    life.start_writer()
    life.start_api_poller()

    # -- replicate into two zones: the load balancer takes the reserved address on the second -------
    # The first run is killed in the middle of a membership change, once k-master-c is an etcd learner;
    # the next run must finish it (and add k-master-d).
    life.interrupted("replicate, killed while k-master-c is a learner", "replicate",
                     lambda: any(m[3] for m in life.members() or []), "zone=europe-west1-c,europe-west1-d")
    assert [m for m in life.members() if m[3]], "the run was not stopped during the membership change"
    # Twice at once, as two AWX jobs would: one holds the cluster's lock (taken over from the killed run, whose
    # process is gone) and finishes the change; the other waits for it, then finds nothing left to do.
    runs = life.together("replicate again twice at once, finishing the killed run", "replicate",
                         "zone=europe-west1-c,europe-west1-d")
    [finished] = [run for run in runs if "its run's process on this controller has ended" in run]
    [waited] = [run for run in runs if run is not finished]
    assert "waited " in waited and "s for the lock of cluster k, held by run" in waited, waited[-4000:]
    assert recap(subprocess.CompletedProcess([], 0, waited, ""))["localhost"]["changed"] == 0, waited[-4000:]
    # Both runs took an etcd snapshot before they changed the membership, kept on the replica etcd was read through.
    assert "etcd snapshot: %s/k-" % SNAPSHOTS in finished, finished[-3000:]
    shots = life.ssh("sudo ls %s" % SNAPSHOTS).stdout.split()
    assert len(shots) == 2 and all(s.startswith("k-") and s.endswith(".db") for s in shots), shots
    members = life.members()
    assert sorted(m[1] for m in members) == ["k-master", "k-master-c", "k-master-d"] and not any(m[3] for m in members)
    assert all(url.startswith("https://") for m in members for url in m[2])
    rules = life.network()["forwarding_rules"]
    assert [(r["name"], r["ip"]) for r in rules] == [("k-master", life.address())]
    assert sorted(m["name"] for m in rules[0]["members"]) == ["k-master", "k-master-c", "k-master-d"]
    assert life.instance("k-master")["nat_ip"] != life.address()
    ready = life.readyz()
    assert ready["status"] == 200, ready
    # The cloud-controller-manager (the lab gives its binary) runs on each replica, in its own zone; one leads.
    for name, zone in (("k-master", "b"), ("k-master-c", "c"), ("k-master-d", "d")):
        said = life.ssh("systemctl is-active cloud-controller-manager; grep -e ^local-zone -e ^multizone /etc/gce.conf; "
                        "systemctl cat kube-controller-manager | grep -o -e '--cloud-provider=[a-z]*'", name=name).stdout
        assert said == "active\nlocal-zone = europe-west1-%s\nmultizone = true\n--cloud-provider=external\n" % zone, said
    assert cloud_controller_holder(life).split("_")[0] in ("k-master", "k-master-c", "k-master-d")

    # -- etcd stops on the first replica (its VM runs on): the checks read etcd through another one and
    # refuse for the right reason, not because the first replica could not be read --------------------
    life.ssh("sudo systemctl stop etcd")
    life.members_via = "k-master-c"
    life.refused("remove while the etcd of another replica is down", "remove", "etcd member k-master (https://",
                 "zone=europe-west1-d", "allow_even=true")
    life.ssh("sudo systemctl start etcd")
    life.members_via = "k-master"

    # -- a replica crashes: membership changes wait. Then it is lost with its data disk: recover's auto mode reuses
    # the disk while the member is listed, and the new disk is blank, so it stops before etcd is touched (a member
    # must not come back without its data); replace makes a new member. (A recover that reuses the data disk and
    # keeps the member is molecule's recover scenario.) --------------------------------------------------------------
    before = {m[1]: m[0] for m in life.members()}
    control(life.env, "POST", "zones/europe-west1-c/instances/k-master-c/crash")
    life.refused("remove while a member is down", "remove", "etcd member k-master-c (https://", "zone=europe-west1-d",
                 "allow_even=true")
    life.replica_vm("k-master-c", "europe-west1-c", "absent", delete_data_disk=True)
    life.stopped("recover k-master-c, its disk lost, in auto mode", "recover",
                 "the data disk of k-master-c holds no etcd data", "zone=europe-west1-c", "replica_name=k-master-c")
    life.step("recover k-master-c as a new member", "recover", "zone=europe-west1-c", "recover_mode=replace")
    replaced = {m[1]: m[0] for m in life.members()}
    assert set(replaced) == {"k-master", "k-master-c", "k-master-d"} and replaced["k-master-c"] != before["k-master-c"]

    # -- drift behind the collection's back: a changed file, a stopped service, a wrong certificate and a missing
    # load balancer member are each found and put right by one re-run -----------------------------------------
    # Three certificates of the first replica 5 days from their expiry, which its services run with: the run issues
    # them again and restarts exactly the services that use them (not the stopped controller-manager).
    expiring = {"apiserver-etcd-client": near_expiry(life, "apiserver-etcd-client", "etcd/ca"),
                "scheduler": near_expiry(life, "scheduler", "ca", "/etc/kubernetes/scheduler.conf")}
    life.ssh("sudo systemctl restart kube-apiserver kube-scheduler && for i in $(seq 60); do "
             "curl -skf https://127.0.0.1/readyz > /dev/null && exit 0; sleep 1; done; exit 1")
    expiring["etcd/peer"] = near_expiry(life, "etcd/peer", "etcd/ca")
    life.ssh("sudo systemctl restart etcd && for i in $(seq 60); do "
             "curl -skf https://127.0.0.1/readyz > /dev/null && exit 0; sleep 1; done; exit 1")
    life.ssh("sudo sh -c 'echo \"# drift\" >> /etc/gce.conf'", name="k-master-c")
    life.ssh("sudo systemctl stop kube-scheduler", name="k-master-c")
    wrong = life.ssh("sudo cat /etc/kubernetes/pki/apiserver.crt", name="k-master-c").stdout
    life.ssh("sudo tee /etc/kubernetes/pki/apiserver.crt > /dev/null", input_text=wrong)
    life.drop_from_load_balancer("k-master-d", "europe-west1-d")
    # replicate converges the replicas it adds and the certificates of the others: a service stopped on the first
    # replica is named, and left as it is.
    life.ssh("sudo systemctl stop kube-controller-manager")
    fixed = life.step("replicate again after four faults", "replicate", "zone=europe-west1-c,europe-west1-d",
                      "kubeconfig_dest=%s" % life.kubeconfig)
    assert "/etc/kubernetes/pki/apiserver.crt changed" in fixed.stdout, fixed.stdout[-4000:]
    for why in ("k-master: pki: /etc/kubernetes/pki/apiserver-etcd-client.crt changed",
                "k-master-c: services: /etc/gce.conf changed, service kube-scheduler is inactive enabled"):
        assert why.replace(": ", "\": \"", 1) in fixed.stdout, (why, fixed.stdout[-4000:])
    # k-master-d, as it was converged, is not converged again; the load balancer has it again.
    assert "k-master-d\":" not in fixed.stdout.split("Say which replicas are converged again")[1].split("TASK")[0]
    assert "k-master: services: service kube-controller-manager is inactive enabled" in fixed.stdout, fixed.stdout[-4000:]
    assert life.ssh("systemctl is-active kube-controller-manager", check=False).stdout.strip() == "inactive"
    for stem, serial in expiring.items():
        renewed = x509.load_pem_x509_certificate(life.ssh("sudo cat /etc/kubernetes/pki/%s.crt" % stem).stdout.encode())
        assert renewed.serial_number != serial, stem
        assert renewed.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=300)
    assert "kube-apiserver (apiserver-etcd-client.crt, apiserver-etcd-client.key written since it started)" in fixed.stdout, fixed.stdout[-4000:]
    assert "kube-scheduler (scheduler.conf written since it started)" in fixed.stdout, fixed.stdout[-4000:]
    assert started_after(life, "kube-apiserver", "/etc/kubernetes/pki/apiserver-etcd-client.crt")
    assert started_after(life, "kube-scheduler", "/etc/kubernetes/scheduler.conf")
    assert "etcd (peer.crt, peer.key written since it started)" in fixed.stdout, fixed.stdout[-4000:]
    assert started_after(life, "etcd", "/etc/kubernetes/pki/etcd/peer.crt")
    # Written as the etcd role writes it.
    assert life.ssh("sudo stat -c '%U %a' /etc/kubernetes/pki/etcd/peer.crt /etc/kubernetes/pki/etcd/peer.key").stdout.split(
        "\n")[:2] == ["etcd 600", "etcd 600"]
    # What kube-apiserver presents on 443 is the serving certificate on disk.
    serving = "openssl x509 -noout -serial -enddate"
    assert (life.ssh("openssl s_client -connect 127.0.0.1:443 < /dev/null 2> /dev/null | " + serving).stdout
            == life.ssh(serving + " -in /etc/kubernetes/pki/apiserver.crt").stdout)
    life.ssh("sudo systemctl start kube-controller-manager")
    assert "drift" not in life.ssh("cat /etc/gce.conf", name="k-master-c").stdout
    assert life.ssh("systemctl is-active kube-scheduler", name="k-master-c").stdout.strip() == "active"
    sans = life.ssh("openssl x509 -noout -ext subjectAltName -in /etc/kubernetes/pki/apiserver.crt").stdout
    assert "DNS:k-master," in sans and "k-master-c" not in sans, sans
    [rule] = life.network()["forwarding_rules"]
    assert sorted(m["name"] for m in rule["members"]) == ["k-master", "k-master-c", "k-master-d"]
    # The same kubeconfig (the address is the same, now the load balancer's) works through the load balancer, and
    # is kept as it is.
    assert life.kubeconfig.read_text() == kubeconfig, "the kubeconfig was written again: its certificate is still right"
    check_kubectl(life)
    life.step("replicate again, in check mode with diff", "replicate", "zone=europe-west1-c,europe-west1-d", "--check", "--diff",
              "kubeconfig_dest=%s" % life.kubeconfig, expect_changed=0)

    # -- rotate-certs: every certificate of every replica issued again, one replica at a time (each out of the load
    # balancer while the others serve, the etcd leader last); each service presents and uses the new ones ---------
    rotate_every_certificate(life, ("k-master", "k-master-c", "k-master-d"))
    # -- reconfigure: changed flags reach the running replicas the same way; the service range cannot change ---------
    reconfigure_flags(life, ("k-master", "k-master-c", "k-master-d"))

    # -- a zone outage: the cluster is read through the zones that answer; the dead zone's replica is taken
    # out of etcd and the load balancer, and replaced in a zone that answers; its leftovers go once it is back --
    control(life.env, "POST", "zones/europe-west1-c/down")
    # As a scheduled status job runs it: it reports, hands its data on, then fails because the cluster is degraded.
    outage = life.stopped("status while europe-west1-c is down", "status",
                          "cluster k is DEGRADED: zone europe-west1-c does not answer Compute Engine; its replicas cannot "
                          "be listed", "zone=europe-west1-b", "fail_when_degraded=true")
    assert recap(outage)["localhost"]["changed"] == 0, outage.stdout[-4000:]
    for line in ("cluster k in region europe-west1: DEGRADED",
                 "problem: zone europe-west1-c does not answer Compute Engine; its replicas cannot be listed (etcd "
                 "members not found in the zones that answer: k-master-c)",
                 "what to do: etcd keeps its quorum (2 of 3 voting members healthy, 2 needed)",
                 "europe-west1-c   UNAVAILABLE"):
        assert line in outage.stdout, (line, outage.stdout[-4000:])
    # What a workflow branches on (set_stats).
    assert '"degraded": true' in outage.stdout and '"has_quorum": true' in outage.stdout, outage.stdout[-4000:]
    life.refused("replicate into the zone that does not answer", "replicate",
                 "zone europe-west1-c does not answer Compute Engine (a zone outage)", "zone=europe-west1-c",
                 "replica_name=k-master-c2")
    removed = life.step("remove k-master-c while its zone is down", "remove", "zone=europe-west1-c")
    assert ("left in zone europe-west1-c, which does not answer Compute Engine: the VM k-master-c, its data disk "
            "k-master-c-pd and the load balancer's instance group there") in removed.stdout, removed.stdout[-4000:]
    assert sorted(m[1] for m in life.members()) == ["k-master", "k-master-d"]
    [rule] = life.network()["forwarding_rules"]
    assert sorted(m["name"] for m in rule["members"]) == ["k-master", "k-master-d"]
    # Adding it to the load balancer fails after it joined etcd; then its etcd fails to start (its metrics port is
    # sshd's). Each time the run takes the new member out of etcd again by its ID, clears its data and keeps the VM,
    # as it says; the run after them adds it.
    failed = life.stopped("replicate into europe-west1-b, the load balancer failing after the etcd join", "replicate",
                          "adding k-master-b in zone europe-west1-b failed at \"Add it to the load balancer",
                          "zone=europe-west1-b", "allow_same_zone=true",
                          faults={"fail_operations": {"compute.instanceGroups.addInstances": {
                              "count": 1, "code": "RESOURCE_NOT_READY", "message": "The resource is not ready."}}}).stdout
    assert "was removed again, and its etcd data cleared; the VM k-master-b is kept." in failed, failure_text(failed)
    [rule] = life.network()["forwarding_rules"]
    assert sorted(m["name"] for m in rule["members"]) == ["k-master", "k-master-d"]
    failed = life.stopped("replicate into europe-west1-b, etcd failing to start there", "replicate",
                          "adding k-master-b in zone europe-west1-b failed at", "zone=europe-west1-b",
                          "allow_same_zone=true", "etcd_metrics_port=22").stdout
    assert "was removed again, and its etcd data cleared; the VM k-master-b is kept." in failed, failure_text(failed)
    assert "etcd.service" in failed, failure_text(failed)
    # etcd is stopped there (is-active answers 3), and its data directory is empty or gone.
    stopped = life.ssh("systemctl is-active etcd", name="k-master-b", check=False)
    assert stopped.returncode == 3 and stopped.stdout.strip() in ("inactive", "failed"), stopped
    life.ssh("sudo sh -c 'test ! -e %s || test -z \"$(ls -A %s)\"'" % (ETCD_DATA, ETCD_DATA), name="k-master-b")
    life.step("replicate into europe-west1-b, beside k-master", "replicate", "zone=europe-west1-b", "allow_same_zone=true")
    members = life.members()
    assert sorted(m[1] for m in members) == ["k-master", "k-master-b", "k-master-d"] and not any(m[3] for m in members)

    control(life.env, "POST", "zones/europe-west1-c/up")
    # Its VM boots again, with the etcd data of a member that was removed: the cluster refuses it, and the load
    # balancer sends it nothing.
    life.wait_ssh("k-master-c")
    life.wait_for_log("k-master-c", "etcd", "the member has been permanently removed from the cluster", limit=30)
    assert sorted(m[1] for m in life.members()) == ["k-master", "k-master-b", "k-master-d"]
    [rule] = life.network()["forwarding_rules"]
    assert sorted(m["name"] for m in rule["members"]) == ["k-master", "k-master-b", "k-master-d"]
    # By its name alone: the region is that of the cluster's reserved address.
    life.step("remove k-master-c once its zone is back: its leftovers", "remove", "replica_name=k-master-c")
    assert life.instance("k-master-c") is None
    assert not [p for p in life.resources() if "europe-west1-c" in p and ("k-master" in p)], "leftovers in europe-west1-c"
    healthy = life.step("status once europe-west1-c is back", "status", "zone=europe-west1-b", "fail_when_degraded=true",
                        expect_changed=0)
    assert "cluster k in region europe-west1: healthy" in healthy.stdout, healthy.stdout[-4000:]

    # -- a zone that fails during a run: replicate into europe-west1-c, which goes down once the VM is made --
    # (allow_even: the even count that remove refuses by default is a rule of remove_request_problems, unit-tested.)
    life.step("remove k-master-b", "remove", "replica_name=k-master-b", "allow_even=true")
    # Compute Engine ends the instance insert with an error: nothing but the VM's data disk was made, as the run says.
    failed = life.stopped("replicate into europe-west1-c, its instance insert failing", "replicate",
                          "adding k-master-c in zone europe-west1-c failed at \"Create the replica in its zone",
                          "zone=europe-west1-c", faults={"fail_operations": {"compute.instances.insert": {
                              "count": 1, "code": "ZONE_RESOURCE_POOL_EXHAUSTED",
                              "message": "The zone does not have enough resources available to fulfill the request."}}}).stdout
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in failed and "etcd was not changed" in failed, failure_text(failed)
    assert life.instance("k-master-c") is None
    # Down as soon as the new VM answers over SSH: after the VM insert, before the etcd join.
    # The zone may go down before the run checks it still answers, after, while the run waits for the VM's SSH
    # (that wait is bounded to 30 s here, as the VM answered already, not the default 300), or once it answered, in a
    # task on the VM (kubeha.gce.linear makes that a failure of the task): each ends in the same rescue.
    failed = life.zone_fails_during("replicate into europe-west1-c while it goes down", "replicate", "europe-west1-c",
                                    lambda: life.answers_ssh("k-master-c"), "zone=europe-west1-c", "kubeha_ssh_timeout=30")
    assert "adding k-master-c in zone europe-west1-c failed at" in failed, failed[-4000:]
    assert not any(m[3] for m in life.members()), "a learner was left behind"
    assert sorted(m[1] for m in life.members()) == ["k-master", "k-master-d"]
    control(life.env, "POST", "zones/europe-west1-c/up")
    # ... with 15 % of Compute Engine calls answered 503 or 429, which the collection retries (make bench runs a
    # whole life with 30 %, and a failed operation in each step as well).
    life.under_faults("replicate into europe-west1-c once it is back, 15 % of API calls failing", "replicate",
                      "zone=europe-west1-c", errors={"*": {"rate": 0.15, "status": [503, 429]}})
    assert life.steps[-1]["errors_answered"], "no call was answered with an error"
    life.converged(["k-master", "k-master-c", "k-master-d"])

    # -- a snapshot on its own (a schedule's), copied to the controller; the replica keeps the newest five ------------
    etcdctl = "%s --endpoints https://127.0.0.1:2379 --command-timeout 10s" % ETCDCTL
    life.ssh("%s put /restore-canary written-before-the-snapshot" % etcdctl)
    backups = life.tmp / "backups"
    taken = life.step("snapshot, copied to the controller", "snapshot", "zone=europe-west1-b", "etcd_snapshot_dest=%s" % backups)
    [copy] = list((backups / "k").iterdir())
    assert copy.stat().st_mode & 0o777 == 0o600 and (backups / "k").stat().st_mode & 0o777 == 0o700
    assert "etcd snapshot: %s/%s on k-master (revision" % (SNAPSHOTS, copy.name) in taken.stdout, taken.stdout[-3000:]
    assert "copied to %s" % copy in taken.stdout, taken.stdout[-3000:]
    kept = life.ssh("sudo ls %s" % SNAPSHOTS).stdout.split()
    assert kept[-1] == copy.name and len(kept) == 5, kept
    life.ssh("%s put /restore-canary written-after-the-snapshot" % etcdctl)
    life.refused("restore while etcd has its quorum", "restore", "etcd has its quorum (3 of 3 voting members healthy, 2 needed)",
                 "zone=europe-west1-b")

    # -- a majority lost for good: k-master-c's VM and disk are gone, europe-west1-d is down; etcd on k-master has no
    # quorum. restore rebuilds it there from the controller's copy, as a new one-member cluster -----------------------
    life.replica_vm("k-master-c", "europe-west1-c", "absent", delete_data_disk=True)
    control(life.env, "POST", "zones/europe-west1-d/down")
    restored = life.step("restore on k-master, two of three replicas lost", "restore", "zone=europe-west1-b",
                         "snapshot_src=%s" % copy)
    for line in ("etcd restored from %s/restored-from-controller-%s" % (SNAPSHOTS, copy.name),
                 "the other members of the old cluster, which the new one refuses, have no replica in the zones that answer: "
                 "k-master-c, k-master-d; zones that do not answer: europe-west1-d",
                 "grow back to three replicas: ansible-playbook kubeha.gce.replicate -e cluster_name=k -e zone=europe-west1-c"):
        said = [text for text in restored.stdout.splitlines() if "cluster k" in text or "old cluster" in text or "grow back" in text]
        assert line in restored.stdout, (line, said)
    assert [m[1] for m in life.members()] == ["k-master"]
    assert life.ssh("%s get /restore-canary --print-value-only" % etcdctl).stdout.strip() == "written-before-the-snapshot"
    assert life.network()["forwarding_rules"] == [] and life.instance("k-master")["nat_ip"] == life.address()
    assert not [p for p in life.resources() if "/backendServices/" in p or "/targetPools/" in p]
    assert life.instance("k-master-c") is None
    ready = life.readyz()
    assert ready["status"] == 200 and "[+]etcd ok" in ready["body"], ready
    life.step("restore again", "restore", "zone=europe-west1-b", "snapshot_src=%s" % copy, expect_changed=0)

    status = life.step("status", "status", "zone=europe-west1-b", expect_changed=0)
    assert "LOAD BALANCER: single" in status.stdout and "k-master" in status.stdout, status.stdout[-3000:]

    # europe-west1-d comes back: the old member's etcd is refused by the new cluster.
    control(life.env, "POST", "zones/europe-west1-d/up")
    life.wait_ssh("k-master-d")
    assert life.wait_for_log("k-master-d", "etcd", "cluster ID mismatch", limit=60)
    assert [m[1] for m in life.members()] == ["k-master"]
    life.stop_writer()
    life.stop_api_poller()
    writer_stopped = time.time()

    # -- the masters taken down as a whole (kube-down), with a worker node beside them and europe-west1-d down again:
    # what can go goes, and the run says what is left there; once the zone answers, the same command deletes the rest --
    life.worker_vm("k-node-b", "europe-west1-b")
    life.refused("teardown, not confirmed", "teardown", "confirm with -e confirm=k (confirm=kk is not the name of this cluster)",
                 "confirm=kk")
    control(life.env, "POST", "zones/europe-west1-d/down")
    before = life.resources()
    plan = life.step("teardown in check mode, europe-west1-d down", "teardown", "delete_address=true", "--check")
    assert life.resources() == before, "check mode changed something"
    # (No load balancer since the restore: the replicas and the firewall rules are what would go.)
    for text in ("what a real run would do (check mode): ", "delete instance k-master; delete disk k-master-pd",
                 "delete firewall k-master-https", "zones that do not answer Compute "
                 "Engine: europe-west1-d", "k-master-ip (%s) is kept: a replica in a zone that does not answer" % life.address()):
        assert text in plan.stdout, (text, plan.stdout[-3000:])
    down = life.step("teardown, europe-west1-d down", "teardown", "confirm=k", "delete_address=true")
    assert "delete firewall k-master-https" in down.stdout and "zones that do not answer" in down.stdout, down.stdout[-3000:]
    assert life.instance("k-master") is None and life.address(), "k-master is left, or the address is gone"
    control(life.env, "POST", "zones/europe-west1-d/up")
    gone = life.step("teardown once europe-west1-d answers", "teardown", "confirm=k", "delete_address=true")
    for text in ("delete instance k-master-d", "delete instance group k-master (europe-west1-d)",
                 "the reserved address k-master-ip is deleted"):
        assert text in gone.stdout, (text, gone.stdout[-3000:])
    assert sorted(p for p in life.resources() if "/k-" in p) == sorted(p for p in before if "/k-node-b" in p), "leftovers, or the node went"
    # Gone with its address: without a zone, there is nothing to find it by.
    again = life.step("teardown again", "teardown", "confirm=k", expect_changed=0)
    assert "has no reserved address k-master-ip in the project" in again.stdout, again.stdout[-3000:]

    report = life.report()
    path = save_report("lifecycle", report)
    with capsys.disabled():
        print("\n" + table(report) + "\n(saved to %s)" % path)
    # Once etcd has a leader again after europe-west1-c went down (during the first status), not one write fails
    # while the dead zone's replica is taken out, replaced, and its leftovers deleted.
    titles = [s["step"] for s in report["steps"]]
    outage = report["steps"][titles.index("status while europe-west1-c is down") + 1:
                             titles.index("status once europe-west1-c is back") + 1]
    assert [(s["step"], s["failed_writes"]) for s in outage if s.get("failed_writes")] == [], outage
    # The writer wrote all along, and etcd took writes again after every step.
    writes = life.writes()
    assert report["writes"] > 100
    for step in report["steps"]:
        if "ended" in step and writes[0]["at"] < step["started"] and step["ended"] < writer_stopped:
            later = [w for w in writes if w["at"] >= step["ended"]][:5]
            assert later and any(w["ok"] for w in later), (step["step"], later)
