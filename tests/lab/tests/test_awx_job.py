# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Jobs run as AWX runs them: bootstrap → replicate → status → remove, each an ``ansible-runner`` job.

Each job has a private data directory laid out as AWX lays it out for a job:

- ``project/``: the user's project, checked out: a playbook per job template that imports the collection's
  playbook, and ``collections/requirements.yml`` naming the collection;
- ``requirements_collections/``: the collection installed from its built tarball, by ``ansible-galaxy collection
  install -r`` as AWX's project update installs it; the job's only collection path;
- ``inventory/hosts``: the inventory (localhost, with the lab's settings as inventory variables; no private key);
- ``env/extravars``: the survey's answers, all strings as a survey passes text and choices;
- ``env/envvars``: what AWX's "Google Compute Engine" credential injects (``GCE_EMAIL``, ``GCE_PROJECT``,
  ``GCE_CREDENTIALS_FILE_PATH``, ``GCP_SERVICE_ACCOUNT_FILE``, ``GCP_AUTH_KIND``, ``GCP_PROJECT``,
  ``GCP_ENV_TYPE``), naming the key file it writes under ``env/`` (``type``, ``private_key``, ``client_email``,
  ``project_id`` and Google's ``token_uri``; no ``private_key_id``). The lab's endpoint is an extra environment
  variable of the job, as AWX's "Extra Environment Variables" setting gives it;
- ``env/ssh_key`` and ``env/cmdline`` (``-u``): what AWX's "Machine" credential gives: ansible-runner loads the key
  into an ssh-agent of the job.

The job runs in an environment of its own (``env -i``): no credential reaches it but the injected one, and no task
parameter carries one. Processes run without isolation; AWX runs the same in a container, where the paths start
``/runner`` instead.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from labcli import LAB, lab
from lifecycle_lab import REPO

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

CLUSTER = "k"
ZONE = "europe-west1-b"
OTHER_ZONES = "europe-west1-c,europe-west1-d"
PLAYBOOKS = ("bootstrap", "replicate", "status", "remove")


def gce_credential(private_data_dir, key):
    """What AWX's "Google Compute Engine" credential injects for a job, given the credential's fields (the service
    account's email, its project, its private key): a key file under env/ and the variables that name it."""
    path = os.path.join(private_data_dir, "env", "tmpgcecred")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump({"type": "service_account", "private_key": key["private_key"], "client_email": key["client_email"],
                   "project_id": key["project_id"], "token_uri": "https://oauth2.googleapis.com/token"}, handle, indent=2)
    return {"GCE_EMAIL": key["client_email"], "GCE_PROJECT": key["project_id"], "GCE_CREDENTIALS_FILE_PATH": path,
            "GCP_SERVICE_ACCOUNT_FILE": path, "GCP_AUTH_KIND": "serviceaccount", "GCP_PROJECT": key["project_id"],
            "GCP_ENV_TYPE": "tower"}


class Awx:
    """A project checked out and the collection installed as AWX has them, and jobs run in it with ansible-runner."""

    def __init__(self, env, tmp_path):
        self.env = env
        self.tmp = tmp_path
        self.lab_inventory = json.loads((tmp_path / "state" / "inventory.json").read_text())
        self.key = json.loads((tmp_path / "state" / "deployer.json").read_text())
        self.ssh_key = (tmp_path / "state" / "ssh" / "id_ed25519").read_text()
        self.project = tmp_path / "project"
        self.collections = tmp_path / "requirements_collections"
        self._build_and_install()
        self.jobs = 0

    def _build_and_install(self):
        """The collection's tarball, and the project that names it, installed as AWX's project update does."""
        built = self.tmp / "built"
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-galaxy"), "collection", "build",
                        "--output-path", str(built), REPO], check=True, capture_output=True, timeout=300)
        tarball = next(built.glob("kubeha-gce-*.tar.gz"))
        (self.project / "playbooks").mkdir(parents=True)
        (self.project / "collections").mkdir()
        (self.project / "collections" / "requirements.yml").write_text(yaml.safe_dump(
            {"collections": [{"name": str(tarball), "type": "file"}]}))
        for name in PLAYBOOKS:
            (self.project / "playbooks" / ("%s.yml" % name)).write_text(yaml.safe_dump(
                [{"name": "The collection's %s" % name, "ansible.builtin.import_playbook": "kubeha.gce.%s" % name}],
                sort_keys=False))
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-galaxy"), "collection", "install",
                        "-r", str(self.project / "collections" / "requirements.yml"), "-p", str(self.collections)],
                       check=True, capture_output=True, timeout=300, cwd=str(self.project))

    def job(self, playbook, answers, key=None):
        """Run ``playbooks/PLAYBOOK.yml`` of the project as an AWX job launched with its survey answered ``answers``
        (strings) and the GCE credential ``key``; returns (status, rc, stdout, set_stats data, private data dir)."""
        extravars = survey_extra_vars(playbook, answers)
        self.jobs += 1
        ident = "%d" % self.jobs
        data = self.tmp / ("job-%s-%s" % (ident, playbook))
        (data / "env").mkdir(parents=True)
        (data / "inventory").mkdir()
        shutil.copytree(self.project, data / "project", symlinks=True)
        shutil.copytree(self.collections, data / "requirements_collections", symlinks=True)
        settings = {name: value for name, value in self.lab_inventory["all"]["hosts"]["localhost"].items()
                    # The Machine credential gives the private key (through ssh-agent) and the user (-u).
                    if name != "kubeha_ssh_private_key_file"}
        (data / "inventory" / "hosts").write_text(json.dumps({"all": {"hosts": {"localhost": settings}}}, indent=1))
        (data / "env" / "extravars").write_text(json.dumps(extravars))
        (data / "env" / "ssh_key").write_text(self.ssh_key)
        (data / "env" / "cmdline").write_text("-u %s" % settings["kubeha_ssh_user"])
        (data / "env" / "settings").write_text(json.dumps({"job_timeout": 1800, "idle_timeout": 0}))
        home = data / "home"
        home.mkdir()
        envvars = dict(gce_credential(str(data), key or self.key),
                       KUBEHA_GCE_API_ENDPOINT=self.env_of("KUBEHA_GCE_API_ENDPOINT"),
                       ANSIBLE_SSH_CONTROL_PATH_DIR=self.env_of("ANSIBLE_SSH_CONTROL_PATH_DIR"),
                       ANSIBLE_COLLECTIONS_PATH=str(data / "requirements_collections"),
                       ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false")
        (data / "env" / "envvars").write_text(json.dumps(envvars))
        bin_dir = os.path.dirname(sys.executable)
        done = lab(self.env, "exec", "--", "env", "-i", "PATH=%s:/usr/sbin:/usr/bin:/sbin:/bin" % bin_dir,
                   "HOME=%s" % home, "LANG=C.UTF-8", os.path.join(bin_dir, "ansible-runner"), "run", str(data),
                   "-p", "playbooks/%s.yml" % playbook, "--ident", ident, timeout=1900)
        artifacts = data / "artifacts" / ident
        assert artifacts.is_dir(), done.stdout[-3000:] + done.stderr[-3000:]
        stdout = (artifacts / "stdout").read_text()
        stats = [json.loads(event.read_text()) for event in (artifacts / "job_events").glob("*.json")]
        stats = [event for event in stats if event.get("event") == "playbook_on_stats"]
        workflow = stats[0]["event_data"].get("artifact_data") or {} if stats else {}
        return (artifacts / "status").read_text().strip(), int((artifacts / "rc").read_text()), stdout, workflow, data

    def env_of(self, name):
        """One variable of what ``lab env`` says a playbook in this lab needs."""
        printed = subprocess.run([LAB, "env"], env=self.env, check=True, capture_output=True, text=True).stdout
        found = dict(shlex.split(line[len("export "):])[0].split("=", 1) for line in printed.splitlines()
                     if line.startswith("export "))
        return found[name]


def survey_extra_vars(playbook, answers):
    """The extra variables of a job launched with the job template's survey (extensions/awx/surveys/PLAYBOOK.json)
    answered ``answers``, as AWX passes them: each answer (text and choices as strings), each question left alone
    with its default, and each one left blank as an empty string."""
    with open(os.path.join(REPO, "extensions", "awx", "surveys", "%s.json" % playbook), encoding="utf-8") as handle:
        questions = {question["variable"]: question for question in json.load(handle)["spec"]}
    extravars = {}
    for name, value in answers.items():
        assert isinstance(value, str), "a survey passes text"
        assert name in questions, "the %s survey does not ask for %s" % (playbook, name)
        assert value in questions[name].get("choices", [value]), (name, value, questions[name]["choices"])
    for name, question in questions.items():
        assert name in answers or not question["required"], "%s: %s is required" % (playbook, name)
        extravars[name] = answers.get(name, question.get("default", ""))
    return extravars


def no_secret_in(data, *secrets):
    """The job's artifacts (its events, its stdout) hold none of ``secrets``."""
    for root, _dirs, files in os.walk(data / "artifacts"):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                content = handle.read()
            for secret in secrets:
                assert secret.encode() not in content, "%s holds key material" % path


def key_body(pem):
    """The middle line of a PEM key: part of the key itself, not its armour."""
    lines = [line for line in pem.strip().splitlines() if not line.startswith("-----")]
    return lines[len(lines) // 2]


@pytest.fixture
def awx(lab_env, tmp_path):
    # A custom-mode network with no firewall rule but the cluster's own, as production networks are.
    assert lab(lab_env, "up", "--network", "custom").returncode == 0
    return Awx(lab_env, tmp_path)


def test_awx_jobs_bootstrap_replicate_status_remove(awx):
    secrets = (key_body(awx.key["private_key"]), key_body(awx.ssh_key))

    # A credential whose key the project never issued: the job fails, saying what to give; nothing is made.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    status, rc, stdout, _workflow, data = awx.job("status", {"cluster_name": CLUSTER, "zone": ZONE},
                                                  key=dict(awx.key, private_key=stranger))
    assert (status, rc != 0) == ("failed", True), stdout[-3000:]
    # Refused by the Compute API (not a key file that could not be read), and said so with what to give.
    assert "was refused (401" in stdout and "AWX Google Compute Engine credential" in stdout, stdout[-3000:]
    no_secret_in(data, key_body(stranger), *secrets)

    status, rc, stdout, workflow, data = awx.job("bootstrap", {"cluster_name": CLUSTER, "zone": ZONE})
    assert (status, rc) == ("successful", 0), stdout[-5000:]
    made = workflow["kubeha_bootstrapped"]
    assert made["replicas"] == [{"name": "k-master", "zone": ZONE, "state": "ok"}], made
    assert (made["changed"], made["done"], made["cluster"], made["region"]) == (True, ["k-master"], CLUSTER, "europe-west1")
    assert made["etcd"] == {"voters": 1, "healthy_voters": 1, "quorum": 1, "has_quorum": True} and made["etcd_leader"] == "k-master"
    address = made["address"]
    assert address and address.count(".") == 3, made
    no_secret_in(data, *secrets)

    status, rc, stdout, workflow, data = awx.job("replicate", {"cluster_name": CLUSTER, "zone": OTHER_ZONES})
    assert (status, rc) == ("successful", 0), stdout[-5000:]
    added = workflow["kubeha_replicated"]
    assert added["replicas"] == [{"name": "k-master", "zone": ZONE, "state": "ok"},
                                 {"name": "k-master-c", "zone": "europe-west1-c", "state": "ok"},
                                 {"name": "k-master-d", "zone": "europe-west1-d", "state": "ok"}], added
    assert (added["changed"], added["done"], added["address"]) == (True, ["k-master-c", "k-master-d"], address), added
    assert added["etcd"] == {"voters": 3, "healthy_voters": 3, "quorum": 2, "has_quorum": True}
    no_secret_in(data, *secrets)

    # The same job template again: a workflow sees that nothing changed.
    status, rc, stdout, workflow, data = awx.job("replicate", {"cluster_name": CLUSTER, "zone": OTHER_ZONES})
    assert (status, rc) == ("successful", 0), stdout[-5000:]
    assert (workflow["kubeha_replicated"]["changed"], workflow["kubeha_replicated"]["done"]) == (False, []), workflow
    assert [r["state"] for r in workflow["kubeha_replicated"]["replicas"]] == ["ok", "ok", "ok"]

    status, rc, stdout, workflow, data = awx.job("status", {"cluster_name": CLUSTER, "zone": ZONE})
    assert (status, rc) == ("successful", 0), stdout[-5000:]
    seen = workflow["kubeha_status"]
    assert seen["degraded"] is False and seen["problems"] == [], seen
    assert [(r["name"], r["state"]) for r in seen["replicas"]] == [
        ("k-master", "ok"), ("k-master-c", "ok"), ("k-master-d", "ok")]
    assert seen["etcd"]["has_quorum"] is True and seen["cluster"] == CLUSTER

    # Booleans as a survey's choices pass them: the strings "true" and "false".
    status, rc, stdout, workflow, data = awx.job("remove", {"cluster_name": CLUSTER, "zone": OTHER_ZONES,
                                                            "keep_data_disk": "false", "absent_ok": "false"})
    assert (status, rc) == ("successful", 0), stdout[-5000:]
    removed = workflow["kubeha_removed"]
    assert (removed["changed"], removed["done"]) == (True, ["k-master-c", "k-master-d"]), removed
    assert removed["replicas"] == [{"name": "k-master", "zone": ZONE, "state": "ok"}], removed
    assert removed["etcd"] == {"voters": 1, "healthy_voters": 1, "quorum": 1, "has_quorum": True}
    # On 2 → 1 the reserved address went back to the last replica.
    assert removed["address"] == address, removed
    no_secret_in(data, *secrets)
