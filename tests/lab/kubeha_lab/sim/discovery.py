# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Routing and request validation from the compute.v1.json discovery document.

The document is the one google-api-python-client ships, so the simulator
accepts exactly the methods, parameters and fields that Compute Engine
publishes, and rejects the rest as Compute Engine does.
"""

from __future__ import annotations

import json
import os
import re
import typing as t

from kubeha_lab.sim.errors import ApiError, invalid

SERVICE_PATH = "compute/v1/"


def document_path() -> str:
    import googleapiclient  # pylint: disable=import-outside-toplevel

    return os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "compute.v1.json")


def _group(match: re.Match[str]) -> str:
    """``{zone}`` -> a named group for one segment; ``{+parentName}`` -> one that spans segments."""
    name = match.group(1).replace("\\", "")
    if name.startswith("+"):
        return "(?P<%s>.+)" % name[1:]
    return "(?P<%s>[^/]+)" % name


class Method(t.NamedTuple):
    id: str  # "compute.instances.insert"
    collection: str  # "instances"
    name: str  # "insert"
    http: str
    pattern: re.Pattern[str]
    params: dict[str, dict[str, t.Any]]
    request: str | None  # schema name of the body


class Route(t.NamedTuple):
    method: Method
    path: dict[str, str]
    query: dict[str, t.Any]
    body: t.Any


class Discovery:
    """The compute v1 API surface: methods, parameters and schemas."""

    def __init__(self, path: str | None = None) -> None:
        with open(path or document_path(), encoding="utf-8") as handle:
            self.doc = json.load(handle)
        self.schemas: dict[str, dict[str, t.Any]] = self.doc["schemas"]
        self.global_params: dict[str, dict[str, t.Any]] = self.doc.get("parameters", {})
        self.methods: list[Method] = []
        for collection, resource in self.doc["resources"].items():
            for name, desc in resource.get("methods", {}).items():
                regex = re.sub(r"\\\{([^}]+)\\\}", _group, re.escape(desc["path"]))
                self.methods.append(Method(desc["id"], collection, name, desc["httpMethod"], re.compile("^%s$" % regex),
                                           desc.get("parameters", {}), (desc.get("request") or {}).get("$ref")))
        # A literal segment must win over a parameter (".../instances/{i}/setLabels" vs ".../{a}/{b}/{c}").
        self.methods.sort(key=lambda m: (-m.pattern.pattern.count("/"), m.pattern.pattern.count("(?P")))
        self.by_id = {m.id: m for m in self.methods}

    # -- routing ---------------------------------------------------------------------------------
    def route(self, http: str, path: str, query: dict[str, list[str]], body: bytes | None) -> Route:
        """Match ``path`` (after the service path) to a method and validate everything."""
        candidates = [(m, m.pattern.match(path)) for m in self.methods]
        matches = [(m, match) for m, match in candidates if match]
        if not matches:
            raise ApiError(404, "notFound", "The requested URL /%s%s was not found on this server." % (SERVICE_PATH, path))
        for method, match in matches:
            if method.http == http:
                break
        else:
            raise ApiError(405, "methodNotAllowed", "HTTP method %s is not supported by this URL" % http)
        params = dict(match.groupdict())
        for name, value in params.items():
            self._check_param(method, name, value)
        parsed_query = self._check_query(method, query)
        data = None
        if method.request:
            if not body:
                raise invalid("Required field 'resource' not specified")
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise ApiError(400, "parseError", "Invalid JSON payload received. %s" % exc) from None
            self.check_body(data, {"$ref": method.request}, "resource", method.id)
        return Route(method, params, parsed_query, data)

    def _check_param(self, method: Method, name: str, value: str) -> None:
        spec = method.params.get(name, {})
        pattern = spec.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            raise invalid("Invalid value for field '%s': '%s'. Must be a match of regex '%s'" % (name, value, pattern))

    def _check_query(self, method: Method, query: dict[str, list[str]]) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {}
        for name, values in query.items():
            spec = method.params.get(name)
            if spec is None or spec.get("location") != "query":
                if name in self.global_params:
                    continue
                raise ApiError(400, "badRequest", "Invalid JSON payload received. Unknown name \"%s\": Cannot bind "
                                                  "query parameter. Field '%s' could not be found in request message."
                                                  % (name, name))
            value: t.Any = values[-1]
            kind = spec.get("type")
            if kind == "boolean":
                if value not in ("true", "false"):
                    raise invalid("Invalid value for %s: %s" % (name, value))
                value = value == "true"
            elif kind == "integer":
                try:
                    value = int(value)
                except ValueError:
                    raise invalid("Invalid value for %s: %s" % (name, value)) from None
            if spec.get("enum") and value not in spec["enum"]:
                raise invalid("Invalid value for %s: %s" % (name, value))
            result[name] = value
        for name, spec in method.params.items():
            if spec.get("location") == "query" and spec.get("required") and name not in result:
                raise invalid("Required field '%s' not specified" % name)
        return result

    # -- bodies ----------------------------------------------------------------------------------
    def check_body(self, value: t.Any, schema: dict[str, t.Any], where: str, method_id: str) -> None:
        """Reject unknown fields, wrong types and missing required fields, with GCE's messages."""
        if "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            if not isinstance(value, dict):
                raise invalid("Invalid value at '%s', expected an object" % where)
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                if key in props:
                    self.check_body(item, props[key], "%s.%s" % (where, key), method_id)
                elif extra:
                    self.check_body(item, extra, "%s[%s]" % (where, key), method_id)
                else:
                    raise invalid("Invalid JSON payload received. Unknown name \"%s\" at '%s': Cannot find field."
                                  % (key, where))
            for key, prop in props.items():
                required = (prop.get("annotations") or {}).get("required") or []
                if method_id in required and value.get(key) in (None, ""):
                    raise invalid("Required field '%s.%s' not specified" % (where, key))
        elif kind == "array":
            if not isinstance(value, list):
                raise invalid("Invalid value at '%s', expected a list" % where)
            for index, item in enumerate(value):
                self.check_body(item, schema["items"], "%s[%d]" % (where, index), method_id)
        elif kind == "string":
            if schema.get("format") in ("int64", "uint64") and isinstance(value, int) and not isinstance(value, bool):
                return  # proto3 JSON accepts numbers for 64-bit integers
            if not isinstance(value, str):
                raise invalid("Invalid value at '%s' (TYPE_STRING), %s" % (where, json.dumps(value)))
            if schema.get("format") in ("int64", "uint64") and not re.fullmatch(r"-?[0-9]+", value):
                raise invalid("Invalid value at '%s' (TYPE_INT64), \"%s\"" % (where, value))
            if schema.get("enum") and value not in schema["enum"]:
                raise invalid("Invalid value at '%s' (TYPE_ENUM), \"%s\"" % (where, value))
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                if not (isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value)):
                    raise invalid("Invalid value at '%s' (TYPE_INT32), %s" % (where, json.dumps(value)))
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise invalid("Invalid value at '%s' (TYPE_BOOL), %s" % (where, json.dumps(value)))
