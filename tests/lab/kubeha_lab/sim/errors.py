# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors in the shape Compute Engine answers them."""

from __future__ import annotations

import typing as t

STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An HTTP error answer: status, GCE reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, t.Any]:
        return {"error": {"code": self.status, "message": self.message,
                          "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                          "status": STATUS_NAMES.get(self.status, "UNKNOWN")}}


def not_found(path: str) -> ApiError:
    return ApiError(404, "notFound", "The resource '%s' was not found" % path)


def already_exists(path: str) -> ApiError:
    return ApiError(409, "alreadyExists", "The resource '%s' already exists" % path)


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid", message)


def in_use(path: str, user: str) -> ApiError:
    return ApiError(400, "resourceInUseByAnotherResource",
                    "The %s resource '%s' is already being used by '%s'" % (kind_of(path), path, user))


def stale_fingerprint(what: str) -> ApiError:
    return ApiError(412, "conditionNotMet", "Supplied fingerprint does not match current %s fingerprint." % what)


def kind_of(path: str) -> str:
    """'projects/p/zones/z/disks/d' -> 'disk'."""
    parts = path.split("/")
    collection = parts[-2] if len(parts) >= 2 else "resource"
    singular = {"addresses": "address", "disks": "disk", "instances": "instance", "targetPools": "targetPool",
                "forwardingRules": "forwardingRule", "backendServices": "backendService",
                "instanceGroups": "instanceGroup", "healthChecks": "healthCheck",
                "httpHealthChecks": "httpHealthCheck", "firewalls": "firewall"}
    return singular.get(collection, collection.rstrip("s"))
