# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the lab's own tests: a simulator in this process, and clients of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import typing as t
import urllib.request

import google.oauth2.service_account
import google_auth_httplib2
import httplib2
import pytest
from googleapiclient import discovery

from kubeha_lab.sim.faults import is_mutating
from kubeha_lab.sim.operations import Timing
from kubeha_lab.sim.server import Simulator, serve

# The lab_env fixture of tests that drive the lab through its command line, and the life fixture of those that
# run the lifecycle playbooks.
pytest_plugins = ["labcli", "lifecycle_lab"]

PROJECT = "kubeha-lab"
ZONE = "europe-west1-b"


class Lab:
    """A running simulator and what a test needs to talk to it."""

    def __init__(self, state_path: str, timing: Timing, network_mode: str = "default") -> None:
        self.state_path = state_path
        self.timing = timing
        self.network_mode = network_mode
        self.sim: Simulator | None = None
        self.server: t.Any = None
        self.key: dict[str, t.Any] = {}
        self.port = 0
        self.start()

    def start(self) -> None:
        self.sim = Simulator(self.state_path, timing=self.timing, network_mode=self.network_mode)
        self.server, _thread = serve(self.sim, port=self.port)
        self.port = self.server.server_address[1]
        self.endpoint = "http://127.0.0.1:%d/compute/v1/" % self.server.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        # As a simulator whose process ends: its operations stop where they are, for the next one to finish.
        self.sim.compute.ops.stop()

    def restart(self) -> None:
        """Stop the simulator and start a new one on the same state file and port."""
        self.stop()
        self.start()

    def new_key(self, name: str = "deployer") -> dict[str, t.Any]:
        return self.control("POST", "service-accounts", {"name": name})

    def control(self, method: str, path: str, body: t.Any = None) -> t.Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request("%s/_lab/%s" % (self.base, path), data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:  # nosec - loopback only
            return json.loads(answer.read() or b"{}")

    def client(self, key: dict[str, t.Any] | None = None) -> t.Any:
        key = key or self.key or self.new_key()
        self.key = key
        credentials = google.oauth2.service_account.Credentials.from_service_account_info(
            key, scopes=["https://www.googleapis.com/auth/compute"])
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=30))
        return discovery.build("compute", "v1", http=http, static_discovery=True, cache_discovery=False,
                               client_options={"api_endpoint": self.endpoint})

    def requests(self) -> list[dict[str, t.Any]]:
        return self.control("GET", "requests")["requests"]

    def mutating(self) -> list[str]:
        """API methods called since the log was last cleared that change something."""
        return [r["method"] for r in self.requests() if is_mutating(r["method"])]


@pytest.fixture
def lab(tmp_path: t.Any) -> t.Iterator[Lab]:
    running = Lab(os.path.join(str(tmp_path), "state.json"), Timing(pending=0.02, running=0.1, wait_limit=5))
    yield running
    running.stop()


@pytest.fixture
def custom_lab(tmp_path: t.Any) -> t.Iterator[Lab]:
    """A simulator whose project has a custom-mode network "lab" and no default network (no firewall rule)."""
    running = Lab(os.path.join(str(tmp_path), "state.json"), Timing(pending=0.02, running=0.1, wait_limit=5), "custom")
    yield running
    running.stop()


@pytest.fixture
def compute(lab: Lab) -> t.Any:
    return lab.client()


def wait(compute: t.Any, op: dict[str, t.Any]) -> dict[str, t.Any]:
    """Wait for an operation in its own scope, as a client would."""
    name = op["name"]
    if "zone" in op:
        return compute.zoneOperations().wait(project=PROJECT, zone=op["zone"].rsplit("/", 1)[-1], operation=name).execute()
    if "region" in op:
        return compute.regionOperations().wait(project=PROJECT, region=op["region"].rsplit("/", 1)[-1],
                                               operation=name).execute()
    return compute.globalOperations().wait(project=PROJECT, operation=name).execute()


REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def collection_and_key(lab: Lab, tmp_path: t.Any, account: str) -> t.Any:
    """Link this checkout as the kubeha.gce collection under tmp_path/collections, and write a
    service-account key the lab issued for ``account`` (mode 0600); return the key file's path."""
    root = tmp_path / "collections" / "ansible_collections" / "kubeha"
    root.mkdir(parents=True)
    (root / "gce").symlink_to(REPO)
    key = tmp_path / ("%s.json" % account)
    key.write_text(json.dumps(lab.new_key(account)))
    key.chmod(0o600)
    return key


class ModuleProcess:
    """Runs one of the collection's modules as a separate process, as Ansible does, with the lab's credentials."""

    def __init__(self, lab: Lab, tmp_path: t.Any, module: str, defaults: dict[str, t.Any] | None = None) -> None:
        key = collection_and_key(lab, tmp_path, "deployer")
        self.name = module
        self.path = os.path.join(REPO, "plugins", "modules", "%s.py" % module)
        self.defaults = dict(defaults or {})
        self.tmp = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GCP_", "GCE_", "ANSIBLE_"))}
        self.env.update(PYTHONPATH=str(tmp_path / "collections"), GCP_SERVICE_ACCOUNT_FILE=str(key),
                        GCP_PROJECT=PROJECT, KUBEHA_GCE_API_ENDPOINT=lab.endpoint)
        self.count = 0

    def start(self, args: dict[str, t.Any], check: bool = False, diff: bool = True) -> subprocess.Popen:
        """The module's process, started (in a session of its own, so a test can kill it)."""
        self.count += 1
        path = self.tmp / ("args%d.json" % self.count)
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(self.defaults, **args, _ansible_check_mode=check,
                                                                _ansible_diff=diff)}))
        return subprocess.Popen([sys.executable, self.path, str(path)], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def __call__(self, args: dict[str, t.Any], check: bool = False, diff: bool = True) -> dict[str, t.Any]:
        process = self.start(args, check, diff)
        out, err = process.communicate(timeout=300)
        try:
            return json.loads(out)
        except ValueError:
            raise AssertionError("%s printed no result: %s\n%s" % (self.name, out[-2000:], err[-2000:])) from None


def pytest_configure(config: t.Any) -> None:  # pylint: disable=unused-argument
    """SIGINT interrupts the run (and so runs the fixtures' teardown, which takes labs down) even when the shell that
    started it ignored SIGINT, as a shell does for what it starts in the background (scripts/test.sh's beside stages)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionfinish(session: t.Any, exitstatus: int) -> None:
    """With KUBEHA_NO_SKIPS=1 (make test sets it), a skipped test fails the run: a stage whose real-machine tests
    were skipped (run without root, say) has not tested what it says it has."""
    if os.environ.get("KUBEHA_NO_SKIPS") != "1" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line("KUBEHA_NO_SKIPS=1: %d test(s) were skipped, which fails the stage:" % len(skipped), red=True)
        for report in skipped:
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
            reporter.write_line("  %s: %s" % (report.nodeid, reason))
        session.exitstatus = 1
