# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the Compute API simulator in the foreground: ``python -m kubeha_lab.sim --state FILE --port 8089``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from kubeha_lab.sim.metadata import MetadataServer
from kubeha_lab.sim.server import DEFAULT_PROJECT, Simulator, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeha_lab.sim", description=__doc__)
    parser.add_argument("--state", required=True, help="state file (JSON), kept across restarts")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    parser.add_argument("--machines", action="store_true", help="boot a real machine for every instance")
    parser.add_argument("--metadata", metavar="ADDRESS:PORT", help="serve the metadata server there")
    parser.add_argument("--network", choices=("default", "custom"), default="default",
                        help="the network a new state starts with (see Compute.seed)")
    args = parser.parse_args(argv)
    backend = None
    if args.machines:
        from kubeha_lab.sim.machines import MachineBackend  # pylint: disable=import-outside-toplevel

        backend = MachineBackend()
    sim = Simulator(args.state, project=args.project, backend=backend, network_mode=args.network)
    servers = []
    if args.metadata:
        address, port = args.metadata.rsplit(":", 1)
        metadata = MetadataServer((address, int(port)), sim)
        threading.Thread(target=metadata.serve_forever, name="metadata", daemon=True).start()
        servers.append(metadata)
    server, thread = serve(sim, args.host, args.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stop.set())
    print("compute API simulator on http://%s:%d/compute/v1/ (project %s)" % (args.host, args.port, args.project),
          flush=True)
    stop.wait()
    for other in servers:
        other.shutdown()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
