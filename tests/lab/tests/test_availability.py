# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The availability poller against a real server on loopback that goes away and comes back."""

from __future__ import annotations

import socket
import threading
import time

from kubeha_lab.availability import Poller


class Server:
    """A TCP server on 127.0.0.1 that answers its name, and can be stopped and started on the same port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.listener: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(self.listener,), daemon=True)
        self.thread.start()

    def _serve(self, listener: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                conn, _address = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(self.name.encode())

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=5)
        if self.listener is not None:
            self.listener.close()


# Slack for a thread scheduled late on a loaded 2-core host: between the moment an attempt is stamped and
# its connect() call, and between a server's start or stop and the next attempt.
SLACK = 0.5
INTERVAL = 0.02


def test_an_outage_is_measured_from_the_last_answer_to_the_next():
    server = Server("alpha")
    server.start()
    with Poller("127.0.0.1", server.port, interval=INTERVAL, timeout=1.0) as poller:
        time.sleep(0.3)
        stopping = time.monotonic()
        server.stop()
        stopped = time.monotonic()
        time.sleep(0.6)
        restarting = time.monotonic()
        server.start()
        started = time.monotonic()
        time.sleep(0.3)
    server.stop()
    windows = poller.windows()
    assert len(windows) == 1, windows
    # At least as long as nothing listened; at most from the last attempt before the stop began to the first
    # after the start ended.
    assert restarting - stopped - SLACK <= poller.longest_window() <= started - stopping + 2 * INTERVAL + SLACK
    assert poller.served_by() == {"alpha": sum(1 for a in poller.attempts if a.ok)}
    report = poller.report()
    assert report["failed"] > 0 and report["windows"] == 1


def test_no_outage_when_every_attempt_is_answered():
    server = Server("beta")
    server.start()
    with Poller("127.0.0.1", server.port, interval=INTERVAL, timeout=1.0) as poller:
        time.sleep(0.3)
    server.stop()
    assert poller.longest_window() == 0.0 and poller.windows() == []
    assert poller.report()["attempts"] >= 5


def test_an_outage_still_going_on_at_the_end_counts_too():
    server = Server("gamma")
    server.start()
    poller = Poller("127.0.0.1", server.port, interval=INTERVAL, timeout=1.0)
    with poller:
        time.sleep(0.2)
        stopping = time.monotonic()
        server.stop()
        stopped = time.monotonic()
        time.sleep(0.4)
        ending = time.monotonic()
    assert ending - stopped - SLACK <= poller.longest_window() <= ending - stopping + INTERVAL + SLACK


def test_a_slow_attempt_does_not_delay_the_next_ones():
    """Attempts run side by side: one that waits for its timeout leaves the schedule as it was."""
    quiet = socket.create_server(("127.0.0.1", 0))  # accepts, and never says anything
    silent_port = quiet.getsockname()[1]
    try:
        with Poller("127.0.0.1", silent_port, interval=0.05, timeout=1.0) as poller:
            time.sleep(0.5)
    finally:
        quiet.close()
    attempts = poller.attempts
    # Ten or so started in half a second, although none was answered and each waited its whole timeout.
    assert len(attempts) >= 5 and not any(a.ok for a in attempts)
    assert all(a.took >= 0.9 and "timed out" in a.answer for a in attempts), attempts
