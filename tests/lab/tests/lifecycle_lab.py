# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running the lifecycle playbooks in a lab as a user runs them, and measuring each step: the ``life`` fixture of
test_lifecycle.py and of the benchmark (bench_lifecycle.py).

Each playbook runs as ``tests/lab/lab exec -- ansible-playbook playbooks/X.yml -e ...``. A background writer puts a
key into etcd every 200 ms, and a poller asks the reserved address for /readyz every 200 ms; their failures are
reported per step. With ``measure`` on, each step also counts its tasks, its Compute Engine calls (reads, mutating,
token exchanges, from the simulator's request log) and its SSH round trips (ansible's ssh runs, counted by a
wrapper).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from kubeha_lab.sim.faults import is_mutating
from labcli import LAB, control, kill_tree, lab

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CLUSTER = "k"
# The crash matrix's callback (kubeha_crash), which kills a run right after a task that changed something.
CALLBACKS = os.path.join(REPO, "tests", "lab", "callback_plugins")
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


# etcdctl on a replica, with the API server's etcd client certificate (add --endpoints).
ETCDCTL = ("sudo etcdctl --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/apiserver-etcd-client.crt "
           "--key /etc/kubernetes/pki/apiserver-etcd-client.key")


@contextlib.contextmanager
def running(env, args, log_path):
    """``tests/lab/lab ARGS`` running in the background, what it prints going to ``log_path``; whatever of it still
    runs when the block ends (the test failed or was interrupted) is killed, every process of it."""
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen([LAB] + list(args), env=env, stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            kill_tree(process.pid)
        process.wait()


class Lifecycle:
    """Runs the playbooks in the lab and keeps what each step cost."""

    def __init__(self, env, tmp_path, measure=False):
        self.env = env
        self.tmp = tmp_path
        self.measure = measure
        self.ssh_log = tmp_path / "ssh-runs.log"
        if measure:
            # Every ssh that ansible runs (a connection, or a session over its kept connection, also those that sftp
            # and scp start) leaves a line: the ssh first on the PATH counts, then runs the real one.
            real = shutil.which("ssh")
            bin_dir = tmp_path / "counted-bin"
            bin_dir.mkdir()
            (bin_dir / "ssh").write_text('#!/bin/sh\necho "$$" >> %s\nexec %s "$@"\n' % (self.ssh_log, real))
            (bin_dir / "ssh").chmod(0o755)
            self.env = dict(env, PATH="%s%s%s" % (bin_dir, os.pathsep, env.get("PATH", os.defpath)))
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

    def _compute(self, call, *args):
        """One Compute API call made behind the collection's back (``call`` is Python using ``compute``, ``project``
        and ``sys.argv``), awaited to its end."""
        script = ("import os, sys\nfrom kubeha_lab import apiclient\ncompute, project = apiclient.client(), os.environ['GCP_PROJECT']\n"
                  "apiclient.done(compute, %s.execute())\n" % call)
        done = lab(self.env, "exec", "--", sys.executable, "-c", script, *args)
        assert done.returncode == 0, done.stderr[-3000:]

    def drop_from_load_balancer(self, name, zone):
        """Take a replica out of the load balancer's instance group behind the collection's back, with the Compute API."""
        self._compute("compute.instanceGroups().removeInstances(project=project, zone=sys.argv[2], instanceGroup=sys.argv[3], "
                      "body={'instances': [{'instance': 'projects/%s/zones/%s/instances/%s' % (project, sys.argv[2], "
                      "sys.argv[1])}]})", name, zone, "%s-master" % CLUSTER)

    def worker_vm(self, name, zone):
        """A worker node of the cluster, as other tooling makes it: the cluster's label, but not the masters' role."""
        self._compute("compute.instances().insert(project=project, zone=sys.argv[2], body={'name': sys.argv[1], "
                      "'machineType': 'zones/%s/machineTypes/e2-small' % sys.argv[2], 'labels': {'kubeha-cluster': "
                      "sys.argv[3], 'kubeha-role': 'node'}, 'disks': [{'boot': True, 'autoDelete': True, 'initializeParams': "
                      "{'sourceImage': 'projects/debian-cloud/global/images/family/debian-12'}}], 'networkInterfaces': "
                      "[{'network': 'global/networks/%s' % sys.argv[4], 'subnetwork': 'regions/%s/subnetworks/%s' % "
                      "(sys.argv[2].rsplit('-', 1)[0], sys.argv[4])}]})", name, zone, CLUSTER, NETWORK)

    def _while_running(self, name, extra, log_name, until, act):
        """Run a playbook, and ``act(process)`` once, as soon as ``until()`` holds while it runs; ``act`` returns
        whether to stop watching. Returns (acted, exit code, what it printed, when it started)."""
        started = time.time()
        acted = False
        with running(self.env, self.command(name, *extra), self.tmp / log_name) as process:
            while process.poll() is None and time.time() - started < 1800:
                if not acted and until():
                    acted = True
                    if act(process):
                        break
                time.sleep(0.5)
            process.wait(timeout=1800)
        return acted, process.returncode, (self.tmp / log_name).read_text(), started

    def interrupted(self, title, name, until, *extra):
        """Start a playbook and kill it, every process of it at once (SIGKILL), as soon as ``until()`` holds."""
        killed, code, output, started = self._while_running(name, extra, "interrupted.log", until,
                                                            lambda process: kill_tree(process.pid) or True)
        assert killed, "%s: the run ended (exit %s) before it could be stopped:\n%s" % (title, code, output[-3000:])
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "wall_s": round(time.time() - started, 1),
                           "changed": None, "killed": True, "started": started, "ended": time.time()})

    def crash_walk(self, title, name, *extra, after_kill=None, limit=300):
        """The crash matrix of one playbook: kill the run (SIGKILL to all its processes) right after the first task
        that changed something and that no earlier run of the walk was killed after, run it again, killed at its next
        new change, and so on until a run ends by itself; that run must succeed, and one more must change nothing.
        Every task that changes something (each host, each loop item whose result comes back before the next item
        has run) is a kill point once, and each kill is converged by the runs after it; ``after_kill(point)`` checks
        what must hold after each kill. Returns the kill points in order, each with the wall time of its run."""
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        visited, changes = self.tmp / ("crash-%s.visited" % slug), self.tmp / ("crash-%s.jsonl" % slug)
        visited.write_text("")
        env = dict(self.env, ANSIBLE_CALLBACK_PLUGINS=CALLBACKS, ANSIBLE_CALLBACKS_ENABLED="kubeha_crash",
                   KUBEHA_CRASH_LOG=str(changes), KUBEHA_CRASH_VISITED=str(visited))
        points, started = [], time.time()
        for _run in range(limit):
            changes.write_text("")
            run_started = time.time()
            with running(env, self.command(name, *extra), self.tmp / "crash-walk.log") as process:
                code = process.wait(timeout=1800)
            output = (self.tmp / "crash-walk.log").read_text()
            killed = [entry for entry in map(json.loads, changes.read_text().splitlines()) if entry.get("killed")]
            if code != -signal.SIGKILL or not killed:
                assert code == 0, "%s: the run after the kill after %r failed (exit %s):\n%s" % (
                    title, points[-1]["key"] if points else None, code, output[-4000:])
                break
            points.append(dict(killed[-1], wall_s=round(time.time() - run_started, 1)))
            if after_kill:
                after_kill(points[-1])
            with open(visited, "a", encoding="utf-8") as handle:
                handle.write(killed[-1]["key"] + "\n")
        else:
            raise AssertionError("%s: more than %d kill points" % (title, limit))
        again = self.playbook(name, *extra)
        assert again.returncode == 0, "%s: the run after the walk failed:\n%s" % (title, failure(again))
        assert recap(again)["localhost"]["changed"] == 0, "%s: the run after the walk changed:\n%s" % (
            title, changed_tasks(again))
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "wall_s": round(time.time() - started, 1),
                           "changed": "%d kills" % len(points), "crash_points": points, "started": started,
                           "ended": time.time()})
        return points

    def together(self, title, name, *extra):
        """Start the same playbook twice at once, as two AWX jobs or an operator and a schedule would: both must
        succeed, one after the other (the second waits for the cluster's lock). Returns both runs' output."""
        started = time.time()
        with running(self.env, self.command(name, *extra), self.tmp / "together-0.log") as first, \
                running(self.env, self.command(name, *extra), self.tmp / "together-1.log") as second:
            codes = [first.wait(timeout=1800), second.wait(timeout=1800)]
        outputs = [(self.tmp / ("together-%d.log" % index)).read_text() for index in range(2)]
        for code, output in zip(codes, outputs):
            assert code == 0, "%s: a run failed (exit %s):\n%s" % (title, code, output[-4000:])
        changed = [str(recap(subprocess.CompletedProcess([], 0, output, ""))["localhost"]["changed"]) for output in outputs]
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "wall_s": round(time.time() - started, 1),
                           "changed": "+".join(changed), "started": started, "ended": time.time()})
        return outputs

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
        if self.measure:
            control(self.env, "DELETE", "requests")
            self.ssh_log.write_text("")
        started = time.time()
        run = self.playbook(name, *extra)
        ended = time.time()
        assert run.returncode == 0, "%s failed:\n%s" % (title, failure(run))
        counts = recap(run)["localhost"]
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "wall_s": round(ended - started, 1),
                           "changed": counts["changed"], "started": started, "ended": ended})
        if self.measure:
            self.steps[-1].update(self.costs(run))
        if expect_changed == 0:
            assert counts["changed"] == 0, "%s changed something:\n%s" % (title, changed_tasks(run))
        return run

    def event(self, title, action, seconds):
        """Something done to the cluster from outside (``action()``), watched for ``seconds`` by the writer and the
        poller as a step is."""
        started = time.time()
        action()
        time.sleep(max(0.0, started + seconds - time.time()))
        self.steps.append({"step": title, "playbook": None, "args": [], "wall_s": round(time.time() - started, 1),
                           "changed": None, "event": True, "started": started, "ended": time.time()})

    def costs(self, run):
        """What the last playbook run cost: tasks, Compute Engine calls and SSH runs (with ``measure`` on)."""
        requests = control(self.env, "GET", "requests")["requests"]
        calls = [r for r in requests if r["method"] != "token"]
        tokens = len(requests) - len(calls)
        return {"tasks": sum(1 for line in run.stdout.splitlines() if line.startswith("TASK [")),
                "gce_reads": sum(1 for r in calls if not is_mutating(r["method"])),
                "gce_mutating": sum(1 for r in calls if is_mutating(r["method"])),
                "token_exchanges": tokens,
                "ssh_runs": len(self.ssh_log.read_text().splitlines())}

    def stopped(self, title, name, message, *extra, faults=None):
        """A run that must stop midway with ``message`` and leave the etcd membership as it was: before it changes
        it, or after its rescue undid the change. ``faults`` are the simulator's (see kubeha_lab.sim.faults), set for
        this run only. Returns the run."""
        members = self.members()
        if faults:
            control(self.env, "PUT", "faults", faults)
        started = time.time()
        try:
            run = self.playbook(name, *extra)
        finally:
            if faults:
                control(self.env, "DELETE", "faults")
        ended = time.time()
        assert run.returncode != 0, "%s did not stop" % title
        assert message in run.stdout, "%s: %r not in\n%s" % (title, message, failure(run))
        assert self.members() == members, title
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "stopped": message,
                           "wall_s": round(ended - started, 1), "changed": None, "started": started, "ended": ended})
        return run

    def under_faults(self, title, name, *extra, errors=None, failed_operation=None, seed=14):
        """A step with the simulator answering a share of Compute Engine calls with errors (``errors`` as
        kubeha_lab.sim.faults takes them) and, with ``failed_operation`` (method, code), the first operation of that
        method ending DONE with that error. A run that stops there, saying so, is run again, as a user would: the step
        must be done by the second run. Records the runs, the calls, the errors answered (each one retried by the
        client) and the operations failed. Returns the last run."""
        faults = {"seed": seed, "errors": errors or {}}
        if failed_operation:
            method, code = failed_operation
            faults["fail_operations"] = {method: {"count": 1, "code": code, "message": "%s (injected by the lab)" % code}}
        control(self.env, "DELETE", "requests")
        control(self.env, "PUT", "faults", faults)
        started, runs = time.time(), []
        try:
            for _run in range(2):
                runs.append(self.playbook(name, *extra))
                if runs[-1].returncode == 0:
                    break
                assert failed_operation and len(runs) == 1 and code in runs[-1].stdout, "%s failed:\n%s" % (
                    title, failure(runs[-1]))
            left = control(self.env, "GET", "faults")
        finally:
            control(self.env, "DELETE", "faults")
        ended = time.time()
        assert runs[-1].returncode == 0, "%s: the run after the failed operation failed:\n%s" % (title, failure(runs[-1]))
        if failed_operation:
            assert left["fail_operations"][method]["count"] == 0, "%s made no call of %s" % (title, method)
        calls = [r for r in control(self.env, "GET", "requests")["requests"] if r["method"] != "token"]
        answered = {}
        for call in calls:
            if call["status"] in (429, 500, 502, 503):
                answered[str(call["status"])] = answered.get(str(call["status"]), 0) + 1
        self.steps.append({"step": title, "playbook": name, "args": list(extra), "wall_s": round(ended - started, 1),
                           "changed": recap(runs[-1])["localhost"]["changed"], "runs": len(runs),
                           "gce_calls": len(calls), "errors_answered": answered,
                           "failed_operation": "%s %s" % failed_operation if failed_operation else None,
                           "started": started, "ended": ended})
        return runs[-1]

    def converged(self, replicas):
        """The cluster is exactly ``replicas``: as VMs, as etcd voting members (no learner), and as load balancer
        members (none with one replica, which then holds the reserved address itself); nothing else of it is left
        in Compute Engine, and the API answers ready through the reserved address."""
        members = self.members()
        assert sorted(m[1] for m in members) == sorted(replicas) and not any(m[3] for m in members), members
        resources = self.resources()
        names = {p.rsplit("/", 1)[-1] for p in resources if "/instances/" in p}
        assert names == set(replicas), names
        # Each replica's boot disk (named as its VM) and data disk.
        disks = {p.rsplit("/", 1)[-1] for p in resources if "/disks/" in p}
        assert disks == set(replicas) | {"%s-pd" % r for r in replicas}, disks
        rules = self.network()["forwarding_rules"]
        if len(replicas) == 1:
            assert rules == [] and self.instance(replicas[0])["nat_ip"] == self.address()
            balancer = ("/backendServices/", "/targetPools/", "/healthChecks/", "/instanceGroups/", "/forwardingRules/")
            assert not [p for p in resources if any(c in p for c in balancer)]
        else:
            [rule] = rules
            assert rule["ip"] == self.address() and sorted(m["name"] for m in rule["members"]) == sorted(replicas)
        ready = self.readyz()
        assert ready["status"] == 200, ready

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

    def fetch(self, url, ca=None):
        """GET ``url`` from the lab's namespace (outside the VPC, as a user is), checked against the cluster CA (the
        controller's copy, or the file ``ca``); status -1 when it cannot be had (TLS refused, no answer)."""
        done = lab(self.env, "exec", "--", sys.executable, "-c", FETCH, url, str(ca or self.tmp / "ca.crt"), "", "")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    @property
    def kubeconfig(self):
        """Where the steps that pass kubeconfig_dest have the administrator's kubeconfig written."""
        return self.tmp / "k.kubeconfig"

    def kubectl(self, *args):
        """The real kubectl with that kubeconfig, from the lab's namespace (outside the VPC, as a user is)."""
        kubectl = os.path.join(os.path.dirname(sys.executable), "kubectl")
        return lab(self.env, "exec", "--", kubectl, "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                   str(self.tmp / "kube-cache"), "--request-timeout=20s", *args, timeout=120)

    def ssh_command(self, name, command):
        """``ssh`` to a replica's external IP as it is now (as the collection does). The IP can move while
        a playbook runs (the reserved address goes to the load balancer, which forwards only the API
        port), so connecting and a silent connection both give up after seconds instead of hanging."""
        return ["exec", "--", "ssh", "-i", os.path.join(self.env["KUBEHA_LAB_STATE"], "ssh", "id_ed25519"),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "kubeha@%s" % self.instance(name)["nat_ip"], command]

    def ssh(self, command, name="k-master", check=True, timeout=120, input_text=None):
        """Run ``command`` on a replica over SSH (with ``input_text`` on its standard input)."""
        done = lab(self.env, *self.ssh_command(name, command), timeout=timeout, input_text=input_text)
        if check:
            assert done.returncode == 0, "%s on %s: %s" % (command, name, done.stderr)
        return done

    def members(self):
        """The etcd membership (IDs, names, peer URLs, learner or not), read on ``members_via``: the first
        replica, which this test never crashes or removes. Internal IPs are not reachable from outside the VPC."""
        if self.instance(self.members_via) is None:
            return None
        done = self.ssh("%s --endpoints https://127.0.0.1:2379 --command-timeout 10s member list -w json" % ETCDCTL,
                        name=self.members_via, check=False)
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

    def wait_for_log(self, name, unit, text, limit):
        """Until ``unit``'s journal on replica ``name`` holds ``text``, or ``limit`` seconds passed (what the test
        checks next must then hold all the same). Returns whether it was seen."""
        deadline = time.time() + limit
        while time.time() < deadline:
            if text in self.ssh("sudo journalctl -u %s --no-pager -q" % unit, name=name, check=False).stdout:
                return True
            time.sleep(2)
        return False

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
            step["write_gap_s"] = longest_gap(writes, step["started"], step["ended"])
        return {"cluster": CLUSTER, "steps": self.steps, "writes": len(writes),
                "failed_writes": sum(1 for w in writes if not w["ok"]), "polls": len(polls),
                "failed_polls": sum(1 for p in polls if not p["ok"])}


def etcd_leader(life):
    """The name of etcd's leader, read through the first replica."""
    done = life.ssh("%s --endpoints https://127.0.0.1:2379 endpoint status -w json" % ETCDCTL)
    leader = json.loads(done.stdout)[0]["Status"]["leader"]
    return next(m[1] for m in life.members() if m[0] == leader)


def section(run, task):
    """The lines of the message that the task named ``task`` printed (a list of strings)."""
    text = [part for part in run.stdout.split("TASK [") if task in part.split("]", 1)[0]][-1]
    return [json.loads(line.strip().rstrip(",")) for line in text.splitlines()
            if line.strip().startswith('"') and line.strip().rstrip(",").endswith('"') and '": ' not in line]


def recap(run):
    """PLAY RECAP counts per host."""
    counts = {}
    for line in run.stdout.splitlines():
        match = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
        if match:
            counts[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return counts


def changed_tasks(run):
    """The tasks that changed something, and what the run said about why it converged a replica again."""
    lines = run.stdout.splitlines()
    tasks, task, why = [], None, []
    for line in lines:
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line
        elif line.startswith("changed:") and task and task not in tasks:
            tasks.append(task)
        elif task and "converged again, and why" in task:
            why.append(line)
    return "\n".join(tasks + why) or failure(run)


def failure(run):
    return run.stdout[-6000:] + run.stderr[-2000:]


def longest_gap(writes, start, end):
    """The longest time between two successful writes (each write starts when the one before ended) around and
    within [start, end): a write that hangs and then succeeds counts as the stall it is."""
    times = [w["at"] for w in writes if w["ok"]]
    before = [t for t in times if t < start][-1:]
    after = [t for t in times if t >= end][:1]
    around = before + [t for t in times if start <= t < end] + after
    return round(max((b - a for a, b in zip(around, around[1:])), default=0.0), 2)


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


@pytest.fixture
def life(lab_env, tmp_path, request):
    # A custom-mode network with no firewall rule but the cluster's own, as production networks are.
    assert lab(lab_env, "up", "--network", "custom").returncode == 0
    # status hands its state to workflows with set_stats; show it, so the test sees what a workflow gets.
    life = Lifecycle(dict(lab_env, ANSIBLE_SHOW_CUSTOM_STATS="true"), tmp_path,
                     measure=request.node.get_closest_marker("bench") is not None)
    yield life
    life.stop_writer()
    life.stop_api_poller()
