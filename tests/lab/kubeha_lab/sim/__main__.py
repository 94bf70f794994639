# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the Compute API simulator in the foreground: ``python -m kubeha_lab.sim --state FILE --port 8089``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from kubeha_lab.sim.server import DEFAULT_PROJECT, Simulator, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeha_lab.sim", description=__doc__)
    parser.add_argument("--state", required=True, help="state file (JSON), kept across restarts")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    args = parser.parse_args(argv)
    sim = Simulator(args.state, project=args.project)
    server, thread = serve(sim, args.host, args.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stop.set())
    print("compute API simulator on http://%s:%d/compute/v1/ (project %s)" % (args.host, args.port, args.project),
          flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
