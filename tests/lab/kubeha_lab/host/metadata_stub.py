# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A minimal metadata server for testing the host layer without the simulator.

    ip netns exec LAB python3 -m kubeha_lab.host.metadata_stub DOCUMENT.json [ADDRESS [PORT]]

DOCUMENT.json (read again on every request, so tests change it in place)::

    {"project": {"attributes": {"ssh-keys": "..."}},
     "instances": {"10.132.0.2": {"hostname": "m1.zone.c.project.internal",
                                  "attributes": {"ssh-keys": "...", "startup-script": "..."}}}}

Instances are told apart by the source address of the request, as on the
real metadata server. Serves ``/computeMetadata/v1/`` paths below
``instance/`` and ``project/`` (``attributes/?recursive=true`` as JSON) and
insists on the ``Metadata-Flavor: Google`` header.
"""
from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/computeMetadata/v1/"


def lookup(document: dict[str, Any], client: str, path: str) -> Any:
    """The value at path for client, None when there is none."""
    instance = document.get("instances", {}).get(client)
    if instance is None:
        return None
    tree = {
        "instance": {
            "attributes": instance.get("attributes", {}),
            "hostname": instance.get("hostname", ""),
            "network-interfaces": {"0": {"ip": client}},
        },
        "project": {"attributes": document.get("project", {}).get("attributes", {})},
    }
    node: Any = tree
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class Handler(BaseHTTPRequestHandler):
    """GET handler; the document's path is the server's ``document`` attribute."""

    server: MetadataServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """Answer one metadata request."""
        if self.headers.get("Metadata-Flavor") != "Google":
            self._reply(403, "Missing Metadata-Flavor:Google header.\n")
            return
        url = urlsplit(self.path)
        if not url.path.startswith(PREFIX):
            self._reply(404, "not found\n")
            return
        document = json.loads(self.server.document.read_text(encoding="utf-8"))
        value = lookup(document, self.client_address[0], url.path[len(PREFIX):])
        query = parse_qs(url.query)
        if value is None:
            self._reply(404, "not found\n")
        elif isinstance(value, dict):
            if query.get("recursive", ["false"])[0] == "true":
                self._reply(200, json.dumps(value))
            else:
                self._reply(200, "".join(f"{k}/\n" if isinstance(v, dict) else f"{k}\n" for k, v in value.items()))
        else:
            self._reply(200, str(value))

    def _reply(self, status: int, text: str) -> None:
        """Send text with status."""
        body = text.encode()
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", "application/json" if text.startswith("{") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        """Quiet."""


class MetadataServer(ThreadingHTTPServer):
    """Serves one document file."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], document: Path) -> None:
        super().__init__(address, Handler)
        self.document = document


def main(argv: list[str]) -> int:
    """Serve until killed."""
    if len(argv) not in (2, 3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    address = argv[2] if len(argv) > 2 else "169.254.169.254"
    port = int(argv[3]) if len(argv) > 3 else 80
    server = MetadataServer((address, port), Path(argv[1]))
    print(f"serving {argv[1]} on {address}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
