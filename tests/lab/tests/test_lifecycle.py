# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lifecycle playbooks end to end in the lab: real machines, real etcd, the control-plane stand-ins, on a
custom-mode network that has no firewall rule but those the collection makes (``lab up --network custom``).

Each playbook runs as a user runs it (``tests/lab/lab exec -- ansible-playbook playbooks/X.yml -e ...``);
its re-run must report changed=0. Each preflight rule is tried with a bad request, which must fail with
the rule's message and leave the simulator's resources and the etcd membership as they were. A
background writer puts a key into etcd every 200 ms throughout; its failed writes are reported per step.
The first replicate is killed in the middle of a membership change; the next run must finish it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from labcli import LAB, control, lab, save_report

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CLUSTER = "k"
NETWORK = "lab"  # the custom network of `lab up --network custom`, with a subnetwork of the same name per region

# Inside the lab: GET a URL over TLS checked against a CA.
FETCH = """
import json, ssl, sys, urllib.request
url, ca = sys.argv[1:3]
context = ssl.create_default_context(cafile=ca)
try:
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
except Exception as exc:
    print(json.dumps({"status": -1, "body": str(exc)}))
"""


class Lifecycle:
    """Runs the playbooks in the lab and keeps what each step cost."""

    def __init__(self, env, tmp_path):
        self.env = env
        self.tmp = tmp_path
        self.steps = []
        self.writer = None
        self.writer_log = tmp_path / "writes.jsonl"
        self.api_log = tmp_path / "api-polls.jsonl"
        self.api_poller = None
        self.members_via = "k-master"

    def command(self, name, *extra, env_unset=()):
        """``tests/lab/lab`` arguments that run playbook ``name`` as a user runs it."""
        command = ["exec", "--"]
        if env_unset:
            command += ["env"] + ["-u%s" % n for n in env_unset]
        command += ["ansible-playbook", os.path.join(REPO, "playbooks", "%s.yml" % name), "-e", "cluster_name=%s" % CLUSTER,
                    "-e", "kubeha_ca_cert_file=%s" % (self.tmp / "ca.crt")]
        for item in extra:
            command += [item] if item.startswith("--") else ["-e", item]  # --check, --diff; otherwise a variable
        return command

    def playbook(self, name, *extra, env_unset=()):
        return lab(self.env, *self.command(name, *extra, env_unset=env_unset), timeout=1800)

    def replica_vm(self, name, zone, state, **options):
        """A VM of the cluster made or deleted with gce_master_replica alone: no etcd, no control plane."""
        done = lab(self.env, "exec", "--", "ansible", "localhost", "-m", "kubeha.gce.gce_master_replica", "-a",
                   json.dumps(dict(options, cluster_name=CLUSTER, name=name, zone=zone, state=state, network=NETWORK,
                                   subnetwork=NETWORK)), timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

    def _while_running(self, name, extra, log_name, until, act):
        """Run a playbook, and ``act(process)`` once, as soon as ``until()`` holds while it runs; ``act`` returns
        whether to stop watching. Returns (acted, exit code, what it printed, when it started)."""
        started = time.time()
        acted = False
        with open(self.tmp / log_name, "w", encoding="utf-8") as log:
            process = subprocess.Popen([LAB] + self.command(name, *extra), env=self.env, stdout=log,  # pylint: disable=consider-using-with
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            while process.poll() is None and time.time() - started < 1800:
                if not acted and until():
                    acted = True
                    if act(process):
                        break
                time.sleep(0.5)
            process.wait()
        return acted, process.returncode, (self.tmp / log_name).read_text(), started

    def interrupted(self, title, name, until, *extra):
        """Start a playbook and kill it, every process of it at once (SIGKILL), as soon as ``until()`` holds."""
        killed, code, output, started = self._while_running(name, extra, "interrupted.log", until,
                                                            lambda process: os.killpg(process.pid, signal.SIGKILL) or True)
        assert killed, "%s: the run ended (exit %s) before it could be stopped:\n%s" % (title, code, output[-3000:])
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "wall_s": round(time.time() - started, 1),
                           "changed": None, "killed": True, "started": started, "ended": time.time()})

    def zone_fails_during(self, title, name, zone, when, *extra):
        """Start a playbook and take ``zone`` down as soon as ``when()`` holds; the run must stop without changing
        the etcd membership. Returns what it printed."""
        members = self.members()
        downed, code, output, started = self._while_running(
            name, extra, "zone-failed.log", when,
            lambda process: control(self.env, "POST", "zones/%s/down" % zone) and False)
        assert downed and code != 0, "%s: exit %s, zone taken down: %s\n%s" % (title, code, downed, output[-3000:])
        assert self.members() == members, title
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "wall_s": round(time.time() - started, 1),
                           "changed": None, "stopped": "zone %s down" % zone, "started": started, "ended": time.time()})
        return output

    def step(self, title, name, *extra, expect_changed=None):
        started = time.time()
        run = self.playbook(name, *extra)
        ended = time.time()
        assert run.returncode == 0, "%s failed:\n%s" % (title, failure(run))
        counts = recap(run)["localhost"]
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "wall_s": round(ended - started, 1),
                           "changed": counts["changed"], "started": started, "ended": ended})
        if expect_changed == 0:
            assert counts["changed"] == 0, "%s changed something:\n%s" % (title, changed_tasks(run))
        return run

    def stopped(self, title, name, message, *extra):
        """A run that must stop midway with ``message``, before it changes the etcd membership."""
        members = self.members()
        run = self.playbook(name, *extra)
        assert run.returncode != 0, "%s did not stop" % title
        assert message in run.stdout, "%s: %r not in\n%s" % (title, message, failure(run))
        assert self.members() == members, title
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "stopped": message})

    def refused(self, title, name, message, *extra, env_unset=()):
        """A bad request: fails with ``message`` and changes neither the resources nor the etcd membership."""
        resources, members = self.resources(), self.members()
        run = self.playbook(name, *extra, env_unset=env_unset)
        assert run.returncode != 0, "%s was not refused" % title
        assert message in run.stdout, "%s: %r not in\n%s" % (title, message, failure(run))
        assert "Nothing was changed" in run.stdout, failure(run)
        assert recap(run)["localhost"]["changed"] == 0, changed_tasks(run)
        assert self.resources() == resources, title
        assert self.members() == members, title
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "refused": message})

    # -- what there is ---------------------------------------------------------------------------
    def resources(self):
        return control(self.env, "GET", "resources")["resources"]

    def network(self):
        return control(self.env, "GET", "network")

    def instance(self, name):
        return next((i for i in self.network()["instances"] if i["name"] == name), None)

    def address(self):
        return next(r for p, r in self.resources().items() if p.endswith("/addresses/k-master-ip"))["address"]

    def fetch(self, url):
        """GET ``url`` from the lab's namespace (outside the VPC, as a user is), checked against the cluster CA."""
        done = lab(self.env, "exec", "--", sys.executable, "-c", FETCH, url, str(self.tmp / "ca.crt"), "", "")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def ssh_command(self, name, command):
        """``ssh`` to a replica's external IP as it is now (as the collection does). The IP can move while
        a playbook runs (the reserved address goes to the load balancer, which forwards only the API
        port), so connecting and a silent connection both give up after seconds instead of hanging."""
        return ["exec", "--", "ssh", "-i", os.path.join(self.env["KUBEHA_LAB_STATE"], "ssh", "id_ed25519"),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "kubeha@%s" % self.instance(name)["nat_ip"], command]

    def ssh(self, command, name="k-master", check=True):
        """Run ``command`` on a replica over SSH."""
        done = lab(self.env, *self.ssh_command(name, command), timeout=120)
        if check:
            assert done.returncode == 0, "%s on %s: %s" % (command, name, done.stderr)
        return done

    def members(self):
        """The etcd membership (IDs, names, peer URLs, learner or not), read on ``members_via``: the first
        replica, which this test never crashes or removes. Internal IPs are not reachable from outside the VPC."""
        if self.instance(self.members_via) is None:
            return None
        done = self.ssh("sudo etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt "
                        "--cert /etc/kubernetes/pki/apiserver-etcd-client.crt --key /etc/kubernetes/pki/apiserver-etcd-client.key "
                        "--command-timeout 10s member list -w json", name=self.members_via, check=False)
        if done.returncode != 0:
            return None  # no etcd yet
        members = json.loads(done.stdout).get("members") or []
        return sorted((m["ID"], m.get("name", ""), tuple(m.get("peerURLs") or []), bool(m.get("isLearner")))
                      for m in members)

    def answers_ssh(self, name):
        return self.instance(name) is not None and self.ssh("true", name=name, check=False).returncode == 0

    def wait_ssh(self, name, limit=300):
        """Until replica ``name`` answers over SSH."""
        deadline = time.time() + limit
        while self.instance(name) is None or self.ssh("true", name=name, check=False).returncode != 0:
            assert time.time() < deadline, "%s did not answer over SSH within %ds" % (name, limit)
            time.sleep(3)

    def readyz(self):
        return self.fetch("https://%s/readyz?verbose" % self.address())

    # -- the background writer, on the first replica, to its etcd and the others' ----------------
    def start_writer(self):
        script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kubeha_lab", "etcdwriter.py")
        with open(script, encoding="utf-8") as handle:
            body = handle.read()
        put = lab(self.env, *self.ssh_command("k-master", "cat > /tmp/etcdwriter.py"), input_text=body)
        assert put.returncode == 0, put.stderr
        started = self.ssh("sudo sh -c 'nohup python3 /tmp/etcdwriter.py --endpoint https://127.0.0.1:2379 "
                           "--ca /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/apiserver-etcd-client.crt "
                           "--key /etc/kubernetes/pki/apiserver-etcd-client.key --log /root/writes.jsonl "
                           ">/root/writer.out 2>&1 & echo $!'")
        self.writer = int(started.stdout.strip())

    # -- a client of the API through the reserved address, from outside the VPC (the lab namespace) --------
    def start_api_poller(self):
        log = open(self.tmp / "api-poller.out", "w", encoding="utf-8")  # pylint: disable=consider-using-with
        self.api_poller = subprocess.Popen(  # pylint: disable=consider-using-with
            [LAB, "exec", "--", sys.executable, "-m", "kubeha_lab.apipoller", "--address", self.address(),
             "--log", str(self.api_log)], env=dict(self.env, PYTHONPATH=os.path.dirname(os.path.dirname(
                 os.path.abspath(__file__)))), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()

    def stop_api_poller(self):
        if self.api_poller is None:
            return
        os.killpg(self.api_poller.pid, signal.SIGTERM)
        try:
            self.api_poller.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.api_poller.pid, signal.SIGKILL)
            self.api_poller.wait()
        self.api_poller = None

    def polls(self):
        if not self.api_log.exists():
            return []
        return sorted((json.loads(line) for line in self.api_log.read_text().splitlines() if line.strip()),
                      key=lambda p: p["at"])

    def stop_writer(self):
        """Stop the writer (by the PID it was started with) and keep its log."""
        if self.writer is None or self.instance("k-master") is None:
            return
        self.ssh("sudo kill %d; sleep 1; sudo cat /root/writes.jsonl" % self.writer, check=False)
        done = self.ssh("sudo cat /root/writes.jsonl", check=False)
        self.writer_log.write_text(done.stdout)
        self.writer = None

    def writes(self):
        if not self.writer_log.exists():
            return []
        return [json.loads(line) for line in self.writer_log.read_text().splitlines() if line.strip()]

    def report(self):
        writes, polls = self.writes(), self.polls()
        for step in self.steps:
            if "started" not in step:
                continue
            during = [w for w in writes if step["started"] <= w["at"] < step["ended"]]
            step["writes"] = len(during)
            step["failed_writes"] = sum(1 for w in during if not w["ok"])
            step["first_errors"] = [w["error"] for w in during if not w["ok"]][:3]
            asked = [p for p in polls if step["started"] <= p["at"] < step["ended"]]
            step["polls"] = len(asked)
            step["failed_polls"] = sum(1 for p in asked if not p["ok"])
            step["api_window_s"] = longest_window(asked)
        return {"cluster": CLUSTER, "steps": self.steps, "writes": len(writes),
                "failed_writes": sum(1 for w in writes if not w["ok"]), "polls": len(polls),
                "failed_polls": sum(1 for p in polls if not p["ok"])}


def recap(run):
    """PLAY RECAP counts per host."""
    counts = {}
    for line in run.stdout.splitlines():
        match = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
        if match:
            counts[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return counts


def changed_tasks(run):
    lines = run.stdout.splitlines()
    tasks, task = [], None
    for line in lines:
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith("changed:") and task and task not in tasks:
            tasks.append(task)
    return "\n".join(tasks) or failure(run)


def failure(run):
    return run.stdout[-6000:] + run.stderr[-2000:]


def longest_window(polls):
    """The longest time in which no poll was answered ready: from the last answered one before to the first after."""
    longest, last_ok, failing = 0.0, None, False
    for poll in polls:
        if poll["ok"]:
            if failing and last_ok is not None:
                longest = max(longest, poll["at"] - last_ok)
            last_ok, failing = poll["at"], False
        else:
            failing = True
    if failing and last_ok is not None:
        longest = max(longest, polls[-1]["at"] - last_ok)
    return round(longest, 2)


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


@pytest.fixture
def life(lab_env, tmp_path):
    # A custom-mode network with no firewall rule but the cluster's own, as production networks are.
    assert lab(lab_env, "up", "--network", "custom").returncode == 0
    # status hands its state to workflows with set_stats; show it, so the test sees what a workflow gets.
    life = Lifecycle(dict(lab_env, ANSIBLE_SHOW_CUSTOM_STATS="true"), tmp_path)
    yield life
    life.stop_writer()
    life.stop_api_poller()


def test_bootstrap_replicate_recover_remove(life, capsys):  # pylint: disable=redefined-outer-name
    # -- before anything exists: bad requests are refused ---------------------------------------
    life.refused("bootstrap: not a zone name", "bootstrap", "zone 'europe-west1' is not a Compute Engine zone name",
                 "zone=europe-west1")
    life.refused("bootstrap: a zone that does not exist", "bootstrap",
                 "zone europe-west1-z does not exist in region europe-west1", "zone=europe-west1-z")
    life.refused("bootstrap: etcd_quorum_read=false", "bootstrap", "etcd_quorum_read=false (kube-up's ENABLE_ETCD_QUORUM_READS=false)",
                 "zone=europe-west1-b", "etcd_quorum_read=false")
    life.refused("bootstrap: no credentials", "bootstrap",
                 "cannot read cluster k from Compute Engine: auth_kind=serviceaccount needs service_account_file",
                 "zone=europe-west1-b", env_unset=("GCP_SERVICE_ACCOUNT_FILE",))

    # -- bootstrap: the first replica holds the reserved address; the API answers there -----------
    life.step("bootstrap in europe-west1-b", "bootstrap", "zone=europe-west1-b")
    assert life.instance("k-master")["nat_ip"] == life.address()
    ready = life.readyz()
    assert ready["status"] == 200 and "[+]etcd ok" in ready["body"], ready
    life.step("bootstrap again", "bootstrap", "zone=europe-west1-b", expect_changed=0)
    life.start_writer()
    life.start_api_poller()

    life.refused("bootstrap again in another zone", "bootstrap", "cluster k already has replicas (k-master in europe-west1-b)",
                 "zone=europe-west1-c")
    life.refused("replicate: to two replicas", "replicate", "this would make 2 replicas, an even number", "zone=europe-west1-c")
    life.refused("replicate: a zone of another region", "replicate",
                 "zone us-east1-b is in region us-east1, but the cluster's masters are in region europe-west1",
                 "zone=europe-west1-c,us-east1-b")
    life.refused("replicate: the zone of a replica", "replicate", "zone europe-west1-b already holds replica k-master",
                 "zone=europe-west1-b,europe-west1-c")

    # -- replicate into two zones: the load balancer takes the reserved address on the second -------
    # The first run is killed in the middle of a membership change, once k-master-c is an etcd learner;
    # the next run must finish it (and add k-master-d).
    life.interrupted("replicate, killed while k-master-c is a learner", "replicate",
                     lambda: any(m[3] for m in life.members() or []), "zone=europe-west1-c,europe-west1-d")
    assert [m for m in life.members() if m[3]], "the run was not stopped during the membership change"
    life.step("replicate again, finishing the killed run", "replicate", "zone=europe-west1-c,europe-west1-d")
    members = life.members()
    assert sorted(m[1] for m in members) == ["k-master", "k-master-c", "k-master-d"] and not any(m[3] for m in members)
    assert all(url.startswith("https://") for m in members for url in m[2])
    rules = life.network()["forwarding_rules"]
    assert [(r["name"], r["ip"]) for r in rules] == [("k-master", life.address())]
    assert sorted(m["name"] for m in rules[0]["members"]) == ["k-master", "k-master-c", "k-master-d"]
    assert life.instance("k-master")["nat_ip"] != life.address()
    ready = life.readyz()
    assert ready["status"] == 200, ready

    # -- etcd stops on the first replica (its VM runs on): the checks read etcd through another one and
    # refuse for the right reason, not because the first replica could not be read --------------------
    life.ssh("sudo systemctl stop etcd")
    life.members_via = "k-master-c"
    life.refused("remove while the etcd of another replica is down", "remove", "etcd member k-master (https://",
                 "zone=europe-west1-d")
    life.ssh("sudo systemctl start etcd")
    life.members_via = "k-master"

    # -- a replica crashes: membership changes wait; recover it with its data disk ---------------
    before = {m[1]: m[0] for m in life.members()}
    control(life.env, "POST", "zones/europe-west1-c/instances/k-master-c/crash")
    life.refused("remove while a member is down", "remove", "etcd member k-master-c (https://", "zone=europe-west1-d")
    life.step("recover k-master-c, reusing its data disk", "recover", "zone=europe-west1-c")
    after = {m[1]: m[0] for m in life.members()}
    assert after == before, "the member keeps its identity when its disk is reused"
    life.step("recover again (healthy: nothing to do)", "recover", "zone=europe-west1-c", expect_changed=0)

    # -- another is lost, VM and data disk: replace it with a new member -------------------------
    # recover's auto mode reuses the disk while the member is listed: the new disk is blank, so it stops before
    # etcd is touched (a member must not come back without its data); replace is the way.
    life.replica_vm("k-master-d", "europe-west1-d", "absent", delete_data_disk=True)
    life.stopped("recover k-master-d, its disk lost, in auto mode", "recover",
                 "the data disk of k-master-d holds no etcd data", "zone=europe-west1-d", "replica_name=k-master-d")
    life.step("recover k-master-d as a new member", "recover", "zone=europe-west1-d", "recover_mode=replace")
    replaced = {m[1]: m[0] for m in life.members()}
    assert set(replaced) == {"k-master", "k-master-c", "k-master-d"} and replaced["k-master-d"] != before["k-master-d"]
    life.step("replicate again after the recoveries", "replicate", "zone=europe-west1-c,europe-west1-d", expect_changed=0)
    life.step("replicate again, in check mode with diff", "replicate", "zone=europe-west1-c,europe-west1-d", "--check", "--diff",
              expect_changed=0)

    # -- a zone outage: the cluster is read through the zones that answer; the dead zone's replica is taken
    # out of etcd and the load balancer, and replaced in a zone that answers; its leftovers go once it is back --
    control(life.env, "POST", "zones/europe-west1-c/down")
    outage = life.step("status while europe-west1-c is down", "status", "zone=europe-west1-b", expect_changed=0)
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
    life.step("remove k-master-c again while its zone is down", "remove", "zone=europe-west1-c", "replica_name=k-master-c",
              expect_changed=0)
    life.step("replicate into europe-west1-b, beside k-master", "replicate", "zone=europe-west1-b", "allow_same_zone=true")
    members = life.members()
    assert sorted(m[1] for m in members) == ["k-master", "k-master-b", "k-master-d"] and not any(m[3] for m in members)

    control(life.env, "POST", "zones/europe-west1-c/up")
    # Its VM boots again, with the etcd data of a member that was removed: the cluster refuses it, and the load
    # balancer sends it nothing.
    life.wait_ssh("k-master-c")
    time.sleep(15)
    assert sorted(m[1] for m in life.members()) == ["k-master", "k-master-b", "k-master-d"]
    [rule] = life.network()["forwarding_rules"]
    assert sorted(m["name"] for m in rule["members"]) == ["k-master", "k-master-b", "k-master-d"]
    life.step("remove k-master-c once its zone is back: its leftovers", "remove", "zone=europe-west1-c",
              "replica_name=k-master-c")
    assert life.instance("k-master-c") is None
    assert not [p for p in life.resources() if "europe-west1-c" in p and ("k-master" in p)], "leftovers in europe-west1-c"
    life.step("remove k-master-c again, absent_ok", "remove", "zone=europe-west1-c", "replica_name=k-master-c",
              "absent_ok=true", expect_changed=0)
    healthy = life.step("status once europe-west1-c is back", "status", "zone=europe-west1-b", expect_changed=0)
    assert "cluster k in region europe-west1: healthy" in healthy.stdout, healthy.stdout[-4000:]

    # -- a zone that fails during a run: replicate into europe-west1-c, which goes down once the VM is made --
    life.step("remove k-master-b", "remove", "zone=europe-west1-b", "replica_name=k-master-b")
    # Down as soon as the new VM answers over SSH: after the VM insert, before the etcd join.
    failed = life.zone_fails_during("replicate into europe-west1-c while it goes down", "replicate", "europe-west1-c",
                                    lambda: life.answers_ssh("k-master-c"), "zone=europe-west1-c")
    assert "adding k-master-c in zone europe-west1-c failed at" in failed, failed[-4000:]
    assert not any(m[3] for m in life.members()), "a learner was left behind"
    assert sorted(m[1] for m in life.members()) == ["k-master", "k-master-d"]
    control(life.env, "POST", "zones/europe-west1-c/up")
    life.step("replicate into europe-west1-c once it is back", "replicate", "zone=europe-west1-c")
    members = life.members()
    assert sorted(m[1] for m in members) == ["k-master", "k-master-c", "k-master-d"] and not any(m[3] for m in members)
    life.step("replicate again", "replicate", "zone=europe-west1-c", expect_changed=0)

    # -- remove down to one: the address goes back to the last replica ---------------------------
    life.refused("remove: a replica that does not exist", "remove", "the cluster has no replica named k-master-x",
                 "zone=europe-west1-b", "replica_name=k-master-x")
    life.step("remove k-master-d", "remove", "zone=europe-west1-d")
    life.step("remove k-master-c", "remove", "zone=europe-west1-c")
    life.refused("remove k-master-c again", "remove", "the cluster has no replica in zone europe-west1-c",
                 "zone=europe-west1-c")
    life.step("remove k-master-c again, absent_ok", "remove", "zone=europe-west1-c", "absent_ok=true", expect_changed=0)
    assert [m[1] for m in life.members()] == ["k-master"]
    assert life.network()["forwarding_rules"] == []
    assert life.instance("k-master")["nat_ip"] == life.address()
    assert not [p for p in life.resources() if "/backendServices/" in p or "/targetPools/" in p or "/instanceGroups/" in p]
    ready = life.readyz()
    assert ready["status"] == 200, ready
    life.refused("remove the last replica", "remove", "k-master is the cluster's last replica", "zone=europe-west1-b")
    life.refused("recover the only replica", "recover", "k-master is the cluster's only replica", "zone=europe-west1-b")
    life.refused("recover: a zone without a replica", "recover", "the cluster has no replica in zone europe-west1-c",
                 "zone=europe-west1-c")
    life.step("bootstrap again on the last replica", "bootstrap", "zone=europe-west1-b", expect_changed=0)
    status = life.step("status", "status", "zone=europe-west1-b", expect_changed=0)
    assert "LOAD BALANCER: single" in status.stdout and "k-master" in status.stdout, status.stdout[-3000:]

    # -- a zone with two replicas is ambiguous: a second VM of the cluster in europe-west1-b --------
    life.replica_vm("k-master-b2", "europe-west1-b", "present")
    life.refused("remove: a zone with two replicas", "remove",
                 "zone europe-west1-b holds 2 replicas (k-master, k-master-b2): set replica_name to say which one",
                 "zone=europe-west1-b")
    life.replica_vm("k-master-b2", "europe-west1-b", "absent")

    life.stop_writer()
    life.stop_api_poller()
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
        if "ended" in step and step["started"] > writes[0]["at"]:
            later = [w for w in writes if w["at"] >= step["ended"]][:5]
            assert later and any(w["ok"] for w in later), (step["step"], later)
