# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A client of the API servers through the reserved address, to count what goes unanswered while the cluster changes.

Run inside the lab (``tests/lab/lab exec -- python -m kubeha_lab.apipoller --address IP --log FILE``). Every
``--interval`` seconds it opens a new TLS connection to ``IP:443`` and asks ``/readyz`` (see
kubeha_lab.availability: attempts run side by side, each with its own timeout), and once a second appends the
attempts that ended to ``--log``, one JSON line each: ``{"at": unix time it started, "ok": bool, "answer": text}``.
It stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from kubeha_lab.availability import Poller


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_args: stop.set())
    offset = time.time() - time.monotonic()
    poller = Poller(args.address, 443, interval=args.interval, timeout=args.timeout, tls=True,
                    request=b"GET /readyz HTTP/1.0\r\n\r\n")
    written: set[float] = set()
    poller.start()
    with open(args.log, "a", encoding="utf-8") as log:
        while True:
            stopping = stop.wait(1.0)
            if stopping:
                poller.stop()
            # Attempts end out of order (each has its own timeout): write each once, whenever it ended.
            for attempt in poller.attempts:
                if attempt.at in written:
                    continue
                written.add(attempt.at)
                ok = attempt.ok and attempt.answer.startswith("ok")
                log.write(json.dumps({"at": round(attempt.at + offset, 3), "ok": ok, "answer": attempt.answer[:80]}) + "\n")
            log.flush()
            if stopping:
                return 0


if __name__ == "__main__":
    sys.exit(main())
