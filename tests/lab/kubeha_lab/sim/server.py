# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The simulator's HTTP server: the Compute API, the token endpoint and the lab's control API.

Paths:
  /compute/v1/...   the Compute Engine API (bearer token required)
  /token            OAuth2 token endpoint (JWT bearer grant with a key the lab issued)
  /_lab/...         control: service-account keys, faults (and hold/release), request log, timing,
                    crash/cut an instance, take a zone down (no token; loopback only)
"""

from __future__ import annotations

import json
import threading
import time
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from kubeha_lab.sim import auth
from kubeha_lab.sim.backend import Backend
from kubeha_lab.sim.compute import Compute
from kubeha_lab.sim.discovery import SERVICE_PATH, Discovery
from kubeha_lab.sim.errors import ApiError
from kubeha_lab.sim.faults import Faults
from kubeha_lab.sim.operations import Operations, Timing
from kubeha_lab.sim.state import State

DEFAULT_PROJECT = "kubeha-lab"


class Simulator:
    """Everything behind the HTTP server; usable without it in tests."""

    def __init__(self, state_path: str | None, project: str = DEFAULT_PROJECT, backend: Backend | None = None,
                 timing: Timing | None = None, discovery: Discovery | None = None, network_mode: str = "default") -> None:
        self.state = State(state_path, project)
        self.network_mode = network_mode
        self.discovery = discovery or Discovery()
        self.faults = Faults()
        self.timing = timing or Timing()
        self.backend = backend or Backend()
        self.compute = Compute(self.state, self.backend, lambda state, apply: Operations(
            state, self.timing, apply, self.faults.operation_failure))
        self.token_uri = ""

    def start(self) -> None:
        """Finish operations a previous run accepted, and bring the backend in line with the state."""
        self.compute.seed(self.network_mode)
        self.backend.network_changed(self.compute.network_view())
        self.backend.start(self.compute.network_view)
        self.backend.reconcile(self.compute.instances_with_disks())
        self.compute.ops.resume()

    # -- auth ------------------------------------------------------------------------------------
    def create_key(self, account: str) -> dict[str, t.Any]:
        key, record = auth.new_key(self.state.project, account, self.token_uri)
        with self.state.lock:
            self.state.data["accounts"][record["key_id"]] = record
            self.state.save()
        return key

    def exchange(self, form: dict[str, list[str]]) -> dict[str, t.Any]:
        if form.get("grant_type", [""])[0] != auth.JWT_BEARER:
            raise auth.TokenError("unsupported_grant_type", "Invalid grant_type: %s" % form.get("grant_type", [""])[0])
        with self.state.lock:
            keys = dict(self.state.data["accounts"])
        claims = auth.verify_assertion(form.get("assertion", [""])[0], keys, self.token_uri)
        token = auth.new_token()
        with self.state.lock:
            now = time.time()
            tokens = self.state.data["tokens"]
            for old in [k for k, v in tokens.items() if v["expires"] < now]:
                tokens.pop(old)
            tokens[token] = {"email": claims["iss"], "expires": now + auth.TOKEN_LIFETIME}
            self.state.save()
        return {"access_token": token, "expires_in": auth.TOKEN_LIFETIME, "token_type": "Bearer"}

    def user_of(self, header: str | None) -> str:
        if not header or not header.startswith("Bearer "):
            raise ApiError(401, "required", "Request is missing required authentication credential. Expected OAuth 2 "
                                            "access token, login cookie or other valid authentication credential.")
        token = header[len("Bearer "):]
        if auth.looks_like_jwt(token):
            # A self-signed JWT, as Google's client libraries send it for a service account: no token exchange.
            with self.state.lock:
                keys = dict(self.state.data["accounts"])
            audiences = (auth.COMPUTE_AUDIENCE, self.token_uri.rsplit("/", 1)[0] + "/")
            try:
                return str(auth.verify_self_signed(token, keys, audiences)["iss"])
            except auth.TokenError as exc:
                raise ApiError(401, "authError", "Request had invalid authentication credentials: %s" % exc.description) \
                    from None
        with self.state.lock:
            record = self.state.data["tokens"].get(token)
        if record is None or record["expires"] < time.time():
            raise ApiError(401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 access "
                                             "token, login cookie or other valid authentication credential.")
        return record["email"]

    # -- control -----------------------------------------------------------------------------------
    def instance(self, zone: str, name: str) -> dict[str, t.Any]:
        with self.state.lock:
            return self.state.require("zones/%s/instances/%s" % (zone, name))

    def crash(self, zone: str, name: str) -> None:
        self.backend.crash(self.instance(zone, name))

    def cut(self, zone: str, name: str, cut: bool) -> None:
        self.backend.set_cut(self.instance(zone, name), cut)

    def zone_down(self, zone: str, down: bool) -> None:
        with self.state.lock:
            zones = self.state.data["zones_down"]
            if down and zone not in zones:
                zones.append(zone)
            if not down and zone in zones:
                zones.remove(zone)
            instances = [dict(r) for p, r in self.state.resources.items() if p.startswith("zones/%s/instances/" % zone)]
            self.state.save()
        for instance in instances:
            if down:
                self.backend.crash(instance)
            self.backend.set_cut(instance, down)
        if not down:
            # As GCE restarts the VMs of a zone that comes back: RUNNING instances boot again, from their disks.
            prefix = self.state.link("zones/%s/instances/" % zone)
            self.backend.reconcile([pair for pair in self.compute.instances_with_disks()
                                    if pair[0].get("selfLink", "").startswith(prefix)])

    def close(self) -> None:
        self.compute.ops.stop()
        self.backend.close()


class Handler(BaseHTTPRequestHandler):
    server: "LabServer"
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: with Nagle on, the body waits for the ACK the client delays (40 ms on Linux)
    # on every request of a kept connection. Google's front ends answer without that stall.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: t.Any) -> None:  # pylint: disable=redefined-builtin
        """Requests go to the request log, not to stderr."""

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: t.Any, content_type: str = "application/json; charset=UTF-8") -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # pylint: disable=invalid-name
        self._dispatch("GET")

    def do_POST(self) -> None:  # pylint: disable=invalid-name
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # pylint: disable=invalid-name
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # pylint: disable=invalid-name
        self._dispatch("PATCH")

    def do_PUT(self) -> None:  # pylint: disable=invalid-name
        self._dispatch("PUT")

    def _dispatch(self, http: str) -> None:
        sim = self.server.sim
        url = urlsplit(self.path)
        body = self._body()
        started = time.monotonic()
        method_id = url.path

        def answer(status: int, payload: t.Any) -> None:
            # Logged before it is sent: a client that reads the log right after its answer finds its call there.
            if not method_id.startswith("lab:"):
                sim.faults.record({"time": time.time(), "method": method_id, "http": http, "path": url.path,
                                   "status": status, "latency_ms": round((time.monotonic() - started) * 1000, 2)})
            self._send(status, payload)

        try:
            if url.path.startswith("/" + SERVICE_PATH):
                route = sim.discovery.route(http, url.path[len(SERVICE_PATH) + 1:], parse_qs(url.query), body)
                method_id = route.method.id
                user = sim.user_of(self.headers.get("Authorization"))
                sim.faults.before_call(method_id)
                result = sim.compute.handle(route, user)
                sim.faults.after_call(method_id)
                try:
                    answer(200, result)
                except OSError:
                    pass  # the client is gone (a test killed it while its answer was held)
            elif url.path == "/token" and http == "POST":
                method_id = "token"
                try:
                    result = sim.exchange(parse_qs(body.decode()))
                except auth.TokenError as exc:
                    answer(400, {"error": exc.error, "error_description": exc.description})
                else:
                    answer(200, result)
            elif url.path.startswith("/_lab/"):
                method_id = "lab:%s %s" % (http, url.path)
                answer(*self._control(http, url.path[len("/_lab/"):], body))
            else:
                raise ApiError(404, "notFound", "The requested URL %s was not found on this server." % url.path)
        except ApiError as exc:
            answer(exc.status, exc.body())
        except Exception as exc:  # pylint: disable=broad-exception-caught
            answer(500, ApiError(500, "backendError", "Internal error in the lab: %s: %s"
                                 % (type(exc).__name__, exc)).body())
            raise

    def _control(self, http: str, path: str, body: bytes) -> tuple[int, t.Any]:
        sim = self.server.sim
        data = json.loads(body) if body else {}
        parts = path.strip("/").split("/")
        if parts == ["health"]:
            return 200, {"ok": True, "project": sim.state.project}
        if parts == ["service-accounts"] and http == "POST":
            return 200, sim.create_key(data.get("name", "deployer"))
        if parts == ["requests"]:
            if http == "DELETE":
                sim.faults.clear_log()
                return 200, {}
            return 200, {"requests": sim.faults.requests()}
        if parts == ["faults"]:
            if http in ("PUT", "POST"):
                try:
                    sim.faults.set(data)
                except ValueError as exc:
                    return 400, {"error": str(exc)}
            elif http == "DELETE":
                sim.faults.set({})
            return 200, sim.faults.config
        if parts == ["release"] and http == "POST":
            return 200, sim.faults.release()
        if parts == ["hold"]:
            return 200, sim.faults.status()
        if parts == ["timing"]:
            if http in ("PUT", "POST"):
                for key in ("pending", "running", "wait_limit"):
                    if key in data:
                        setattr(sim.timing, key, float(data[key]))
            return 200, {k: getattr(sim.timing, k) for k in ("pending", "running", "wait_limit")}
        if parts == ["network"]:
            return 200, sim.compute.network_view()
        if parts == ["resources"]:
            # Every stored resource by path, without what changes by itself (fingerprints do not:
            # they change only with the resource). For "nothing changed" checks.
            with sim.state.lock:
                return 200, {"resources": json.loads(json.dumps(sim.state.resources))}
        if len(parts) == 5 and parts[0] == "zones" and parts[2] == "instances" and http == "POST":
            zone, name, action = parts[1], parts[3], parts[4]
            if action == "crash":
                sim.crash(zone, name)
            elif action in ("cut", "restore"):
                sim.cut(zone, name, action == "cut")
            else:
                return 404, {"error": "unknown action %s" % action}
            return 200, {}
        if len(parts) == 3 and parts[0] == "zones" and parts[2] in ("down", "up") and http == "POST":
            sim.zone_down(parts[1], parts[2] == "down")
            return 200, {}
        return 404, {"error": "unknown control path /_lab/%s" % path}


class LabServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # GCE does not drop a client's SYN because its accept loop is busy

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        super().__init__(address, Handler)
        self.sim = sim
        host, port = self.server_address[:2]
        sim.token_uri = "http://%s:%d/token" % (host, port)


def serve(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> tuple[LabServer, threading.Thread]:
    """Start serving in a thread; returns the server (``server.server_address``) and the thread."""
    server = LabServer((host, port), sim)
    sim.start()
    thread = threading.Thread(target=server.serve_forever, name="lab-api", daemon=True)
    thread.start()
    return server, thread


__all__ = ["Simulator", "serve", "LabServer"]
