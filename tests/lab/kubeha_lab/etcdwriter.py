# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A background writer to the masters' etcd, to count the writes that fail while the cluster changes.

Run inside the lab (``tests/lab/lab exec -- python -m kubeha_lab.etcdwriter ...``). Every
``--interval`` seconds it puts one key through etcd's v3 JSON gateway over TLS with a client
certificate, to the first member that answers, and appends one JSON line per write to ``--log``:
``{"at": unix time, "ok": bool, "endpoint": url, "error": text}``. It learns the members' client
URLs from the member list, so it follows replicas as they come and go. It stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import ssl
import sys
import threading
import time
import typing as t
import urllib.request


def call(endpoint: str, path: str, body: dict[str, t.Any], context: ssl.SSLContext, timeout: float) -> dict[str, t.Any]:
    request = urllib.request.Request(endpoint.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=timeout) as answer:  # nosec - lab endpoints only
        return json.loads(answer.read().decode() or "{}")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", action="append", required=True, help="a client URL to start from (repeatable)")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)

    def load() -> tuple[tuple[float, ...], ssl.SSLContext]:
        """The TLS context of the files as they are now, and their modification times."""
        stamps = tuple(os.stat(path).st_mtime for path in (args.ca, args.cert, args.key))
        made = ssl.create_default_context(cafile=args.ca)
        made.load_cert_chain(args.cert, args.key)
        made.check_hostname = False  # members are reached by IP; the chain is still verified
        return stamps, made

    # A client that reads its CA and certificate again when they change, as a rotation of the CAs expects of the
    # clients it gives the new CA to.
    stamps, context = load()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    endpoints = list(args.endpoint)
    refreshed = 0.0
    number = 0
    with open(args.log, "a", encoding="utf-8") as log:
        while not stop.is_set():
            started = time.time()
            number += 1
            try:
                if tuple(os.stat(path).st_mtime for path in (args.ca, args.cert, args.key)) != stamps:
                    stamps, context = load()
            except (OSError, ssl.SSLError):
                pass  # a file written while it was read: the next put reads it again
            record: dict[str, t.Any] = {"at": started, "ok": False, "endpoint": None, "error": None}
            errors = []
            for endpoint in list(endpoints):
                try:
                    call(endpoint, "/v3/kv/put", {"key": b64("/kubeha-writer/%d" % (number % 100)), "value": b64(str(started))},
                         context, args.timeout)
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    errors.append("%s: %s" % (endpoint, exc))
                    continue
                record.update(ok=True, endpoint=endpoint)
                if started - refreshed > 2:
                    try:
                        members = call(endpoint, "/v3/cluster/member/list", {}, context, args.timeout).get("members") or []
                        urls = [u for m in members if not m.get("isLearner") for u in m.get("clientURLs") or []]
                        # The one that answered first, then the others the cluster has now.
                        endpoints = [endpoint] + sorted(set(urls) - {endpoint}) if urls else endpoints
                        refreshed = started
                    except Exception:  # pylint: disable=broad-exception-caught
                        pass
                break
            if not record["ok"]:
                record["error"] = "; ".join(errors)[-500:]
            log.write(json.dumps(record) + "\n")
            log.flush()
            stop.wait(max(0.0, args.interval - (time.time() - started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
