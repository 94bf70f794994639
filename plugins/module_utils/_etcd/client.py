# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: etcd's v3 JSON gateway over HTTPS, behind one error layer.

Only the standard library and ``ansible.module_utils.urls`` are used, so the
modules run on a replica that has nothing but python3.
"""

from __future__ import annotations

import base64
import errno
import http.client
import json
import os
import socket
import ssl
import typing as t
import urllib.error
from urllib.parse import urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

from ansible_collections.kubeha.gce.plugins.module_utils._clock import CLOCK, Clock

DEFAULT_ENDPOINT = "https://127.0.0.1:2379"

#: etcd refuses a membership change for a while after a member (re)connected
#: (its HealthInterval is 5 seconds). The refusal is certain: nothing was
#: proposed, so the call is repeated for at most this many seconds.
RECONFIG_SETTLE = 15.0
REFUSALS_TO_RETRY = (
    "etcdserver: unhealthy cluster",
    "etcdserver: re-configuration failed due to not enough started members",
)
#: What etcd says when a learner is not yet close enough to the leader's log.
LEARNER_NOT_READY = "can only promote a learner member which is in sync with leader"
#: What etcd says when the member to promote is no learner (any more).
NOT_LEARNER = "etcdserver: can only promote a learner member"
#: Connection errors that mean the request never left this host.
NOT_SENT_ERRNOS = frozenset((errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL))
#: Seconds within which a member's client port must accept a TCP connection when its health is probed. A live
#: host accepts at once, however busy etcd is (the kernel answers), and 5 s leave room for two lost SYNs (Linux
#: sends again after 1 and 3 s); a VM that is gone, or a zone that is cut off, would otherwise hold every probe for
#: the whole request timeout.
CONNECT_TIMEOUT = 5.0


class EtcdError(Exception):
    """Every failure of the etcd layer, including invalid input, with what etcd said.

    ``code`` is etcd's gRPC code (``None`` when etcd did not answer), ``status``
    the HTTP status, ``url`` the endpoint that was asked, and ``unreachable``
    tells that the endpoint did not answer at all.
    """

    def __init__(self, message: str, code: int | None = None, status: int | None = None, url: str | None = None,
                 unreachable: bool = False, sent: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.url = url
        self.unreachable = unreachable
        self.sent = sent

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, t.Any]:
        return {"code": self.code, "http_status": self.status, "url": self.url, "unreachable": self.unreachable}


class Connection(t.NamedTuple):
    """Where etcd is and how to authenticate to it."""

    endpoints: list[str]
    ca_cert: str | None
    client_cert: str | None
    client_key: str | None
    timeout: float


def check_url(url: str, what: str) -> str:
    """An http(s) URL with host and port, without a trailing slash; EtcdError otherwise."""
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EtcdError("%s %r is not a valid URL: %s" % (what, url, exc)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise EtcdError("%s %r must be an http:// or https:// URL with a host and a port" % (what, url))
    if parts.path or parts.query or parts.fragment:
        raise EtcdError("%s %r must not have a path, query or fragment" % (what, url))
    return url


def connection_from_params(params: dict[str, t.Any]) -> Connection:
    """Check the connection options before any call."""
    endpoints = [check_url(u, "endpoint") for u in params["endpoints"] or []]
    if not endpoints:
        raise EtcdError("endpoints must name at least one etcd client URL")
    for option in ("ca_cert", "client_cert", "client_key"):
        path = params.get(option)
        if path and not os.path.isfile(path):
            raise EtcdError("%s %s does not exist or is not a file" % (option, path))
    if params.get("client_key") and not params.get("client_cert"):
        raise EtcdError("client_key needs client_cert")
    if params["timeout"] <= 0:
        raise EtcdError("timeout must be positive, not %s" % params["timeout"])
    return Connection(endpoints, params.get("ca_cert"), params.get("client_cert"), params.get("client_key"),
                      float(params["timeout"]))


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return _reason(exc.reason) if isinstance(exc.reason, BaseException) else str(exc.reason)
    if isinstance(exc, ssl.SSLError):
        return "TLS: %s" % (exc.reason or exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(exc) or type(exc).__name__


def _never_sent(exc: BaseException) -> bool:
    """Whether the request certainly did not reach etcd (so any endpoint may be tried instead)."""
    inner = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException) else exc
    if isinstance(inner, (ssl.SSLError, socket.gaierror, ConnectionRefusedError)):
        return True
    return isinstance(inner, OSError) and inner.errno in NOT_SENT_ERRNOS


class EtcdClient:
    """etcd's v3 JSON gateway: one request to one URL at a time, each call a one-line method.

    Cluster-wide calls take ``urls``, the client URLs to try in order: a URL that
    cannot be reached is skipped; an answer from etcd, success or error, is final
    (except refusals listed in ``REFUSALS_TO_RETRY``, which are repeated).
    """

    def __init__(self, connection: Connection, clock: Clock | None = None) -> None:
        self.connection = connection
        self.clock = clock or CLOCK
        self.calls: list[str] = []

    # -- the one place where requests are made -------------------------------------------
    def post(self, url: str, path: str, body: dict[str, t.Any] | None = None, timeout: float | None = None) -> dict[str, t.Any]:
        """POST ``body`` as JSON to ``url + path``; the decoded answer or EtcdError."""
        self.calls.append("%s %s" % (url, path))
        conn = self.connection
        try:
            answer = open_url(
                url + path, data=json.dumps(body or {}), method="POST",
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=timeout or conn.timeout, validate_certs=True, use_proxy=False, follow_redirects="none",
                ca_path=conn.ca_cert, client_cert=conn.client_cert, client_key=conn.client_key,
            )
            raw = answer.read()
        except urllib.error.HTTPError as exc:
            raise self._etcd_error(url, path, exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, UrlsConnectionError) as exc:
            raise EtcdError("cannot reach etcd at %s: %s" % (url, _reason(exc)), url=url, unreachable=True,
                            sent=not _never_sent(exc)) from None
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise EtcdError("%s%s answered something that is not JSON: %r" % (url, path, raw[:200]), url=url) from None
        if not isinstance(data, dict):
            raise EtcdError("%s%s answered %r, not a JSON object" % (url, path, data), url=url)
        return data

    def connect_error(self, url: str) -> str | None:
        """Why ``url`` accepts no TCP connection within CONNECT_TIMEOUT (or the request timeout, if shorter);
        None when it does."""
        parts = urlsplit(url)
        limit = min(CONNECT_TIMEOUT, self.connection.timeout)
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=limit).close()
        except (socket.timeout, TimeoutError):
            return "no TCP connection within %g seconds" % limit
        except OSError as exc:
            return _reason(exc)
        return None

    @staticmethod
    def _etcd_error(url: str, path: str, exc: urllib.error.HTTPError) -> EtcdError:
        try:
            raw = exc.read()
        except (OSError, http.client.HTTPException):
            raw = b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        message = body.get("message") or body.get("error") or (raw or b"").decode("utf-8", "replace").strip()
        code = body.get("code")
        return EtcdError("%s (HTTP %s from %s%s)" % (message or exc.reason, exc.code, url, path),
                         code=code if isinstance(code, int) else None, status=exc.code, url=url)

    def first(self, urls: t.Sequence[str], path: str, body: dict[str, t.Any] | None = None,
              mutating: bool = False) -> tuple[str, dict[str, t.Any]]:
        """Ask the first URL that answers; ``(url, answer)``.

        Reads move on to the next URL after any failure. Changes move on only when
        the request certainly never reached etcd, and repeat etcd's transient
        refusals of membership changes for at most ``RECONFIG_SETTLE`` seconds.
        """
        if not urls:
            raise EtcdError("no etcd client URL to send %s to" % path)
        failures: list[str] = []
        end = self.clock.now() + RECONFIG_SETTLE
        while True:
            refused: EtcdError | None = None
            for url in urls:
                try:
                    return url, self.post(url, path, body)
                except EtcdError as exc:
                    if mutating and exc.unreachable and exc.sent:
                        raise EtcdError("%s; the change may or may not have been made: re-run to converge" % exc,
                                        url=url, unreachable=True) from None
                    if mutating and not exc.unreachable:
                        if not any(exc.message.startswith(r) for r in REFUSALS_TO_RETRY):
                            raise
                        refused = exc
                        break
                    failures.append(str(exc))
            if refused is None:
                raise EtcdError("no etcd endpoint answered %s: %s" % (path, "; ".join(failures)), unreachable=True)
            if self.clock.now() + 1.0 > end:
                raise EtcdError("%s; etcd kept refusing for %.0f seconds" % (refused, RECONFIG_SETTLE),
                                code=refused.code, status=refused.status, url=refused.url)
            self.clock.sleep(1.0)

    # -- the calls ------------------------------------------------------------------------
    def member_list(self, urls: t.Sequence[str]) -> tuple[str, dict[str, t.Any]]:
        return self.first(urls, "/v3/cluster/member/list")

    def member_add(self, urls: t.Sequence[str], peer_urls: list[str], learner: bool) -> dict[str, t.Any]:
        return self.first(urls, "/v3/cluster/member/add", {"peerURLs": peer_urls, "isLearner": learner}, mutating=True)[1]

    def member_remove(self, urls: t.Sequence[str], member_id: int) -> dict[str, t.Any]:
        return self.first(urls, "/v3/cluster/member/remove", {"ID": str(member_id)}, mutating=True)[1]

    def member_update(self, urls: t.Sequence[str], member_id: int, peer_urls: list[str]) -> dict[str, t.Any]:
        return self.first(urls, "/v3/cluster/member/update", {"ID": str(member_id), "peerURLs": peer_urls}, mutating=True)[1]

    def member_promote(self, urls: t.Sequence[str], member_id: int) -> dict[str, t.Any]:
        return self.first(urls, "/v3/cluster/member/promote", {"ID": str(member_id)}, mutating=True)[1]

    def status(self, url: str) -> dict[str, t.Any]:
        return self.post(url, "/v3/maintenance/status")

    def linearizable_read(self, url: str) -> dict[str, t.Any]:
        """A quorum read of one key, as ``etcdctl endpoint health`` does."""
        return self.post(url, "/v3/kv/range", {"key": b64("health"), "count_only": True})

    def move_leader(self, leader_url: str, target_id: int) -> dict[str, t.Any]:
        """Ask the leader (only the leader accepts it) to hand leadership to ``target_id``."""
        return self.post(leader_url, "/v3/maintenance/transfer-leadership", {"targetID": str(target_id)})
