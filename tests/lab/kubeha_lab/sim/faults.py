# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injection and the request log.

Faults are set through the control API as one JSON document::

    {"seed": 7,
     "errors": {"compute.instances.insert": {"rate": 0.3, "status": 503}, "*": {"rate": 0.1, "status": [503, 429]}},
     "rate_limit": {"per_second": 5},
     "fail_operations": {"compute.disks.insert": {"count": 1, "code": "QUOTA_EXCEEDED", "message": "..."}},
     "latency": {"compute.instances.get": 0.5, "*": 0.01},
     "hold": {"mutating_call": 3}}

An error rate answers that share of matching calls with the status (429, 500, 502
or 503, in GCE's shape; with a list of them, one of them at random); the rate limit answers 403 rateLimitExceeded beyond that
many calls in any second, as GCE does per project; a failed operation ends DONE
with the given error; latency delays the answer. ``hold`` carries out the
N-th call that changes something (counted from when the faults were set) and
then holds its answer until ``POST /_lab/release``: a test kills the client
while it waits, as if the client died right after GCE accepted the request.
"""

from __future__ import annotations

import collections
import random
import threading
import time
import typing as t

from kubeha_lab.sim.errors import ApiError

REASONS = {429: "rateLimitExceeded", 500: "backendError", 502: "badGateway", 503: "backendError"}
MESSAGES = {429: "Rate Limit Exceeded", 500: "Internal error. Please try again or contact Google Support.",
            502: "Bad Gateway", 503: "The service is currently unavailable."}
LOG_LIMIT = 100000
#: Methods that only read; every other compute method changes something.
READ_METHODS = ("get", "list", "aggregatedList", "wait", "getFromFamily", "getHealth", "listInstances")
HOLD_LIMIT = 120.0


def is_mutating(method: str) -> bool:
    return method.startswith("compute.") and method.rsplit(".", 1)[-1] not in READ_METHODS


class Faults:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: dict[str, t.Any] = {}
        self.random = random.Random()
        self.recent: collections.deque[float] = collections.deque()
        self.log: list[dict[str, t.Any]] = []
        self.mutating_calls = 0
        self.held: str | None = None
        self.release_event = threading.Event()

    def set(self, config: dict[str, t.Any]) -> None:
        for spec in (config.get("errors") or {}).values():
            if not isinstance(spec, dict):
                raise ValueError("each error fault is an object: {\"rate\": 0.3, \"status\": 503}")
            statuses = spec.get("status", 503)
            if not all(s in REASONS for s in (statuses if isinstance(statuses, list) else [statuses])) or statuses == []:
                raise ValueError("error status must be one of %s, or a list of them" % sorted(REASONS))
        with self.lock:
            self.config = config
            self.random = random.Random(config.get("seed"))
            self.recent.clear()
            self.mutating_calls = 0
            self.held = None
            self.release_event.set()
            self.release_event = threading.Event()

    def _for(self, table: str, method: str) -> t.Any:
        entries = self.config.get(table) or {}
        return entries.get(method, entries.get("*"))

    def before_call(self, method: str) -> None:
        """Delay and maybe fail an API call, before it does anything."""
        with self.lock:
            delay = self._for("latency", method) or 0
            error = self._for("errors", method)
            status = None
            if error and self.random.random() < float(error.get("rate", 0)):
                statuses = error.get("status", 503)
                status = int(self.random.choice(statuses) if isinstance(statuses, list) else statuses)
            limit = (self.config.get("rate_limit") or {}).get("per_second")
            limited = False
            if limit:
                now = time.monotonic()
                while self.recent and self.recent[0] < now - 1:
                    self.recent.popleft()
                limited = len(self.recent) >= limit
                if not limited:
                    self.recent.append(now)
        if delay:
            time.sleep(float(delay))
        if limited:
            raise ApiError(403, "rateLimitExceeded", "Rate Limit Exceeded")
        if status:
            raise ApiError(status, REASONS[status], MESSAGES[status])

    def after_call(self, method: str) -> None:
        """The call was carried out; hold its answer if it is the one to hold."""
        if not is_mutating(method):
            return
        with self.lock:
            self.mutating_calls += 1
            nth = (self.config.get("hold") or {}).get("mutating_call")
            if nth != self.mutating_calls:
                return
            self.held = method
            event = self.release_event
        event.wait(HOLD_LIMIT)

    def release(self) -> dict[str, t.Any]:
        with self.lock:
            held = self.held
            self.release_event.set()
        return {"released": held}

    def status(self) -> dict[str, t.Any]:
        with self.lock:
            return {"mutating_calls": self.mutating_calls, "held": self.held}

    def operation_failure(self, method: str) -> tuple[str, str] | None:
        """(code, message) when this operation is to fail."""
        with self.lock:
            spec = self._for("fail_operations", method)
            if not spec or spec.get("count", 1) == 0:
                return None
            if spec.get("count", 1) > 0:
                spec["count"] = spec.get("count", 1) - 1
            return spec.get("code", "INTERNAL_ERROR"), spec.get("message", "Internal error (injected by the lab).")

    def record(self, entry: dict[str, t.Any]) -> None:
        with self.lock:
            self.log.append(entry)
            if len(self.log) > LOG_LIMIT:
                del self.log[: len(self.log) - LOG_LIMIT]

    def requests(self) -> list[dict[str, t.Any]]:
        with self.lock:
            return list(self.log)

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()
