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
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import typing as t


class Attempt(t.NamedTuple):
    at: float  # monotonic seconds
    ok: bool
    answer: str  # what the server said (for example a backend's hostname), or the error


class Poller:
    def __init__(self, host: str, port: int, interval: float = 0.05, timeout: float = 0.5, tls: bool = False,
                 request: bytes = b"") -> None:
        self.host = host
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.tls = tls
        self.request = request
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller-%s:%d" % (host, port), daemon=True)

    def __enter__(self) -> "Poller":
        self.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + self.interval + 5)

    def once(self) -> Attempt:
        started = time.monotonic()
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as raw:
                conn: t.Any = raw
                if self.tls:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    conn = context.wrap_socket(raw, server_hostname=self.host)
                if self.request:
                    conn.sendall(self.request)
                data = conn.recv(256)
            if not data:
                return Attempt(started, False, "closed without an answer")
            text = data.decode(errors="replace")
            return Attempt(started, True, text.split("\r\n\r\n", 1)[-1].strip()[:64])
        except (OSError, ssl.SSLError) as exc:
            return Attempt(started, False, "%s: %s" % (type(exc).__name__, exc))

    def _run(self) -> None:
        while not self._stop.is_set():
            attempt = self.once()
            self.attempts.append(attempt)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - attempt.at)))

    # -- what was seen -------------------------------------------------------------------------------
    def windows(self) -> list[tuple[float, float]]:
        """(start, duration) of every stretch without an answer, from the last answer before it to the first after."""
        found = []
        last_ok: float | None = None
        failing = False
        for attempt in self.attempts:
            if attempt.ok:
                if failing and last_ok is not None:
                    found.append((last_ok, attempt.at - last_ok))
                failing = False
                last_ok = attempt.at
            else:
                failing = True
        if failing and last_ok is not None and self.attempts:
            found.append((last_ok, self.attempts[-1].at - last_ok))
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

    def report(self) -> dict[str, t.Any]:
        return {"attempts": len(self.attempts), "failed": sum(1 for a in self.attempts if not a.ok),
                "longest_window_s": round(self.longest_window(), 3), "windows": len(self.windows()),
                "served_by": self.served_by()}
