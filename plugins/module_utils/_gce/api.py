# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: Compute Engine calls, retries and operations."""

from __future__ import annotations

import json
import random
import socket
import traceback
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._clock import CLOCK, Clock
from ansible_collections.kubeha.gce.plugins.module_utils._gce.names import short

GOOGLE_IMPORT_ERROR: str | None
try:
    import google.auth.exceptions
    import httplib2
    from googleapiclient import discovery
    from googleapiclient import errors as gerrors
except ImportError:
    GOOGLE_IMPORT_ERROR = traceback.format_exc()
else:
    GOOGLE_IMPORT_ERROR = None

GOOGLE_PACKAGES = "google-api-python-client, google-auth and google-auth-httplib2"

#: Reasons GCE gives for 403 answers that mean "slow down", not "forbidden".
RATE_LIMIT_REASONS = frozenset(("rateLimitExceeded", "userRateLimitExceeded"))
#: HTTP status codes that are worth another try.
RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))
#: Reasons of 403 answers that are about quotas, not about who is asking.
QUOTA_REASONS = frozenset(("quotaExceeded", "QUOTA_EXCEEDED", "dailyLimitExceeded"))
#: Reasons of the collection's own errors about credentials that cannot be used (a missing or broken key
#: file, no project), and of the token endpoint's refusal.
CREDENTIALS_REASONS = frozenset(("invalidCredentials", "badCredentials"))
#: What an operator can do about a refused credential; said only when the answer was a 401/403 or the
#: credentials themselves could not be used.
CREDENTIALS_HINT = ("give the credentials and the project as the google.cloud modules take them (GCP_AUTH_KIND "
                    "with GCP_SERVICE_ACCOUNT_FILE, GCP_PROJECT, or an AWX Google Compute Engine credential; see "
                    "docs/authentication.md), with the Compute Engine permissions the collection needs")


def error_kind(status: int | None, reason: str | None) -> str:
    """What kind of failure an answer is, from its HTTP status and GCE's reason.

    ``credentials`` (401, a 403 that is neither a rate limit nor a quota, or credentials that could not be
    used), ``rate_limited``, ``quota``, ``unavailable`` (5xx, or a zone reported UNREACHABLE), ``not_found``,
    ``conflict`` (409), ``stale`` (412), ``invalid`` (400), ``timeout`` (an operation past its deadline),
    ``connection`` (no answer) or ``failed`` (anything else, such as an operation's own error).
    """
    if reason in RATE_LIMIT_REASONS or status == 429:
        return "rate_limited"
    if reason in QUOTA_REASONS:
        return "quota"
    if status in (401, 403) or reason in CREDENTIALS_REASONS:
        return "credentials"
    if reason == "UNREACHABLE" or (status is not None and 500 <= status <= 599):
        return "unavailable"
    kinds = {404: "not_found", 409: "conflict", 412: "stale", 400: "invalid"}
    if status in kinds:
        return kinds[status]
    if status is None and reason in ("timeout", "connection"):
        return reason
    return "failed"


class GceError(Exception):
    """Every failure of the GCE layer: HTTP status, GCE reason and message.

    ``status`` is the HTTP status (``None`` for a failed operation, a timeout or
    a connection problem) and ``reason`` is GCE's reason (``notFound``,
    ``alreadyExists``, ``conditionNotMet``...) or an operation error code.
    """

    def __init__(self, message: str, status: int | None = None, reason: str | None = None,
                 errors: list[dict[str, t.Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.errors = errors or []

    def __str__(self) -> str:
        return self.message

    @property
    def kind(self) -> str:
        """See :func:`error_kind`."""
        return error_kind(self.status, self.reason)

    def to_dict(self) -> dict[str, t.Any]:
        return {"status": self.status, "reason": self.reason, "kind": self.kind, "errors": self.errors}


class Deadline:
    """A point in time by which a piece of work must be finished."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock.now() + seconds

    def remaining(self) -> float:
        return self._end - self._clock.now()

    def expired(self) -> bool:
        return self.remaining() <= 0


def parse_http_error(exc: t.Any) -> GceError:
    """Turn a googleapiclient HttpError into a GceError with GCE's reason and message."""
    status = int(exc.resp.status)
    reason = None
    message = None
    items: list[dict[str, t.Any]] = []
    content = exc.content
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    try:
        body = json.loads(content)
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = error.get("message")
        items = [e for e in error.get("errors") or [] if isinstance(e, dict)]
        if items:
            reason = items[0].get("reason")
        if reason is None:
            reason = error.get("status")
    if not message:
        message = (content or "").strip() or getattr(exc.resp, "reason", "") or "HTTP %d" % status
    return GceError(message, status=status, reason=reason, errors=items)


def is_retryable(error: GceError) -> bool:
    if error.status in RETRY_STATUSES:
        return True
    return error.status == 403 and error.reason in RATE_LIMIT_REASONS


class RetryPolicy:
    """Jittered exponential backoff ("full jitter") bounded by a total deadline."""

    def __init__(self, deadline: float = 120.0, initial: float = 1.0, maximum: float = 32.0,
                 multiplier: float = 2.0, clock: Clock | None = None,
                 jitter: t.Callable[[float, float], float] | None = None) -> None:
        self.deadline = deadline
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.clock = clock or CLOCK
        self.jitter = jitter or random.uniform

    def delays(self) -> t.Iterator[float]:
        ceiling = self.initial
        while True:
            yield self.jitter(0, ceiling)
            ceiling = min(self.maximum, ceiling * self.multiplier)


CONNECTION_ERRORS: tuple[type[BaseException], ...] = (socket.error, ConnectionError, TimeoutError)
if GOOGLE_IMPORT_ERROR is None:
    CONNECTION_ERRORS = CONNECTION_ERRORS + (httplib2.HttpLib2Error,)


class ComputeApi:
    """The Compute Engine v1 API for one project, behind one retry and error layer.

    Modules never see HTTP: every call goes through :meth:`call`, which retries
    what is worth retrying and turns everything else into :class:`GceError`.
    """

    def __init__(self, http: t.Any, project: str, api_endpoint: str | None = None,
                 retry: RetryPolicy | None = None) -> None:
        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        self.project = project
        self.retry = retry or RetryPolicy()
        self.calls: list[str] = []
        #: Scopes (``zones/ZONE``) that aggregated lists reported UNREACHABLE, with GCE's message: their
        #: resources were left out of the answer, and zonal calls there fail until the zone is back.
        self.unreachable: dict[str, str] = {}
        self.service = discovery.build(
            "compute", "v1", http=http, static_discovery=True, cache_discovery=False,
            client_options=options,
        )

    # -- the one place where requests are executed ------------------------------------
    def call(self, collection: str, method: str, **params: t.Any) -> dict[str, t.Any]:
        """Run ``compute.<collection>.<method>(project=..., **params)`` with retries."""
        params.setdefault("project", self.project)
        what = "%s.%s" % (collection, method)
        where = "".join(" in %s %s" % (key, params[key]) for key in ("zone", "region") if params.get(key))
        deadline = Deadline(self.retry.deadline, self.retry.clock)
        delays = self.retry.delays()
        attempt = 0
        while True:
            attempt += 1
            self.calls.append(what)
            try:
                request = getattr(getattr(self.service, collection)(), method)(**params)
                return request.execute(num_retries=0) or {}
            except gerrors.HttpError as exc:
                error = parse_http_error(exc)
                if not is_retryable(error):
                    if error.kind == "credentials":
                        error.message = "%s%s was refused (%s %s): %s" % (
                            what, where, error.status, error.reason or "", error.message)
                    raise error from None
            except CONNECTION_ERRORS as exc:
                error = GceError("connection to the Compute API failed: %s" % (exc or type(exc).__name__),
                                 reason="connection")
            except google.auth.exceptions.RefreshError as exc:
                raise GceError("the credentials were refused by the token endpoint: %s" % exc,
                               status=401, reason="invalidCredentials") from None
            except google.auth.exceptions.TransportError as exc:
                error = GceError("connection to the token endpoint failed: %s" % exc, reason="connection")
            delay = next(delays)
            if deadline.remaining() < delay:
                raise GceError(
                    "%s%s still failing after %d attempts in %.0f seconds (the retry deadline): %s"
                    % (what, where, attempt, self.retry.deadline, error.message),
                    status=error.status, reason=error.reason, errors=error.errors,
                )
            self.retry.clock.sleep(delay)

    def get(self, collection: str, **params: t.Any) -> dict[str, t.Any] | None:
        """Read a resource; ``None`` when GCE answers 404."""
        try:
            return self.call(collection, "get", **params)
        except GceError as exc:
            if exc.status == 404:
                return None
            raise

    def list_all(self, collection: str, method: str = "list", **params: t.Any) -> list[dict[str, t.Any]]:
        """Every item of a list call, following page tokens."""
        items: list[dict[str, t.Any]] = []
        token = None
        while True:
            if token:
                params["pageToken"] = token
            page = self.call(collection, method, **params)
            items.extend(page.get("items") or [])
            token = page.get("nextPageToken")
            if not token:
                return items

    def aggregated(self, collection: str, **params: t.Any) -> list[dict[str, t.Any]]:
        """Every item of an ``aggregatedList`` call, across all scopes and pages.

        A scope that GCE reports UNREACHABLE (a zone in an outage) has no items in the answer; it is
        recorded in :attr:`unreachable` for the caller to report, not raised.
        """
        items: list[dict[str, t.Any]] = []
        token = None
        while True:
            if token:
                params["pageToken"] = token
            page = self.call(collection, "aggregatedList", **params)
            for scope, scoped in (page.get("items") or {}).items():
                items.extend(scoped.get(collection) or [])
                warning = scoped.get("warning") or {}
                if warning.get("code") == "UNREACHABLE":
                    self.unreachable[scope] = warning.get("message") or "%s did not answer" % scope
            for scope in page.get("unreachables") or []:
                self.unreachable.setdefault(scope, "%s did not answer" % scope)
            token = page.get("nextPageToken")
            if not token:
                return items

    # -- changes that a re-run may repeat ---------------------------------------------------
    def insert(self, collection: str, body: dict[str, t.Any], timeout: float, what: str, **scope: t.Any) -> None:
        """Create and wait; a 409 alreadyExists (a retried insert whose first attempt went through) is done."""
        try:
            self.wait(self.call(collection, "insert", body=body, **scope), timeout, what)
        except GceError as exc:
            if exc.reason != "alreadyExists":
                raise

    def delete(self, collection: str, timeout: float, what: str, **params: t.Any) -> None:
        """Delete and wait; already gone (404) is done."""
        try:
            self.wait(self.call(collection, "delete", **params), timeout, what)
        except GceError as exc:
            if exc.status != 404:
                raise

    # -- operations ---------------------------------------------------------------------
    def wait(self, operation: dict[str, t.Any], timeout: float, what: str = "") -> dict[str, t.Any]:
        """Wait for an operation to be DONE within ``timeout`` seconds and check its error.

        Raises :class:`GceError` when the operation failed (with every error item)
        or did not finish in time; never returns a failed operation.
        """
        deadline = Deadline(timeout, self.retry.clock)
        label = what or "%s %s" % (operation.get("operationType", "operation"), short(operation.get("targetLink")) or "")
        while operation.get("status") != "DONE":
            if deadline.expired():
                raise GceError(
                    "%s did not finish within %d seconds (operation %s is %s); it may still complete: "
                    "re-run to converge" % (label, timeout, operation.get("name"), operation.get("status")),
                    reason="timeout",
                )
            if "zone" in operation:
                scope: dict[str, t.Any] = {"zone": short(operation["zone"])}
                collection = "zoneOperations"
            elif "region" in operation:
                scope = {"region": short(operation["region"])}
                collection = "regionOperations"
            else:
                scope = {}
                collection = "globalOperations"
            operation = self.call(collection, "wait", operation=operation["name"], **scope)
            if operation.get("status") != "DONE":
                # wait answers after about two minutes at most, or sooner: do not spin.
                self.retry.clock.sleep(max(0.0, min(1.0, deadline.remaining())))
        check_operation(operation, label)
        return operation


def check_operation(operation: dict[str, t.Any], label: str) -> None:
    """Raise GceError when a DONE operation carries an error."""
    items = [e for e in ((operation.get("error") or {}).get("errors") or []) if isinstance(e, dict)]
    if items or operation.get("error"):
        details = "; ".join("%s: %s" % (e.get("code", "ERROR"), e.get("message", "")) for e in items)
        raise GceError(
            "%s failed: %s" % (label, details or operation.get("httpErrorMessage", "unknown error")),
            status=operation.get("httpErrorStatusCode"),
            reason=items[0].get("code") if items else None,
            errors=items,
        )


def with_fingerprint(resource: t.Mapping[str, t.Any], read: t.Callable[[], dict[str, t.Any] | None],
                     apply: t.Callable[[t.Mapping[str, t.Any]], t.Any]) -> None:
    """Apply a change with the fingerprint read before; on a stale fingerprint (412) re-read and apply once more."""
    try:
        apply(resource)
    except GceError as exc:
        if exc.status != 412 and exc.reason != "conditionNotMet":
            raise
        fresh = read()
        if fresh is None:
            raise GceError("%s '%s' disappeared while it was being changed"
                           % (resource.get("kind", "resource").split("#")[-1], resource.get("name")),
                           status=404, reason="notFound") from None
        apply(fresh)
