# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The metadata server at 169.254.169.254, as Compute Engine documents it.

It answers under ``/computeMetadata/v1/`` only with the header
``Metadata-Flavor: Google``, tells instances apart by their source address,
and supports ``?recursive=true``, ``?alt=json|text`` and
``?wait_for_change=true&timeout_sec=N`` with ETags.
"""

from __future__ import annotations

import hashlib
import json
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from kubeha_lab.sim import auth
from kubeha_lab.sim.state import short

if t.TYPE_CHECKING:
    from kubeha_lab.sim.server import Simulator

PROJECT_NUMBER = "123456789012"


def tree(sim: "Simulator", instance: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The whole metadata tree of one instance."""
    nic = (instance.get("networkInterfaces") or [{}])[0]
    attributes = {i["key"]: i.get("value", "") for i in (instance.get("metadata") or {}).get("items") or []}
    accounts: dict[str, t.Any] = {}
    for account in instance.get("serviceAccounts") or []:
        entry = {"aliases": ["default"], "email": account["email"], "scopes": account.get("scopes") or []}
        accounts[account["email"]] = entry
        accounts["default"] = entry
    return {
        "instance": {
            "attributes": attributes,
            "hostname": "%s.%s.c.%s.internal" % (instance["name"], short(instance.get("zone")), sim.state.project),
            "id": int(instance["id"]),
            "name": instance["name"],
            "zone": "projects/%s/zones/%s" % (PROJECT_NUMBER, short(instance.get("zone"))),
            "machine-type": "projects/%s/machineTypes/%s" % (PROJECT_NUMBER, short(instance.get("machineType"))),
            "tags": (instance.get("tags") or {}).get("items") or [],
            "network-interfaces": [{
                "ip": nic.get("networkIP"), "network": "projects/%s/networks/default" % PROJECT_NUMBER,
                "gateway": sim_gateway(nic.get("networkIP")), "subnetmask": "255.255.240.0",
                "access-configs": [{"external-ip": c.get("natIP", ""), "type": "ONE_TO_ONE_NAT"}
                                   for c in nic.get("accessConfigs") or []],
            }],
            "service-accounts": accounts,
            "disks": [{"device-name": d.get("deviceName"), "index": d.get("index"), "mode": d.get("mode"),
                       "type": "PERSISTENT"} for d in instance.get("disks") or []],
        },
        "project": {"project-id": sim.state.project, "numeric-project-id": int(PROJECT_NUMBER), "attributes": {}},
    }


def sim_gateway(ip: str | None) -> str:
    if not ip:
        return ""
    parts = ip.split(".")
    return "%s.%s.%s.1" % (parts[0], parts[1], int(parts[2]) & 0xF0)


def lookup(node: t.Any, path: list[str]) -> t.Any:
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(part)
    return node


def render(node: t.Any, recursive: bool, alt: str | None) -> tuple[str, str]:
    """(body, content type) the way the metadata server formats a node."""
    if isinstance(node, (dict, list)):
        if recursive or alt == "json":
            return json.dumps(node), "application/json"
        if isinstance(node, list) and (not node or not isinstance(node[0], (dict, list))):
            return "".join("%s\n" % v for v in node), "application/text"
        keys = range(len(node)) if isinstance(node, list) else node.keys()
        values = node if isinstance(node, list) else list(node.values())
        lines = ["%s%s" % (k, "/" if isinstance(v, (dict, list)) else "") for k, v in zip(keys, values)]
        return "\n".join(lines) + "\n", "application/text"
    if alt == "json":
        return json.dumps(node), "application/json"
    return str(node), "application/text"


class MetadataHandler(BaseHTTPRequestHandler):
    server: "MetadataServer"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms stall per request of a kept connection (see sim/server.py)

    def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
        """Quiet."""

    def _send(self, status: int, body: str, content_type: str = "application/text", etag: str | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", content_type)
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # pylint: disable=invalid-name
        sim = self.server.sim
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if self.headers.get("Metadata-Flavor") != "Google" or self.headers.get("X-Forwarded-For"):
            self._send(403, "Missing required header: Metadata-Flavor\n")
            return
        if not url.path.startswith("/computeMetadata/v1/"):
            self._send(404, "Not found\n")
            return
        path = [p for p in url.path[len("/computeMetadata/v1/"):].split("/") if p]
        source = self.server.aliases.get(self.client_address[0], self.client_address[0])
        wait = query.get("wait_for_change") == "true"
        deadline = time.monotonic() + min(float(query.get("timeout_sec", 3600)), 3600)
        last = query.get("last_etag")
        while True:
            with sim.state.lock:
                instance = next((r for p, r in sim.state.resources.items() if "/instances/" in p
                                 and (r.get("networkInterfaces") or [{}])[0].get("networkIP") == source), None)
                if instance is None:
                    self._send(404, "No instance has the address %s\n" % source)
                    return
                if path[:4] == ["instance", "service-accounts", "default", "token"]:
                    self._send(200, json.dumps(self._token(instance)), "application/json")
                    return
                try:
                    node = lookup(tree(sim, instance), path)
                except KeyError:
                    self._send(404, "Not found\n")
                    return
                body, content_type = render(node, query.get("recursive") == "true", query.get("alt"))
                etag = hashlib.sha256(body.encode()).hexdigest()[:16]
                remaining = deadline - time.monotonic()
                if last is None:
                    # Without last_etag, wait for a change from what is there now.
                    last = etag
                if not wait or etag != last or remaining <= 0:
                    self._send(200, body, content_type, etag)
                    return
                sim.state.changed.wait(min(remaining, 1.0))

    def _token(self, instance: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        sim = self.server.sim
        token = auth.new_token()
        email = ((instance.get("serviceAccounts") or [{}])[0]).get("email", "")
        sim.state.data["tokens"][token] = {"email": email, "expires": time.time() + auth.TOKEN_LIFETIME}
        sim.state.save()
        return {"access_token": token, "expires_in": auth.TOKEN_LIFETIME, "token_type": "Bearer"}


class MetadataServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sim: "Simulator") -> None:
        super().__init__(address, MetadataHandler)
        self.sim = sim
        # Source address -> instance address, for clients that cannot send from the instance's address.
        self.aliases: dict[str, str] = {}
