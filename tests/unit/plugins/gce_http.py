# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Canned Compute Engine answers for unit tests.

Responses are served by googleapiclient's HttpMockSequence. Every request is
matched to its method in the compute.v1.json discovery document that ships with
google-api-python-client, and its JSON body is checked against that method's
request schema, so a misspelt or invented field fails the test as GCE would
reject it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import typing as t
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import googleapiclient
import pytest
from ansible.module_utils import basic
from ansible.module_utils.common import warnings
from googleapiclient.http import HttpMockSequence

from ansible_collections.kubeha.gce.plugins.module_utils._gce import api as api_module
from ansible_collections.kubeha.gce.plugins.module_utils._gce import auth as auth_module

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19, which reads the arguments from basic._ANSIBLE_ARGS alone
    @contextlib.contextmanager
    def patch_module_args(args: dict[str, t.Any]) -> t.Iterator[None]:
        """Expose ``args`` to the AnsibleModule instances created within this context."""
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()):
            yield


def _module_side() -> t.ContextManager[t.Any]:
    """Make ansible-core 2.19+ treat this process as a module's.

    Once a test in the same process has loaded controller code (a filter plugin), warnings would go to the
    controller's display instead of into the module's result. Older releases have no such switch.
    """
    try:
        from ansible.module_utils import _internal
    except ImportError:
        return contextlib.nullcontext()
    return mock.patch.object(_internal, "is_controller", False)


BASE = "https://compute.googleapis.com/compute/v1/"
PROJECT = "kubeha-test"
DISCOVERY = json.load(open(os.path.join(os.path.dirname(googleapiclient.__file__),
                                        "discovery_cache", "documents", "compute.v1.json"), encoding="utf-8"))


def _index_methods() -> list[tuple[str, re.Pattern[str], dict[str, t.Any]]]:
    found = []

    def walk(resources: dict[str, t.Any], prefix: str) -> None:
        for rname, resource in resources.items():
            for mname, method in resource.get("methods", {}).items():
                pattern = re.escape(method["path"])
                pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
                found.append((method["httpMethod"], re.compile("^%s$" % pattern), dict(method, id="%s.%s" % (rname, mname))))
            walk(resource.get("resources", {}), prefix)

    walk(DISCOVERY["resources"], "")
    # Longer literal paths first, so .../instances/{i}/setLabels beats .../instances/{i}.
    found.sort(key=lambda item: -len(item[2]["path"]))
    return found


METHODS = _index_methods()


def check_schema(value: t.Any, schema: dict[str, t.Any], where: str) -> None:
    """Fail on any field the discovery document does not define."""
    if "$ref" in schema:
        schema = DISCOVERY["schemas"][schema["$ref"]]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        assert isinstance(value, dict), "%s: expected an object, got %r" % (where, value)
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                check_schema(item, props[key], "%s.%s" % (where, key))
            elif extra:
                check_schema(item, extra, "%s[%s]" % (where, key))
            else:
                raise AssertionError("%s: unknown field %r (GCE answers 400 to it)" % (where, key))
    elif kind == "array":
        assert isinstance(value, list), "%s: expected an array, got %r" % (where, value)
        for i, item in enumerate(value):
            check_schema(item, schema["items"], "%s[%d]" % (where, i))
    elif kind == "string":
        assert isinstance(value, str), "%s: expected a string (int64 values are strings too), got %r" % (where, value)
    elif kind == "boolean":
        assert isinstance(value, bool), "%s: expected a boolean, got %r" % (where, value)
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), "%s: expected an integer" % where


class Call(t.NamedTuple):
    method: str  # e.g. "instances.insert"
    http: str
    path: str
    query: dict[str, list[str]]
    body: t.Any


class GceHttp(HttpMockSequence):
    """HttpMockSequence that checks requests against the discovery document and records them."""

    def __init__(self, responses: list[tuple[dict[str, str], str]]) -> None:
        super().__init__(list(responses))
        self.calls: list[Call] = []

    def request(self, uri, method="GET", body=None, headers=None, redirections=1, connection_type=None):
        parts = urlsplit(uri)
        path = parts.path
        assert path.startswith("/compute/v1/"), "request outside the Compute API: %s" % uri
        path = path[len("/compute/v1/"):]
        for http, pattern, desc in METHODS:
            if http == method and pattern.match(path):
                break
        else:
            raise AssertionError("no Compute API method for %s %s" % (method, path))
        data = json.loads(body) if body else None
        if "request" in desc:
            assert data is not None, "%s needs a request body" % desc["id"]
            check_schema(data, desc["request"], desc["id"])
        query = {k: v for k, v in parse_qs(parts.query).items() if k != "alt"}
        self.calls.append(Call(desc["id"], method, path, query, data))
        assert self._iterable, "unexpected request %s %s (no canned answer left)" % (method, path)
        return super().request(uri, method, body, headers, redirections, connection_type)

    @property
    def names(self) -> list[str]:
        return [c.method for c in self.calls]

    @property
    def mutating(self) -> list[str]:
        return [c.method for c in self.calls if c.http != "GET" and not c.method.endswith("Operations.wait")]

    def done(self) -> bool:
        return not self._iterable


# -- answers -------------------------------------------------------------------------------------

def ok(body: t.Any) -> tuple[dict[str, str], str]:
    return {"status": "200", "content-type": "application/json"}, json.dumps(body)


def error(status: int, reason: str, message: str = "") -> tuple[dict[str, str], str]:
    message = message or "error %s" % reason
    body = {"error": {"code": status, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}
    return {"status": str(status), "content-type": "application/json"}, json.dumps(body)


def not_found(what: str = "resource") -> tuple[dict[str, str], str]:
    return error(404, "notFound", "The resource '%s' was not found" % what)


def zone_url(zone: str) -> str:
    return "%sprojects/%s/zones/%s" % (BASE, PROJECT, zone)


def operation(zone: str | None = "europe-west1-b", status: str = "DONE", name: str = "operation-1",
              errors: list[dict[str, str]] | None = None, region: str | None = None) -> dict[str, t.Any]:
    op: dict[str, t.Any] = {"kind": "compute#operation", "id": "1", "name": name, "status": status,
                            "operationType": "insert", "progress": 100 if status == "DONE" else 0}
    if region:
        op["region"] = "%sprojects/%s/regions/%s" % (BASE, PROJECT, region)
    elif zone:
        op["zone"] = zone_url(zone)
    if errors:
        op["error"] = {"errors": errors}
        op["httpErrorStatusCode"] = 400
    return op


def op_pending(**kw: t.Any) -> tuple[dict[str, str], str]:
    return ok(operation(status="PENDING", **kw))


def op_done(**kw: t.Any) -> tuple[dict[str, str], str]:
    return ok(operation(status="DONE", **kw))


def disk(name: str = "k-master-pd", zone: str = "europe-west1-b", cluster: str = "k", users: list[str] | None = None,
         size: int = 20, kind: str = "pd-ssd", labels: dict[str, str] | None = None) -> dict[str, t.Any]:
    return {
        "kind": "compute#disk", "id": "11", "name": name, "sizeGb": str(size), "status": "READY",
        "zone": zone_url(zone), "type": "%s/diskTypes/%s" % (zone_url(zone), kind),
        "selfLink": "%s/disks/%s" % (zone_url(zone), name),
        "labels": labels if labels is not None else {"kubeha-cluster": cluster, "kubeha-role": "master"},
        "labelFingerprint": "disk-fp-1", "users": users or [],
    }


def instance(name: str = "k-master", zone: str = "europe-west1-b", cluster: str = "k",
             metadata: dict[str, str] | None = None, labels: dict[str, str] | None = None,
             tags: list[str] | None = None, nat_ip: str | None = "203.0.113.7", fingerprint: str = "md-fp-1",
             machine_type: str = "e2-standard-2", status: str = "RUNNING", with_data_disk: bool = True,
             scopes: list[str] | None = None) -> dict[str, t.Any]:
    from ansible_collections.kubeha.gce.plugins.module_utils._gce.replica import DEFAULT_INSTANCE_SCOPES

    disks = [{"deviceName": "persistent-disk-0", "boot": True, "autoDelete": True,
              "source": "%s/disks/%s" % (zone_url(zone), name)}]
    if with_data_disk:
        disks.append({"deviceName": "master-pd", "boot": False, "autoDelete": False,
                      "source": "%s/disks/%s-pd" % (zone_url(zone), name)})
    nic: dict[str, t.Any] = {"name": "nic0", "networkIP": "10.132.0.2",
                             "network": "%sprojects/%s/global/networks/default" % (BASE, PROJECT)}
    if nat_ip:
        nic["accessConfigs"] = [{"name": "External NAT", "type": "ONE_TO_ONE_NAT", "natIP": nat_ip}]
    return {
        "kind": "compute#instance", "id": "42", "name": name, "status": status, "zone": zone_url(zone),
        "machineType": "%s/machineTypes/%s" % (zone_url(zone), machine_type),
        "selfLink": "%s/instances/%s" % (zone_url(zone), name),
        "labels": labels if labels is not None else {"kubeha-cluster": cluster, "kubeha-role": "master"},
        "labelFingerprint": "label-fp-1",
        "tags": {"items": tags if tags is not None else ["%s-master" % cluster], "fingerprint": "tag-fp-1"},
        "metadata": {"kind": "compute#metadata", "fingerprint": fingerprint,
                     "items": [{"key": k, "value": v} for k, v in (metadata or {}).items()]},
        "disks": disks, "networkInterfaces": [nic],
        "serviceAccounts": [{"email": "123-compute@developer.gserviceaccount.com",
                             "scopes": scopes or list(DEFAULT_INSTANCE_SCOPES)}],
    }


def address(name: str = "k-master-ip", region: str = "europe-west1", ip: str = "198.51.100.9",
            users: list[str] | None = None) -> dict[str, t.Any]:
    return {"kind": "compute#address", "id": "7", "name": name, "address": ip, "addressType": "EXTERNAL",
            "status": "IN_USE" if users else "RESERVED", "users": users or [],
            "region": "%sprojects/%s/regions/%s" % (BASE, PROJECT, region),
            "selfLink": "%sprojects/%s/regions/%s/addresses/%s" % (BASE, PROJECT, region, name)}


# -- clocks and module runs ------------------------------------------------------------------------

class FakeClock(api_module.Clock):
    """Time that only moves when the code sleeps."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += seconds


class ModuleExit(Exception):
    def __init__(self, result: dict[str, t.Any]) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result


def _warnings() -> dict[str, t.Any]:
    messages = list(warnings.get_warning_messages())
    warnings._global_warnings.clear()
    return {"warnings": messages} if messages else {}


def _sanitized(module, result):
    """What Ansible receives: as AnsibleModule does, every value of a no_log parameter is masked."""
    from ansible.module_utils.common.parameters import remove_values

    return remove_values(result, module.no_log_values)


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    kwargs.update(_warnings())
    raise ModuleExit(_sanitized(self, dict(kwargs, failed=False)))


def _fail_json(self, msg, **kwargs):
    kwargs.update(_warnings())
    raise ModuleExit(_sanitized(self, dict(kwargs, msg=msg, failed=True)))


AUTH = {"auth_kind": "accesstoken", "access_token": "token-for-tests", "project": PROJECT}


@contextlib.contextmanager
def fake_gce(responses: list[tuple[dict[str, str], str]]) -> t.Iterator[GceHttp]:
    """Serve ``responses`` to whatever connects to GCE in the block, with a fake clock.

    Every answer must be asked for: one left over means the code made fewer calls than the test says.
    """
    http = GceHttp(responses)
    with mock.patch.object(auth_module, "authorized_http", return_value=http), \
            mock.patch.object(api_module, "CLOCK", FakeClock()):
        yield http
    assert http.done(), "%d canned answers were never asked for; the calls made: %s" % (len(http._iterable), http.names)


def run_module(main: t.Callable[[], None], args: dict[str, t.Any], http: GceHttp | None = None,
               check_mode: bool = False, diff: bool = False, auth: bool = True) -> dict[str, t.Any]:
    """Run a module's main() with ``args`` (plus test credentials for GCE modules); return its result."""
    full = dict(AUTH) if auth else {}
    full.update(args)
    full["_ansible_check_mode"] = check_mode
    full["_ansible_diff"] = diff
    with patch_module_args(full), _module_side(), \
            mock.patch.object(basic.AnsibleModule, "exit_json", _exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", _fail_json):
        with pytest.raises(ModuleExit) as caught:
            main()
    return caught.value.result
