# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run inside the lab (tests/lab/lab exec -- python ...): a target-pool load balancer over two machines.

Prints a JSON report of what a client saw: which backends answered through the
forwarding rule, before and after one backend's machine crashed, and what
getHealth said. The lab's tests assert on it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from kubeha_lab.apiclient import client, done  # noqa: E402  pylint: disable=wrong-import-position
from kubeha_lab.availability import Poller  # noqa: E402  pylint: disable=wrong-import-position

PROJECT = os.environ["GCP_PROJECT"]
REGION = "europe-west1"
SERVER = r"""#!/bin/sh
cat > /usr/local/bin/answer-hostname <<'PY'
import http.server, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = socket.gethostname().encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 drops SYNs while the machine is busy
S(("0.0.0.0", 8080), H).serve_forever()
PY
nohup python3 /usr/local/bin/answer-hostname >/dev/null 2>&1 &
"""


def ask(ip, port=8080):
    """One new connection through the load balancer; the backend's hostname or None."""
    try:
        with socket.create_connection((ip, port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1].decode()
    except OSError:
        return None


def spread(ip, count=40):
    seen = {}
    for _attempt in range(count):
        answer = ask(ip) or "no answer"
        seen[answer] = seen.get(answer, 0) + 1
    return seen


def health(compute, names):
    states = {}
    for name, zone in names:
        answer = compute.targetPools().getHealth(project=PROJECT, region=REGION, targetPool="web", body={
            "instance": "zones/%s/instances/%s" % (zone, name)}).execute()
        states[name] = answer["healthStatus"][0]["healthState"]
    return states


def main() -> int:
    compute = client()
    members = [("web-b", "europe-west1-b"), ("web-c", "europe-west1-c")]
    done(compute, compute.firewalls().insert(project=PROJECT, body={
        "name": "web-8080", "allowed": [{"IPProtocol": "tcp", "ports": ["8080"]}],
        "sourceRanges": ["0.0.0.0/0"], "targetTags": ["web"]}).execute())
    for name, zone in members:
        done(compute, compute.instances().insert(project=PROJECT, zone=zone, body={
            "name": name, "machineType": "zones/%s/machineTypes/e2-small" % zone, "tags": {"items": ["web"]},
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"network": "global/networks/default"}],
            "metadata": {"items": [{"key": "startup-script", "value": SERVER}]}}).execute())
    done(compute, compute.httpHealthChecks().insert(project=PROJECT, body={
        "name": "web-hc", "port": 8080, "requestPath": "/", "checkIntervalSec": 1, "timeoutSec": 1,
        "healthyThreshold": 1, "unhealthyThreshold": 2}).execute())
    done(compute, compute.targetPools().insert(project=PROJECT, region=REGION, body={
        "name": "web", "healthChecks": ["global/httpHealthChecks/web-hc"],
        "instances": ["zones/%s/instances/%s" % (zone, name) for name, zone in members]}).execute())
    done(compute, compute.forwardingRules().insert(project=PROJECT, region=REGION, body={
        "name": "web", "IPProtocol": "TCP", "portRange": "8080", "target": "regions/%s/targetPools/web" % REGION}).execute())
    ip = compute.forwardingRules().get(project=PROJECT, region=REGION, forwardingRule="web").execute()["IPAddress"]

    report = {"ip": ip}
    deadline = time.monotonic() + 90
    while health(compute, members) != {"web-b": "HEALTHY", "web-c": "HEALTHY"} and time.monotonic() < deadline:
        time.sleep(1)
    report["health_before"] = health(compute, members)
    report["before"] = spread(ip)

    # A client keeps connecting through the forwarding rule while one member crashes.
    poller = Poller(ip, 8080, interval=0.05, request=b"GET / HTTP/1.0\r\n\r\n")
    poller.start()
    time.sleep(1)
    crashed = time.monotonic()
    crash = urllib.request.Request("http://127.0.0.1:8089/_lab/zones/europe-west1-c/instances/web-c/crash", method="POST")
    urllib.request.urlopen(crash, timeout=30).close()  # nosec - the lab's control API on loopback
    while health(compute, members).get("web-c") != "UNHEALTHY" and time.monotonic() < crashed + 30:
        time.sleep(0.5)
    report["seconds_until_unhealthy"] = round(time.monotonic() - crashed, 1)
    time.sleep(1)
    report["health_after"] = health(compute, members)
    report["after"] = spread(ip)
    poller.stop()
    report["during_crash"] = {"attempts": len(poller.attempts),
                              "failed": sum(1 for a in poller.attempts if not a.ok),
                              "failed_after_unhealthy": sum(1 for a in poller.attempts if not a.ok
                                                            and a.at > crashed + report["seconds_until_unhealthy"] + 1),
                              "longest_window_s": round(poller.longest_window(), 3),
                              "failures": [(round(a.at - crashed, 2), a.answer) for a in poller.attempts if not a.ok]}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
