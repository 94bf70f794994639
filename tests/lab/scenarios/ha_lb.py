# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run inside the lab (tests/lab/lab exec -- python ...): kubeha.gce.ha_lb on real machines, measured.

Two replicas of cluster ``k`` each run a small TLS server on 443 (and plain
HTTP on 8080 for a target pool's legacy check) that answers with the replica's
name. For each backend kind the reserved address goes single -> balanced ->
a member added -> that member crashed -> restarted -> removed -> single, while
a client opens a new TLS connection to the reserved address every 50 ms. For
each step it prints the API calls, the wall time, and the longest time in
which the reserved address answered nothing, as one JSON report.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cryptography import x509  # noqa: E402  pylint: disable=wrong-import-position
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402  pylint: disable=wrong-import-position
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402  pylint: disable=wrong-import-position
from cryptography.x509.oid import NameOID  # noqa: E402  pylint: disable=wrong-import-position

from kubeha_lab.apiclient import client, done  # noqa: E402  pylint: disable=wrong-import-position
from kubeha_lab.availability import Poller  # noqa: E402  pylint: disable=wrong-import-position
from kubeha_lab.sim.faults import is_mutating  # noqa: E402  pylint: disable=wrong-import-position

PROJECT = os.environ["GCP_PROJECT"]
CONTROL = "http://127.0.0.1:8089/_lab/"
REGION = "europe-west1"
LABELS = {"kubeha-cluster": "k", "kubeha-role": "master"}
R1, R2 = "k-master", "k-master-c"
ZONES = {R1: "europe-west1-b", R2: "europe-west1-c"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MODULE = os.path.join(REPO, "plugins", "modules", "ha_lb.py")
CHECK = {"check_interval_sec": 1, "timeout_sec": 1, "healthy_threshold": 2, "unhealthy_threshold": 2}
POLL_TIMEOUT = 3.0

SERVER = r"""#!/bin/sh
mkdir -p /etc/lb-test
cat > /etc/lb-test/tls.pem <<'PEM'
@PEM@
PEM
chmod 600 /etc/lb-test/tls.pem
cat > /usr/local/bin/lb-test-server <<'PY'
# A test stand-in for kube-apiserver's port: answers every request with this replica's name.
import socketserver, ssl, threading
NAME = b"@NAME@"
class Answer(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(NAME), NAME))
        except (OSError, ssl.SSLError):
            pass
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # socketserver's 5 drops SYNs while a busy, just booted machine falls behind
def serve(port, tls):
    server = Server(("0.0.0.0", port), Answer)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain("/etc/lb-test/tls.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.serve_forever()
threading.Thread(target=serve, args=(8080, False), daemon=True).start()
serve(443, True)
PY
nohup python3 /usr/local/bin/lb-test-server >/dev/null 2>&1 &
"""


def self_signed_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lb-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())).decode().strip()


def control(method: str, path: str) -> t.Any:
    request = urllib.request.Request(CONTROL + path, method=method)
    with urllib.request.urlopen(request, timeout=30) as answer:  # nosec - the lab's control API on loopback
        return json.loads(answer.read() or b"{}")


def ha_lb(args: dict[str, t.Any]) -> dict[str, t.Any]:
    """One run of the module, as its own process (as Ansible runs it)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    try:
        collections = os.environ["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)[0]
        env = dict(os.environ, PYTHONPATH=collections)
        out = subprocess.run([sys.executable, MODULE, handle.name], env=env, capture_output=True, text=True,
                             timeout=600, check=False).stdout
    finally:
        os.unlink(handle.name)
    result = json.loads(out)
    if result.get("failed"):
        raise SystemExit("ha_lb failed: %s" % result.get("msg"))
    return result


def lb_args(backend: str, state: str, members: list[str], **extra: t.Any) -> dict[str, t.Any]:
    check = dict(CHECK, port=8080) if backend == "target_pool" else dict(CHECK)
    return dict({"cluster_name": "k", "region": REGION, "backend": backend, "state": state, "members": members,
                 "health_check": check}, **extra)


def step(name: str, ip: str, work: t.Callable[[], t.Any], settle: float = 1.0) -> dict[str, t.Any]:
    """Run ``work`` while a client keeps connecting to the reserved address; what it cost and what was seen."""
    control("DELETE", "requests")
    # Attempts run side by side, so the timeout does not limit how finely a window is measured: a few seconds,
    # so that an attempt fails because nothing answered it, not because a loaded 2-core host was slow.
    poller = Poller(ip, 443, interval=0.05, timeout=POLL_TIMEOUT, tls=True, request=b"GET / HTTP/1.0\r\n\r\n")
    poller.start()
    time.sleep(0.5)
    started = time.monotonic()
    result = work()
    wall = time.monotonic() - started
    ended = time.monotonic()
    time.sleep(settle)
    poller.stop()
    calls = [r["method"] for r in control("GET", "requests")["requests"] if r["method"].startswith("compute.")]
    failed = poller.failed()
    return {"step": name, "wall_s": round(wall, 2), "api_calls": len(calls),
            "mutating_calls": [c.split(".", 1)[1] for c in calls if is_mutating(c)],
            "longest_window_s": round(poller.longest_window(), 3),
            "failed_attempts": len(failed), "attempts": len(poller.attempts),
            "failed_after": len(poller.failed(since=ended)),
            # Seconds from the start of the work to the start of the last failed attempt.
            "last_failure_s": round(failed[-1].at - started, 2) if failed else None,
            "slowest_answer_s": poller.report()["slowest_answer_s"],
            # What each failed attempt met, and when (seconds from the end of the step): a refusal or a
            # reset means a dead member got the connection, a timeout that nothing answered at all.
            "failures": [[round(a.at - ended, 2), a.answer] for a in failed][:20],
            "served_by_after": poller.served_by(since=ended), "actions": (result or {}).get("actions"),
            "health": {m["name"]: m["health"] for m in (result or {}).get("members") or []},
            **{k: v for k, v in (result or {}).items() if k.startswith("seconds_")}}


def wait_health(backend: str, members: list[str], want: dict[str, str], limit: float = 60) -> float:
    """Seconds until the module reports ``want`` for the members (a re-run also proves it changes nothing)."""
    started = time.monotonic()
    while True:
        result = ha_lb(lb_args(backend, "balanced", members))
        health = {m["name"]: m["health"] for m in result["members"]}
        if result["changed"]:
            raise SystemExit("a re-run changed something: %s" % result["actions"])
        if all(health.get(n) == s for n, s in want.items()):
            return round(time.monotonic() - started, 1)
        if time.monotonic() - started > limit:
            raise SystemExit("health stayed %s, wanted %s" % (health, want))
        time.sleep(0.5)


def main() -> int:
    compute = client()
    done(compute, compute.firewalls().insert(project=PROJECT, body={
        "name": "k-master-https", "allowed": [{"IPProtocol": "tcp", "ports": ["443", "8080"]}],
        "sourceRanges": ["0.0.0.0/0"], "targetTags": ["k-master"]}).execute())
    done(compute, compute.addresses().insert(project=PROJECT, region=REGION, body={"name": "k-master-ip"}).execute())
    ip = compute.addresses().get(project=PROJECT, region=REGION, address="k-master-ip").execute()["address"]
    pem = self_signed_pem()
    for name, zone in ZONES.items():
        access = {"name": "External NAT", "type": "ONE_TO_ONE_NAT", **({"natIP": ip} if name == R1 else {})}
        script = SERVER.replace("@PEM@", pem).replace("@NAME@", name)
        done(compute, compute.instances().insert(project=PROJECT, zone=zone, body={
            "name": name, "machineType": "zones/%s/machineTypes/e2-small" % zone, "labels": LABELS,
            "tags": {"items": ["k-master"]},
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"network": "global/networks/default", "accessConfigs": [access]}],
            "metadata": {"items": [{"key": "startup-script", "value": script}]}}).execute())
    probe = Poller(ip, 443, tls=True, request=b"GET / HTTP/1.0\r\n\r\n")
    deadline = time.monotonic() + 60
    while not probe.once().ok:
        if time.monotonic() > deadline:
            raise SystemExit("the first replica never answered on its reserved address")
        time.sleep(0.2)

    report: dict[str, t.Any] = {"address": ip, "health_check": CHECK, "poll_timeout_s": POLL_TIMEOUT, "steps": []}
    for backend in ("backend_service", "target_pool"):
        steps = report["steps"]
        steps.append(dict(step("single -> balanced", ip, lambda: ha_lb(lb_args(backend, "balanced", [R1]))),
                          backend=backend))
        steps.append(dict(step("add a member", ip, lambda: ha_lb(lb_args(backend, "balanced", [R1, R2]))),
                          backend=backend))
        steps[-1]["seconds_until_healthy"] = wait_health(backend, [R1, R2], {R1: "HEALTHY", R2: "HEALTHY"})
        steps.append(dict(step("both members serve", ip, lambda: None, settle=2.0), backend=backend))

        def crash() -> dict[str, t.Any]:
            control("POST", "zones/%s/instances/%s/crash" % (ZONES[R2], R2))
            seconds = wait_health(backend, [R1, R2], {R2: "UNHEALTHY"})
            return {"actions": [], "members": [], "seconds_until_unhealthy": seconds}

        crashed = step("crash a member", ip, crash, settle=2.0)
        steps.append(dict(crashed, backend=backend))

        def restart() -> dict[str, t.Any]:
            done(compute, compute.instances().reset(project=PROJECT, zone=ZONES[R2], instance=R2).execute())
            wait_health(backend, [R1, R2], {R2: "HEALTHY"})
            return {}

        steps.append(dict(step("restart it", ip, restart, settle=2.0), backend=backend))
        steps.append(dict(step("remove a member", ip, lambda: ha_lb(lb_args(backend, "balanced", [R1]))),
                          backend=backend))
        steps.append(dict(step("balanced -> single", ip, lambda: ha_lb(lb_args(backend, "single", [R1]))),
                          backend=backend))
        control("DELETE", "requests")
        again = ha_lb(lb_args(backend, "single", [R1]))
        calls = [r["method"] for r in control("GET", "requests")["requests"] if is_mutating(r["method"])]
        steps.append({"step": "re-run single", "backend": backend, "changed": again["changed"], "mutating_calls": calls,
                      "holder": again["holder"], "resources": again["resources"]})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
