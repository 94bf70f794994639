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


def test_an_outage_is_measured_from_the_last_answer_to_the_next():
    server = Server("alpha")
    server.start()
    with Poller("127.0.0.1", server.port, interval=0.02, timeout=0.2) as poller:
        time.sleep(0.3)
        server.stop()
        time.sleep(0.6)
        server.start()
        time.sleep(0.3)
    server.stop()
    windows = poller.windows()
    assert len(windows) == 1
    assert 0.55 <= poller.longest_window() <= 0.9
    assert poller.served_by() == {"alpha": sum(1 for a in poller.attempts if a.ok)}
    report = poller.report()
    assert report["failed"] > 0 and report["windows"] == 1


def test_no_outage_when_every_attempt_is_answered():
    server = Server("beta")
    server.start()
    with Poller("127.0.0.1", server.port, interval=0.02, timeout=0.2) as poller:
        time.sleep(0.3)
    server.stop()
    assert poller.longest_window() == 0.0 and poller.windows() == []
    assert poller.report()["attempts"] >= 5


def test_an_outage_still_going_on_at_the_end_counts_too():
    server = Server("gamma")
    server.start()
    with Poller("127.0.0.1", server.port, interval=0.02, timeout=0.2) as poller:
        time.sleep(0.2)
        server.stop()
        time.sleep(0.4)
    assert 0.3 <= poller.longest_window() <= 0.7
