# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Measure how long an address answered nothing: a client that keeps opening connections.

Used inside the lab (``tests/lab/lab exec -- ...``) while the load balancer or
the replicas change: every ``interval`` it opens a new TCP connection
(optionally a TLS handshake, without verifying the certificate, since it
measures reachability, not trust), reads what the server says first, and
records when it got an answer and from whom. A window is a stretch of time in
which every attempt failed, from the last success before it to the first
success after it.

Attempts start on a fixed schedule and run side by side, each with its own
``timeout``: a slow or failing attempt does not delay the next one, so the
resolution of a window is ``interval`` whatever the timeout. That lets the
timeout be generous (seconds): an attempt fails because nothing answered it —
a refusal, a reset, a connection routed where nothing listens — and not
because a loaded host took a few hundred milliseconds longer for a handshake.
Each attempt also records how long it took, for the report.

Every attempt connects from a local port of its own, never used before by
this process (ports 10000-19999, below the kernel's ephemeral range, in turn).
Where the client runs on the machine that does the load balancer's NAT (the
lab namespace), a connection that never completed leaves a conntrack entry for
two minutes; a later connection that the kernel happened to give the same
source port would follow that entry's old NAT (to a member that has since
gone, or to no member at all) instead of being balanced anew, and time out.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import typing as t


class Attempt(t.NamedTuple):
    at: float  # monotonic seconds, when the attempt started
    ok: bool
    answer: str  # what the server said (for example a backend's hostname), or the error
    took: float = 0.0  # seconds until the answer or the error


_PORTS = iter(())
_PORTS_LOCK = threading.Lock()


def _bound_socket(timeout: float) -> socket.socket:
    """A TCP socket bound to the next local port of 10000-19999 that is free (see the module's docstring)."""
    global _PORTS  # pylint: disable=global-statement
    for _attempt in range(1000):
        with _PORTS_LOCK:
            port = next(_PORTS, None)
            if port is None:
                _PORTS = iter(range(10000, 20000))
                port = next(_PORTS)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("", port))
        except OSError:
            sock.close()
            continue
        sock.settimeout(timeout)
        return sock
    raise OSError("no free local port between 10000 and 19999")


class Poller:
    def __init__(self, host: str, port: int, interval: float = 0.05, timeout: float = 3.0, tls: bool = False,
                 request: bytes = b"") -> None:
        self.host = host
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.tls = tls
        self.request = request
        # One context for every attempt (each still makes a full handshake on a new connection): a context of its
        # own per attempt would load the system's CA store each time, which costs more than the handshake.
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE
        # Servers that close without a TLS close_notify (Python's socketserver) end the answer there.
        self._context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        self._done: list[Attempt] = []
        self._lock = threading.Lock()
        self._running: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller-%s:%d" % (host, port), daemon=True)

    @property
    def attempts(self) -> list[Attempt]:
        """Every finished attempt, in the order they started."""
        with self._lock:
            return sorted(self._done)

    def __enter__(self) -> "Poller":
        self.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Start no more attempts and wait for those under way (each ends by its timeout)."""
        self._stop.set()
        self._thread.join(timeout=self.timeout + self.interval + 10)

    def once(self) -> Attempt:
        """One attempt; connecting, the handshake and the answer together take at most ``timeout``."""
        started = time.monotonic()

        def left() -> float:
            remaining = started + self.timeout - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out: no answer within %.1fs" % self.timeout)
            return remaining

        try:
            with _bound_socket(self.timeout) as raw:
                raw.connect((self.host, self.port))
                conn: t.Any = raw
                if self.tls:
                    raw.settimeout(left())
                    conn = self._context.wrap_socket(raw, server_hostname=self.host)
                if self.request:
                    conn.settimeout(left())
                    conn.sendall(self.request)
                # The whole answer, up to 4 kB: a TLS server may send the headers and the body in separate records.
                data = b""
                while len(data) < 4096:
                    conn.settimeout(left())
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            took = time.monotonic() - started
            if not data:
                return Attempt(started, False, "closed without an answer", took)
            text = data.decode(errors="replace")
            return Attempt(started, True, text.split("\r\n\r\n", 1)[-1].strip()[:64], took)
        except (OSError, ssl.SSLError) as exc:
            return Attempt(started, False, "%s: %s" % (type(exc).__name__, exc), time.monotonic() - started)

    def _record(self) -> None:
        attempt = self.once()
        with self._lock:
            self._done.append(attempt)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            worker = threading.Thread(target=self._record, name="attempt", daemon=True)
            worker.start()
            self._running = [w for w in self._running if w.is_alive()] + [worker]
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        deadline = time.monotonic() + self.timeout + 5
        for worker in self._running:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- what was seen -------------------------------------------------------------------------------
    def windows(self) -> list[tuple[float, float]]:
        """(start, duration) of every stretch without an answer, from the last answer before it to the first after."""
        found = []
        last_ok: float | None = None
        failing = False
        attempts = self.attempts
        for attempt in attempts:
            if attempt.ok:
                if failing and last_ok is not None:
                    found.append((last_ok, attempt.at - last_ok))
                failing = False
                last_ok = attempt.at
            else:
                failing = True
        if failing and last_ok is not None:
            found.append((last_ok, attempts[-1].at - last_ok))
        return found

    def longest_window(self) -> float:
        """The longest time without an answer, in seconds (0 when every attempt was answered)."""
        return max((duration for _start, duration in self.windows()), default=0.0)

    def served_by(self, since: float = 0.0) -> dict[str, int]:
        """How many answers each server gave (by what it said first), from ``since`` on."""
        counts: dict[str, int] = {}
        for attempt in self.attempts:
            if attempt.ok and attempt.at >= since:
                counts[attempt.answer] = counts.get(attempt.answer, 0) + 1
        return counts

    def failed(self, since: float = 0.0, until: float = float("inf")) -> list[Attempt]:
        """The failed attempts that started between ``since`` and ``until``."""
        return [a for a in self.attempts if not a.ok and since <= a.at < until]

    def report(self) -> dict[str, t.Any]:
        attempts = self.attempts
        return {"attempts": len(attempts), "failed": len(self.failed()),
                "longest_window_s": round(self.longest_window(), 3), "windows": len(self.windows()),
                "slowest_answer_s": round(max((a.took for a in attempts if a.ok), default=0.0), 3),
                "served_by": self.served_by()}
