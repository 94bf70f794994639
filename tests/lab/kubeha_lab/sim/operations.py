# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Operations: PENDING -> RUNNING -> DONE over time, with their effect applied before DONE.

Every mutating call validates at once (errors are HTTP answers), records what is
to be done in the state as a named step with JSON arguments, and returns the
operation. A runner thread per operation moves it along and applies the step,
so a simulator restarted in the middle finishes what it had accepted.
"""

from __future__ import annotations

import secrets
import threading
import time
import typing as t

from kubeha_lab.sim.errors import ApiError
from kubeha_lab.sim.state import State, now_rfc3339


class Timing:
    """How long operations take (seconds); changed through the control API."""

    def __init__(self, pending: float = 0.05, running: float = 0.2, wait_limit: float = 120.0) -> None:
        self.pending = pending
        self.running = running
        self.wait_limit = wait_limit


class Operations:
    def __init__(self, state: State, timing: Timing,
                 apply: t.Callable[[dict[str, t.Any], dict[str, t.Any]], None],
                 injected_failure: t.Callable[[str], tuple[str, str] | None],
                 rollback: t.Callable[[dict[str, t.Any]], None] | None = None) -> None:
        self.state = state
        self.timing = timing
        self.apply = apply  # apply(operation, step) -> may raise ApiError
        self.injected_failure = injected_failure
        self.rollback = rollback  # undo what a failed step had made visible
        self.threads: list[threading.Thread] = []
        # Set when this simulator stops: its operations are left as they are, for the next one to finish (resume),
        # as they are when its process is killed.
        self.stopped = threading.Event()

    def stop(self) -> None:
        """Leave every operation where it is; nothing of this simulator changes the state file from now on (a step
        being applied goes on in memory only)."""
        self.stopped.set()
        with self.state.lock:
            self.state.closed = True

    def start(self, scope: str, op_type: str, target: str, target_id: str, user: str, method: str,
              step: dict[str, t.Any]) -> dict[str, t.Any]:
        """Create an operation (caller holds the lock) and start running it."""
        state = self.state
        name = "operation-%d-%s" % (int(time.time() * 1000), secrets.token_hex(8))
        path = "%s/operations/%s" % (scope, name)
        op: dict[str, t.Any] = {
            "kind": "compute#operation", "id": state.new_id(), "name": name, "operationType": op_type,
            "targetLink": state.link(target), "targetId": target_id, "status": "PENDING", "user": user,
            "progress": 0, "insertTime": now_rfc3339(), "selfLink": state.link(path),
        }
        if scope != "global":
            op[scope.split("/")[0][:-1]] = state.link(scope)
        state.operations[path] = op
        state.data.setdefault("steps", {})[path] = dict(step, method=method)
        state.save()
        self._spawn(path)
        return dict(op)

    def resume(self) -> None:
        """Finish the operations a previous run of the simulator had accepted."""
        with self.state.lock:
            pending = [p for p, op in self.state.operations.items() if op["status"] != "DONE"]
        for path in pending:
            self._spawn(path)

    def _spawn(self, path: str) -> None:
        thread = threading.Thread(target=self._run, args=(path,), name="op-%s" % path.rsplit("/", 1)[-1], daemon=True)
        self.threads = [th for th in self.threads if th.is_alive()] + [thread]
        thread.start()

    def _run(self, path: str) -> None:
        state = self.state
        time.sleep(self.timing.pending)
        with state.lock:
            if self.stopped.is_set():
                return
            op = state.operations[path]
            if op["status"] == "PENDING":
                op.update(status="RUNNING", startTime=now_rfc3339(), progress=0)
                state.save()
            step = state.data.get("steps", {}).get(path, {})
        started = time.monotonic()
        error: ApiError | None = None
        failure = self.injected_failure(step.get("method", ""))
        if self.stopped.is_set():
            return
        if failure:
            error = ApiError(400, failure[0], failure[1])
        else:
            try:
                self.apply(op, step)
            except ApiError as exc:
                error = exc
        if error is not None and self.rollback is not None:
            self.rollback(step)
        remaining = self.timing.running - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        with state.lock:
            if self.stopped.is_set():
                return
            op.update(status="DONE", progress=100, endTime=now_rfc3339())
            if error is not None:
                code = error.reason.upper() if error.reason.upper() == error.reason else _code(error.reason)
                op["error"] = {"errors": [{"code": code, "message": error.message}]}
                op["httpErrorStatusCode"] = error.status
                op["httpErrorMessage"] = {400: "BAD REQUEST", 404: "NOT FOUND", 409: "CONFLICT",
                                          412: "PRECONDITION FAILED"}.get(error.status, "ERROR")
            state.data.get("steps", {}).pop(path, None)
            state.save()

    def wait(self, path: str, timeout: float | None = None) -> dict[str, t.Any]:
        """Block until the operation is DONE or about two minutes have passed, as GCE's wait does."""
        limit = self.timing.wait_limit if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self.state.lock:
            while True:
                op = self.state.operations.get(path)
                if op is None:
                    raise ApiError(404, "notFound", "The resource '%s' was not found" % self.state.full(path))
                remaining = deadline - time.monotonic()
                if op["status"] == "DONE" or remaining <= 0:
                    return dict(op)
                self.state.changed.wait(min(remaining, 1.0))


def _code(reason: str) -> str:
    """camelCase reason -> GCE's operation error code (resourceInUseByAnotherResource -> RESOURCE_IN_USE_BY_ANOTHER_RESOURCE)."""
    out = []
    for char in reason:
        if char.isupper() and out:
            out.append("_")
        out.append(char.upper())
    return "".join(out)
