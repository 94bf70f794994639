# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The simulator's state: resources by path, operations, accounts and tokens; saved to disk on every change."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import threading
import typing as t

from kubeha_lab.sim.errors import ApiError, invalid

API_ROOT = "https://www.googleapis.com/compute/v1/"
NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"

# API collection -> (scope kind, collection in URLs, kind)
COLLECTIONS: dict[str, tuple[str, str, str]] = {
    "instances": ("zones", "instances", "compute#instance"),
    "disks": ("zones", "disks", "compute#disk"),
    "instanceGroups": ("zones", "instanceGroups", "compute#instanceGroup"),
    "addresses": ("regions", "addresses", "compute#address"),
    "globalAddresses": ("global", "addresses", "compute#address"),
    "forwardingRules": ("regions", "forwardingRules", "compute#forwardingRule"),
    "targetPools": ("regions", "targetPools", "compute#targetPool"),
    "regionBackendServices": ("regions", "backendServices", "compute#backendService"),
    "regionHealthChecks": ("regions", "healthChecks", "compute#healthCheck"),
    "httpHealthChecks": ("global", "httpHealthChecks", "compute#httpHealthCheck"),
    "firewalls": ("global", "firewalls", "compute#firewall"),
    "networks": ("global", "networks", "compute#network"),
    "subnetworks": ("regions", "subnetworks", "compute#subnetwork"),
}


def short(link: str | None) -> str:
    """The last path element of a resource URL (``.../zones/europe-west1-b`` -> ``europe-west1-b``)."""
    return (link or "").rstrip("/").rsplit("/", 1)[-1]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=-8))).isoformat(timespec="milliseconds")


def fingerprint(value: t.Any) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()[:8]
    return base64.b64encode(digest).decode()


class State:
    """Everything the simulator knows, guarded by one lock and saved after every change."""

    def __init__(self, path: str | None, project: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.data: dict[str, t.Any] = {
            "project": project, "next_id": 1000, "resources": {}, "operations": {},
            "accounts": {}, "tokens": {}, "machines": {}, "zones_down": [],
        }
        self.closed = False
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                self.data.update(json.load(handle))

    @property
    def project(self) -> str:
        return self.data["project"]

    @property
    def resources(self) -> dict[str, dict[str, t.Any]]:
        return self.data["resources"]

    @property
    def operations(self) -> dict[str, dict[str, t.Any]]:
        return self.data["operations"]

    def save(self) -> None:
        """Write the state atomically (callers hold the lock) and wake waiters. Once closed (its simulator stopped),
        nothing is written: a simulator started again on the same file owns it."""
        if self.path and not self.closed:
            # One name per process and thread: another State of the same file (a simulator started again in the same
            # process) never renames this one's file away.
            tmp = "%s.%d.%d.tmp" % (self.path, os.getpid(), threading.get_ident())
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(self.data, handle)
            os.replace(tmp, self.path)
        self.changed.notify_all()

    def new_id(self) -> str:
        self.data["next_id"] += 1
        return str(7000000000000000000 + self.data["next_id"] * 7919)

    # -- paths and links --------------------------------------------------------------------------
    def link(self, path: str) -> str:
        return "%sprojects/%s/%s" % (API_ROOT, self.project, path)

    def full(self, path: str) -> str:
        return "projects/%s/%s" % (self.project, path)

    def parse_ref(self, value: str, collection: str, where: str, scope: str | None = None) -> str:
        """A reference given as URL, partial path or (where GCE allows) a name -> our path.

        ``collection`` is the URL collection ("disks", "addresses"...); ``scope`` is the
        scope to assume for a partial path without one ("zones/europe-west1-b").
        """
        text = value
        for prefix in ("https://www.googleapis.com/compute/v1/", "https://compute.googleapis.com/compute/v1/",
                       "http://www.googleapis.com/compute/v1/"):
            if text.startswith(prefix):
                text = text[len(prefix):]
        if "://" in text:
            # The lab's own endpoint, or any other host: keep the path after the service path.
            text = text.split("/compute/v1/", 1)[-1]
        if text.startswith("projects/"):
            parts = text.split("/")
            if len(parts) < 3:
                raise invalid("Invalid value for field '%s': '%s'." % (where, value))
            if parts[1] != self.project:
                raise invalid("Invalid value for field '%s': '%s'. The project '%s' is not this project."
                              % (where, value, parts[1]))
            text = "/".join(parts[2:])
        parts = text.split("/")
        if len(parts) == 1 and scope is not None:
            parts = scope.split("/") + [collection, parts[0]]
        if len(parts) == 3 and parts[0] == "global" and parts[1] == collection:
            return "/".join(parts)
        if len(parts) == 4 and parts[0] in ("zones", "regions") and parts[2] == collection:
            return "/".join(parts)
        raise invalid("Invalid value for field '%s': '%s'. The URL is malformed." % (where, value))

    def get(self, path: str) -> dict[str, t.Any] | None:
        return self.resources.get(path)

    def require(self, path: str) -> dict[str, t.Any]:
        resource = self.resources.get(path)
        if resource is None:
            raise ApiError(404, "notFound", "The resource '%s' was not found" % self.full(path))
        return resource

    def items(self, scope: str, collection: str) -> list[dict[str, t.Any]]:
        prefix = "%s/%s/" % (scope, collection)
        return [r for p, r in sorted(self.resources.items()) if p.startswith(prefix) and p.count("/") == prefix.count("/")]

    def path_of(self, resource: t.Mapping[str, t.Any]) -> str:
        return resource["selfLink"].split("/projects/%s/" % self.project, 1)[1]

    def users_of(self, path: str) -> list[str]:
        resource = self.resources.get(path)
        return list((resource or {}).get("users") or [])
