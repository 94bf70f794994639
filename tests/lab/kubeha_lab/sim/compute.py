# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Compute Engine resources and the rules people meet in real life.

Each API method is a handler ``m_<collection>_<method>``; mutating handlers
validate, record a step and return an operation; ``s_<step>`` functions apply
steps when the operation runs.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import typing as t

from kubeha_lab.sim import catalog, filters
from kubeha_lab.sim.backend import Backend
from kubeha_lab.sim.discovery import Route
from kubeha_lab.sim.errors import ApiError, already_exists, in_use, invalid, stale_fingerprint
from kubeha_lab.sim.operations import Operations
from kubeha_lab.sim.state import COLLECTIONS, NAME, State, fingerprint, now_rfc3339, short

LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
PROJECT_NUMBER = "123456789012"
#: The details field of each health check type.
CHECK_FIELDS = {"TCP": "tcpHealthCheck", "HTTP": "httpHealthCheck", "HTTPS": "httpsHealthCheck",
                "SSL": "sslHealthCheck", "HTTP2": "http2HealthCheck"}


class Compute:
    def __init__(self, state: State, backend: Backend, operations_factory: t.Callable[..., Operations]) -> None:
        self.state = state
        self.backend = backend
        self.ops = operations_factory(state, self._apply)
        self.ops.rollback = self._rollback

    # -- dispatch ----------------------------------------------------------------------------------
    def handle(self, route: Route, user: str) -> dict[str, t.Any]:
        method = route.method
        params = dict(route.path)
        if params.get("project") != self.state.project and not self.handle_project(route):
            raise ApiError(404, "notFound", "The resource 'projects/%s' was not found" % params.get("project"))
        for key in ("zone", "region"):
            if key in params:
                self._check_scope(key, params[key], method.collection != "zones")
        handler = getattr(self, "m_%s_%s" % (method.collection, method.name), None)
        with self.state.lock:
            if handler is not None:
                return handler(params, route.query, route.body, user)
            if method.name in ("get", "list", "aggregatedList", "delete") and method.collection in COLLECTIONS:
                return getattr(self, "generic_%s" % method.name.lower())(method.collection, params, route.query, user)
        raise ApiError(501, "notImplemented", "%s is not implemented by the lab" % method.id)

    def _check_scope(self, key: str, value: str, outage_applies: bool) -> None:
        names = [z for z, _r in catalog.zones()] if key == "zone" else list(catalog.REGIONS)
        if value not in names:
            raise ApiError(404, "notFound", "The resource 'projects/%s/%ss/%s' was not found"
                           % (self.state.project, key, value))
        if outage_applies and key == "zone" and value in self.state.data["zones_down"]:
            raise ApiError(503, "backendError", "The zone '%s' is currently unavailable." % value)

    @staticmethod
    def _scope(collection: str, params: t.Mapping[str, str]) -> str:
        kind = COLLECTIONS[collection][0]
        if kind == "global":
            return "global"
        return "%s/%s" % (kind, params[kind[:-1]])

    def _path(self, collection: str, params: t.Mapping[str, str], name: str) -> str:
        return "%s/%s/%s" % (self._scope(collection, params), COLLECTIONS[collection][1], name)

    def _resource_name_param(self, collection: str, params: t.Mapping[str, str]) -> str:
        singular = {"instances": "instance", "disks": "disk", "instanceGroups": "instanceGroup",
                    "addresses": "address", "globalAddresses": "address", "forwardingRules": "forwardingRule",
                    "targetPools": "targetPool", "regionBackendServices": "backendService",
                    "regionHealthChecks": "healthCheck", "httpHealthChecks": "httpHealthCheck",
                    "firewalls": "firewall", "networks": "network", "subnetworks": "subnetwork"}[collection]
        return params[singular]

    def _op(self, collection: str, params: t.Mapping[str, str], op_type: str, target: str, user: str,
            step: str, **args: t.Any) -> dict[str, t.Any]:
        resource = self.state.get(target) or {}
        scope = self._scope(collection, params)
        method = "compute.%s.%s" % (collection, op_type)
        return self.ops.start(scope, op_type, target, resource.get("id", "0"), user, method,
                              {"step": step, "target": target, "args": args})

    def _apply(self, op: dict[str, t.Any], step: dict[str, t.Any]) -> None:
        if not step:
            return
        getattr(self, "s_%s" % step["step"])(step["target"], **step.get("args", {}))

    def _rollback(self, step: dict[str, t.Any]) -> None:
        """A failed insert leaves nothing behind, as on GCE."""
        if step.get("step") != "created":
            return
        with self.state.lock:
            path = step["target"]
            resource = self.state.resources.pop(path, None)
            if resource is None:
                return
            after = getattr(self, "after_delete_%s" % path.split("/")[-2], None)
            if after:
                after(path, resource)
            self.state.save()

    # -- generic -----------------------------------------------------------------------------------
    def generic_get(self, collection: str, params: t.Mapping[str, str], query: t.Any, user: str) -> dict[str, t.Any]:
        return copy.deepcopy(self.state.require(self._path(collection, params, self._resource_name_param(collection, params))))

    def generic_list(self, collection: str, params: t.Mapping[str, str], query: t.Mapping[str, t.Any],
                     user: str) -> dict[str, t.Any]:
        scope = self._scope(collection, params)
        items = [copy.deepcopy(r) for r in self.state.items(scope, COLLECTIONS[collection][1])]
        return self._page(items, query, "%sList" % COLLECTIONS[collection][2], self.state.link(
            "%s/%s" % (scope, COLLECTIONS[collection][1])))

    def generic_aggregatedlist(self, collection: str, params: t.Mapping[str, str], query: t.Mapping[str, t.Any],
                               user: str) -> dict[str, t.Any]:
        kind, url_collection, res_kind = COLLECTIONS[collection]
        scopes = ["zones/%s" % z for z, _r in catalog.zones()] if kind == "zones" else ["regions/%s" % r for r in catalog.REGIONS]
        if collection == "addresses":
            scopes.append("global")
        predicate = filters.parse(query.get("filter"))
        items: dict[str, t.Any] = {}
        down = ["zones/%s" % z for z in self.state.data["zones_down"]]
        for scope in scopes:
            if scope in down:
                # GCE in a zone outage: the list answers, and the zone's scope carries a warning instead of items.
                items[scope] = {"warning": {"code": "UNREACHABLE", "message": "Scope '%s' is unreachable: the zone "
                                            "is currently unavailable." % scope,
                                            "data": [{"key": "scope", "value": scope}]}}
                continue
            found = [copy.deepcopy(r) for r in self.state.items(scope, url_collection) if predicate(r)]
            if found:
                items[scope] = {url_collection: found}
            else:
                items[scope] = {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope "
                                            "'%s' on this page." % scope, "data": [{"key": "scope", "value": scope}]}}
        answer = {"kind": "%sAggregatedList" % res_kind, "id": "projects/%s/aggregated/%s" % (self.state.project, url_collection),
                  "items": items, "selfLink": self.state.link("aggregated/%s" % url_collection)}
        unreachable = [scope for scope in scopes if scope in down]
        if unreachable:
            answer["unreachables"] = unreachable
        return answer

    def _page(self, items: list[dict[str, t.Any]], query: t.Mapping[str, t.Any], kind: str, link: str) -> dict[str, t.Any]:
        predicate = filters.parse(query.get("filter"))
        items = [i for i in items if predicate(i)]
        size = query.get("maxResults") or 500
        if size < 0 or size > 500:
            raise invalid("Invalid value for field 'maxResults': '%s'. Must be in the range [0, 500]." % size)
        start = int(query.get("pageToken") or 0) if str(query.get("pageToken") or "0").isdigit() else -1
        if start < 0:
            raise invalid("Invalid value for field 'pageToken': '%s'." % query.get("pageToken"))
        result: dict[str, t.Any] = {"kind": kind, "id": link, "items": items[start:start + size], "selfLink": link}
        if start + size < len(items):
            result["nextPageToken"] = str(start + size)
        return result

    def generic_delete(self, collection: str, params: t.Mapping[str, str], query: t.Any, user: str) -> dict[str, t.Any]:
        path = self._path(collection, params, self._resource_name_param(collection, params))
        resource = self.state.require(path)
        users = [u for u in resource.get("users") or [] if self.state.get(_rel(u, self.state.project)) is not None]
        if users:
            raise in_use(self.state.full(path), _full_from_link(users[0]))
        check = getattr(self, "deletable_%s" % collection, None)
        if check:
            check(path, resource)
        return self._op(collection, params, "delete", path, user, "delete")

    def s_delete(self, path: str) -> None:
        with self.state.lock:
            resource = self.state.get(path)
            if resource is None:
                return
            collection = path.split("/")[-2]
            if collection == "instances":
                resource["status"] = "STOPPING"
                self.state.save()
        if collection == "instances":
            self.backend.instance_stopped(resource)
            self.backend.instance_deleted(resource)
        with self.state.lock:
            resource = self.state.resources.pop(path, None)
            if resource is None:
                return
            after = getattr(self, "after_delete_%s" % collection, None)
            if after:
                after(path, resource)
            self.state.save()
        if collection == "disks":
            self.backend.disk_deleted(resource)
        self._network_changed()

    def _insert(self, collection: str, params: t.Mapping[str, str], body: dict[str, t.Any], user: str,
                build: t.Callable[[str, dict[str, t.Any]], dict[str, t.Any]]) -> dict[str, t.Any]:
        name = body.get("name") or ""
        if not re.fullmatch(NAME, name):
            raise invalid("Invalid value for field 'resource.name': '%s'. Must be a match of regex '%s'"
                          % (name, "(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)"))
        path = self._path(collection, params, name)
        if self.state.get(path) is not None:
            raise already_exists(self.state.full(path))
        if "labels" in body:
            self._check_labels(body["labels"], "resource.labels")
        resource = build(path, copy.deepcopy(body))
        resource.setdefault("kind", COLLECTIONS[collection][2])
        resource["id"] = self.state.new_id()
        resource["creationTimestamp"] = now_rfc3339()
        resource["name"] = name
        resource["selfLink"] = self.state.link(path)
        if "labels" in resource or collection in ("instances", "disks", "addresses", "globalAddresses",
                                                  "forwardingRules"):
            resource.setdefault("labels", {})
            resource["labelFingerprint"] = fingerprint(resource["labels"])
        self.state.resources[path] = resource
        return self._op(collection, params, "insert", path, user, "created")

    def s_created(self, path: str) -> None:
        with self.state.lock:
            resource = self.state.get(path)
            if resource is None:
                return
            collection = path.split("/")[-2]
        finish = getattr(self, "finish_%s" % collection, None)
        if finish:
            finish(path, resource)
        self._network_changed()

    def _check_labels(self, labels: t.Any, where: str) -> None:
        if len(labels) > 64:
            raise invalid("Invalid value for field '%s': too many labels (at most 64)." % where)
        for key, value in labels.items():
            if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value or ""):
                raise invalid("Invalid value for field '%s': '%s'. Label keys and values must be lowercase letters, "
                              "digits, '_' and '-' (keys start with a letter), at most 63 characters." % (where, key))

    # -- catalog -----------------------------------------------------------------------------------
    def _zone(self, zone: str) -> dict[str, t.Any]:
        region = catalog.region_of_zone(zone) or ""
        return {"kind": "compute#zone", "id": catalog.stable_id(zone), "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
                "name": zone, "description": zone, "status": "DOWN" if zone in self.state.data["zones_down"] else "UP",
                "region": self.state.link("regions/%s" % region), "selfLink": self.state.link("zones/%s" % zone),
                "availableCpuPlatforms": ["Intel Broadwell"], "supportsPzs": False}

    def _region(self, region: str) -> dict[str, t.Any]:
        letters = catalog.REGIONS[region][0]
        return {"kind": "compute#region", "id": catalog.stable_id(region), "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
                "name": region, "description": region, "status": "UP", "selfLink": self.state.link("regions/%s" % region),
                "zones": [self.state.link("zones/%s-%s" % (region, letter)) for letter in letters],
                "quotas": [{"metric": "CPUS", "limit": 72.0, "usage": 0.0}], "supportsPzs": False}

    def m_zones_get(self, params, query, body, user):
        return self._zone(params["zone"])

    def m_zones_list(self, params, query, body, user):
        return self._page([self._zone(z) for z, _r in catalog.zones()], query, "compute#zoneList", self.state.link("zones"))

    def m_regions_get(self, params, query, body, user):
        return self._region(params["region"])

    def m_regions_list(self, params, query, body, user):
        return self._page([self._region(r) for r in catalog.REGIONS], query, "compute#regionList", self.state.link("regions"))

    def _machine_type(self, zone: str, name: str) -> dict[str, t.Any]:
        if name not in catalog.MACHINE_TYPES:
            raise ApiError(404, "notFound", "The resource 'projects/%s/zones/%s/machineTypes/%s' was not found"
                           % (self.state.project, zone, name))
        cpus, memory = catalog.MACHINE_TYPES[name]
        return {"kind": "compute#machineType", "id": catalog.stable_id(name), "name": name, "guestCpus": cpus,
                "memoryMb": memory, "zone": zone, "isSharedCpu": False, "maximumPersistentDisks": 128,
                "maximumPersistentDisksSizeGb": "263168", "description": "%d vCPUs, %d MB RAM" % (cpus, memory),
                "selfLink": self.state.link("zones/%s/machineTypes/%s" % (zone, name))}

    def m_machineTypes_get(self, params, query, body, user):
        return self._machine_type(params["zone"], params["machineType"])

    def m_machineTypes_list(self, params, query, body, user):
        return self._page([self._machine_type(params["zone"], n) for n in catalog.MACHINE_TYPES], query,
                          "compute#machineTypeList", self.state.link("zones/%s/machineTypes" % params["zone"]))

    def _disk_type(self, zone: str, name: str) -> dict[str, t.Any]:
        if name not in catalog.DISK_TYPES:
            raise ApiError(404, "notFound", "The resource 'projects/%s/zones/%s/diskTypes/%s' was not found"
                           % (self.state.project, zone, name))
        return {"kind": "compute#diskType", "id": catalog.stable_id(name), "name": name, "zone": self.state.link("zones/%s" % zone),
                "validDiskSize": "10GB-65536GB", "defaultDiskSizeGb": "10", "description": name,
                "selfLink": self.state.link("zones/%s/diskTypes/%s" % (zone, name))}

    def m_diskTypes_get(self, params, query, body, user):
        return self._disk_type(params["zone"], params["diskType"])

    def m_diskTypes_list(self, params, query, body, user):
        return self._page([self._disk_type(params["zone"], n) for n in catalog.DISK_TYPES], query,
                          "compute#diskTypeList", self.state.link("zones/%s/diskTypes" % params["zone"]))

    def _image(self, project: str, name: str) -> dict[str, t.Any]:
        families = catalog.IMAGES.get(project, {})
        family = next((f for f, image in families.items() if image == name), None)
        if family is None:
            raise ApiError(404, "notFound", "The resource 'projects/%s/global/images/%s' was not found" % (project, name))
        return {"kind": "compute#image", "id": catalog.stable_id(name), "name": name, "family": family, "status": "READY",
                "diskSizeGb": "10", "archiveSizeBytes": "1000000000", "sourceType": "RAW",
                "creationTimestamp": "2025-11-11T00:00:00.000-08:00", "architecture": "X86_64",
                "selfLink": "https://www.googleapis.com/compute/v1/projects/%s/global/images/%s" % (project, name)}

    def m_images_get(self, params, query, body, user):
        return self._image(params["project"], params["image"])

    def m_images_getFromFamily(self, params, query, body, user):
        image = catalog.IMAGES.get(params["project"], {}).get(params["family"])
        if image is None:
            raise ApiError(404, "notFound", "The resource 'projects/%s/global/images/family/%s' was not found"
                           % (params["project"], params["family"]))
        return self._image(params["project"], image)

    def handle_project(self, route: Route) -> bool:
        """Images live in public projects: the only calls allowed on another project."""
        return route.method.collection == "images" and route.method.name in ("get", "getFromFamily", "list")

    def resolve_image(self, value: str, where: str) -> str:
        text = re.sub(r"^https?://[^/]+/compute/v1/", "", value)
        match = re.fullmatch(r"(?:projects/(?P<project>[^/]+)/)?global/images/(?:(?P<family>family)/)?(?P<name>[^/]+)", text)
        if not match:
            raise invalid("Invalid value for field '%s': '%s'. The URL is malformed." % (where, value))
        project = match.group("project") or self.state.project
        name = match.group("name")
        if match.group("family"):
            image = catalog.IMAGES.get(project, {}).get(name)
            if image is None:
                raise invalid("Invalid value for field '%s': '%s'. The referenced image resource cannot be found."
                              % (where, value))
            name = image
        self._image_or_invalid(project, name, where, value)
        return "https://www.googleapis.com/compute/v1/projects/%s/global/images/%s" % (project, name)

    def _image_or_invalid(self, project: str, name: str, where: str, value: str) -> None:
        try:
            self._image(project, name)
        except ApiError:
            raise invalid("Invalid value for field '%s': '%s'. The referenced image resource cannot be found."
                          % (where, value)) from None

    # -- networks ----------------------------------------------------------------------------------
    # Networks and subnetworks are stored resources: GCE's auto-mode "default" network (seeded with its four
    # firewall rules) or, in a lab brought up with a custom network, a custom-mode network with a subnetwork per
    # region and no firewall rule at all. The lab has one address range per region, the one its bridge routes
    # (the auto-mode range GCE documents): a subnetwork must use it.
    def _network_of(self, value: str, where: str) -> dict[str, t.Any]:
        path = self.state.parse_ref(value, "networks", where, "global")
        network = self.state.get(path)
        if network is None:
            raise invalid("Invalid value for field '%s': '%s'. The referenced network resource cannot be found."
                          % (where, value))
        return network

    def _with_subnetworks(self, network: dict[str, t.Any]) -> dict[str, t.Any]:
        network = copy.deepcopy(network)
        network["subnetworks"] = sorted(r["selfLink"] for p, r in self.state.resources.items()
                                        if "/subnetworks/" in p and r.get("network") == network["selfLink"])
        return network

    def m_networks_get(self, params, query, body, user):
        return self._with_subnetworks(self.state.require("global/networks/%s" % params["network"]))

    def m_networks_list(self, params, query, body, user):
        items = [self._with_subnetworks(r) for r in self.state.items("global", "networks")]
        return self._page(items, query, "compute#networkList", self.state.link("global/networks"))

    def m_networks_insert(self, params, query, body, user):
        if not isinstance(body.get("autoCreateSubnetworks"), bool):
            raise invalid("Invalid value for field 'resource.autoCreateSubnetworks': ''. The lab makes auto-mode "
                          "(true) or custom-mode (false) networks; say which.")
        answer = self._insert("networks", params, body, user, lambda path, b: self._build_network(b))
        if body["autoCreateSubnetworks"]:
            for region in catalog.REGIONS:
                self._store_subnetwork(region, {"name": body["name"], "network": self.state.link(
                    "global/networks/%s" % body["name"]), "ipCidrRange": str(catalog.subnet_range(region))})
        return answer

    @staticmethod
    def _build_network(body: dict[str, t.Any]) -> dict[str, t.Any]:
        body.update(routingConfig={"routingMode": (body.get("routingConfig") or {}).get("routingMode", "REGIONAL")},
                    mtu=int(body.get("mtu", 1460)))
        return body

    def deletable_networks(self, path: str, resource: dict[str, t.Any]) -> None:
        for other, used in self.state.resources.items():
            uses = used.get("network") == resource["selfLink"] or any(
                n.get("network") == resource["selfLink"] for n in used.get("networkInterfaces") or [])
            if uses and other != path and not (resource.get("autoCreateSubnetworks") and "/subnetworks/" in other):
                raise in_use(self.state.full(path), self.state.full(other))

    def _subnetwork_body(self, region: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        network = self._network_of(body.get("network") or "", "resource.network")
        lab_range = catalog.subnet_range(region)
        try:
            wanted = ipaddress.ip_network(body.get("ipCidrRange") or "", strict=True)
        except ValueError:
            raise invalid("Invalid value for field 'resource.ipCidrRange': '%s'. Must be a CIDR range."
                          % body.get("ipCidrRange")) from None
        if wanted != lab_range:
            raise invalid("Invalid value for field 'resource.ipCidrRange': '%s'. The lab routes %s in region %s: a "
                          "subnetwork there must use that range." % (wanted, lab_range, region))
        for path, other in self.state.resources.items():
            if "/subnetworks/" in path and short(other.get("region")) == region and other.get("network") == \
                    network["selfLink"]:
                raise invalid("Invalid value for field 'resource.ipCidrRange': '%s'. It conflicts with subnetwork "
                              "'%s' of the same network." % (wanted, other["name"]))
        body.update(network=network["selfLink"], ipCidrRange=str(wanted), gatewayAddress=catalog.gateway(region),
                    region=self.state.link("regions/%s" % region), stackType="IPV4_ONLY",
                    fingerprint=fingerprint(str(wanted)))
        return body

    def _store_subnetwork(self, region: str, body: dict[str, t.Any]) -> None:
        path = "regions/%s/subnetworks/%s" % (region, body["name"])
        resource = self._subnetwork_body(region, dict(body))
        resource.update(kind="compute#subnetwork", id=self.state.new_id(), creationTimestamp=now_rfc3339(),
                        selfLink=self.state.link(path))
        self.state.resources[path] = resource

    def m_subnetworks_insert(self, params, query, body, user):
        return self._insert("subnetworks", params, body, user,
                            lambda path, b: self._subnetwork_body(params["region"], b))

    def deletable_subnetworks(self, path: str, resource: dict[str, t.Any]) -> None:
        for other, used in self.state.resources.items():
            if any(n.get("subnetwork") == resource["selfLink"] for n in used.get("networkInterfaces") or []):
                raise in_use(self.state.full(path), self.state.full(other))

    # -- addresses ---------------------------------------------------------------------------------
    def _used_external_ips(self) -> set[str]:
        used = set()
        for path, resource in self.state.resources.items():
            if "/addresses/" in path and resource.get("addressType", "EXTERNAL") == "EXTERNAL":
                used.add(resource["address"])
            if "/instances/" in path:
                for nic in resource.get("networkInterfaces") or []:
                    for config in nic.get("accessConfigs") or []:
                        if config.get("natIP"):
                            used.add(config["natIP"])
        return used

    def _free_external_ip(self) -> str:
        used = self._used_external_ips()
        for host in ipaddress.ip_network(catalog.EXTERNAL_RANGE).hosts():
            if str(host) not in used and not str(host).endswith(".1"):
                return str(host)
        raise ApiError(403, "quotaExceeded", "Quota 'IN_USE_ADDRESSES' exceeded. Limit: 250.0 in region.")

    def m_addresses_insert(self, params, query, body, user):
        return self._insert("addresses", params, body, user, lambda path, b: self._build_address(path, b, params["region"]))

    def m_globalAddresses_insert(self, params, query, body, user):
        return self._insert("globalAddresses", params, body, user, lambda path, b: self._build_address(path, b, None))

    def _build_address(self, path: str, body: dict[str, t.Any], region: str | None) -> dict[str, t.Any]:
        kind = body.get("addressType", "EXTERNAL")
        if kind == "INTERNAL":
            if region is None:
                raise invalid("Invalid value for field 'resource.addressType': 'INTERNAL'. Global internal addresses "
                              "need a purpose.")
            ip = body.get("address") or self._free_internal_ip(region)
            if ipaddress.ip_address(ip) not in catalog.subnet_range(region):
                raise invalid("Invalid value for field 'resource.address': '%s'. Requested internal IP is outside the "
                              "subnetwork CIDR range." % ip)
        else:
            ip = body.get("address")
            if ip:
                if ipaddress.ip_address(ip) not in ipaddress.ip_network(catalog.EXTERNAL_RANGE):
                    raise invalid("Invalid value for field 'resource.address': '%s'. Specified IP address is not "
                                  "available." % ip)
                if ip in self._used_external_ips():
                    raise ApiError(400, "resourceInUseByAnotherResource",
                                   "Invalid value for field 'resource.address': '%s'. Specified IP address is in-use and "
                                   "would result in a conflict." % ip)
            else:
                ip = self._free_external_ip()
        body.update(address=ip, addressType=kind, status="RESERVED", users=[], networkTier=body.get("networkTier", "PREMIUM"))
        if region:
            body["region"] = self.state.link("regions/%s" % region)
        if kind == "INTERNAL":
            body["subnetwork"] = self.state.link("regions/%s/subnetworks/default" % region)
            body["purpose"] = body.get("purpose", "GCE_ENDPOINT")
        return body

    def deletable_addresses(self, path: str, resource: dict[str, t.Any]) -> None:
        if resource.get("users"):
            raise in_use(self.state.full(path), _full_from_link(resource["users"][0]))

    deletable_globalAddresses = deletable_addresses

    def m_addresses_setLabels(self, params, query, body, user):
        # An address gets its labels (or new ones) only through setLabels, with its current labelFingerprint.
        path = "regions/%s/addresses/%s" % (params["region"], params["resource"])
        return self._set_labels("addresses", params, path, body, user)

    # -- disks -------------------------------------------------------------------------------------
    def m_disks_insert(self, params, query, body, user):
        return self._insert("disks", params, body, user, lambda path, b: self._build_disk(params["zone"], b, "resource"))

    def _build_disk(self, zone: str, body: dict[str, t.Any], where: str) -> dict[str, t.Any]:
        kind = short(body.get("type")) or "pd-standard"
        if body.get("type"):
            self._ref_in_zone(body["type"], "diskTypes", zone, "%s.type" % where)
        if kind not in catalog.DISK_TYPES:
            raise invalid("Invalid value for field '%s.type': '%s'. The referenced diskType resource cannot be found."
                          % (where, body.get("type")))
        image = None
        if body.get("sourceImage"):
            image = self.resolve_image(body["sourceImage"], "%s.sourceImage" % where)
        size = int(body.get("sizeGb") or (10 if image else 500))
        if size < 10:
            raise invalid("Invalid value for field '%s.sizeGb': '%d'. Disk size cannot be smaller than 10 GB." % (where, size))
        if size > 65536:
            raise invalid("Invalid value for field '%s.sizeGb': '%d'. Disk size cannot be larger than 65536 GB." % (where, size))
        body.update(sizeGb=str(size), zone=self.state.link("zones/%s" % zone), status="CREATING", users=[],
                    type=self.state.link("zones/%s/diskTypes/%s" % (zone, kind)), physicalBlockSizeBytes="4096")
        if image:
            body["sourceImage"] = image
            body["sourceImageId"] = catalog.stable_id(short(image))
        return body

    def finish_disks(self, path: str, disk: dict[str, t.Any]) -> None:
        self.backend.disk_created(disk)
        with self.state.lock:
            if self.state.get(path) is disk:
                disk["status"] = "READY"
                self.state.save()

    def deletable_disks(self, path: str, resource: dict[str, t.Any]) -> None:
        """Attached disks are refused by generic_delete through ``users``."""

    def m_disks_setLabels(self, params, query, body, user):
        path = "zones/%s/disks/%s" % (params["zone"], params["resource"])
        return self._set_labels("disks", params, path, body, user)

    def _set_labels(self, collection: str, params: t.Mapping[str, str], path: str, body: dict[str, t.Any],
                    user: str) -> dict[str, t.Any]:
        resource = self.state.require(path)
        self._check_labels(body.get("labels") or {}, "resource.labels")
        if body.get("labelFingerprint") != resource.get("labelFingerprint"):
            raise stale_fingerprint("label")
        return self._op(collection, params, "setLabels", path, user, "set_labels", labels=body.get("labels") or {},
                        expected=body.get("labelFingerprint"))

    def s_set_labels(self, path: str, labels: dict[str, str], expected: str | None = None) -> None:
        # The fingerprint is checked again when the change is made: of two calls that gave the same fingerprint
        # while neither was made yet, the second fails (its operation ends with CONDITION_NOT_MET), so setLabels
        # is a compare-and-swap.
        with self.state.lock:
            resource = self.state.get(path)
            if resource is not None:
                if expected is not None and resource.get("labelFingerprint") != expected:
                    raise stale_fingerprint("label")
                resource["labels"] = labels
                resource["labelFingerprint"] = fingerprint(labels)
                self.state.save()

    # -- instances ---------------------------------------------------------------------------------
    def m_instances_insert(self, params, query, body, user):
        zone = params["zone"]
        return self._insert("instances", params, body, user, lambda path, b: self._build_instance(zone, path, b))

    def _build_instance(self, zone: str, path: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        region = catalog.region_of_zone(zone) or ""
        state = self.state
        machine = body.get("machineType")
        if not machine:
            raise invalid("Required field 'resource.machineType' not specified")
        self._ref_in_zone(machine, "machineTypes", zone, "resource.machineType")
        if short(machine) not in catalog.MACHINE_TYPES:
            raise invalid("Invalid value for field 'resource.machineType': '%s'. Machine type with name '%s' does not "
                          "exist in zone '%s'." % (machine, short(machine), zone))
        body["machineType"] = state.link("zones/%s/machineTypes/%s" % (zone, short(machine)))
        disks = body.get("disks") or []
        if sum(1 for d in disks if d.get("boot")) != 1:
            raise invalid("Invalid value for field 'resource.disks': ''. Exactly one boot disk must be specified.")
        if disks and not disks[0].get("boot"):
            raise invalid("Invalid value for field 'resource.disks[0].boot': 'false'. The boot disk must be the first disk.")
        attached = []
        new_disks = []
        names_seen: set[str] = set()
        for index, disk in enumerate(disks):
            where = "resource.disks[%d]" % index
            device = disk.get("deviceName") or "persistent-disk-%d" % index
            if device in names_seen:
                raise invalid("Invalid value for field '%s.deviceName': '%s'. Device names must be unique." % (where, device))
            names_seen.add(device)
            if disk.get("source") and disk.get("initializeParams"):
                raise invalid("Invalid value for field '%s': ''. Source and initializeParams are mutually exclusive." % where)
            if disk.get("source"):
                disk_path = state.parse_ref(disk["source"], "disks", "%s.source" % where, "zones/%s" % zone)
                if not disk_path.startswith("zones/%s/" % zone):
                    raise invalid("Invalid value for field '%s.source': '%s'. Disk must be in the same zone as the "
                                  "instance." % (where, disk["source"]))
                existing = state.get(disk_path)
                if existing is None:
                    raise invalid("Invalid value for field '%s.source': '%s'. The referenced disk resource cannot be "
                                  "found." % (where, disk["source"]))
                if disk.get("mode", "READ_WRITE") == "READ_WRITE" and existing.get("users"):
                    raise in_use(state.full(disk_path), _full_from_link(existing["users"][0]))
            elif disk.get("initializeParams"):
                init = disk["initializeParams"]
                disk_name = init.get("diskName") or path.rsplit("/", 1)[-1]
                disk_path = "zones/%s/disks/%s" % (zone, disk_name)
                if state.get(disk_path) is not None:
                    raise already_exists(state.full(disk_path))
                if not init.get("sourceImage") and disk.get("boot"):
                    raise invalid("Invalid value for field '%s.initializeParams.sourceImage': ''. Source image must be "
                                  "specified." % where)
                spec = {"name": disk_name, "sizeGb": init.get("diskSizeGb"), "type": init.get("diskType"),
                        "sourceImage": init.get("sourceImage"), "labels": init.get("labels") or {}}
                self._check_labels(spec["labels"], "%s.initializeParams.labels" % where)
                new_disks.append((disk_path, self._build_disk(zone, {k: v for k, v in spec.items() if v}, "%s.initializeParams" % where)))
            else:
                raise invalid("Invalid value for field '%s': ''. A source or initializeParams is required." % where)
            attached.append({"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": disk.get("mode", "READ_WRITE"),
                             "source": state.link(disk_path), "deviceName": device, "index": index,
                             "boot": bool(disk.get("boot")), "autoDelete": bool(disk.get("autoDelete", False)),
                             "interface": disk.get("interface", "SCSI")})
        nics = body.get("networkInterfaces") or []
        if len(nics) != 1:
            raise invalid("Invalid value for field 'resource.networkInterfaces': ''. The lab supports exactly one "
                          "network interface.")
        nic = nics[0]
        network = self._network_of(nic.get("network") or "global/networks/default",
                                   "resource.networkInterfaces[0].network")
        if nic.get("subnetwork"):
            sub_path = state.parse_ref(nic["subnetwork"], "subnetworks", "resource.networkInterfaces[0].subnetwork",
                                       "regions/%s" % region)
            subnetwork = state.get(sub_path)
            if subnetwork is None or not sub_path.startswith("regions/%s/" % region):
                raise invalid("Invalid value for field 'resource.networkInterfaces[0].subnetwork': '%s'. The "
                              "referenced subnetwork resource cannot be found in region %s." % (nic["subnetwork"], region))
            if subnetwork.get("network") != network["selfLink"]:
                raise invalid("Invalid value for field 'resource.networkInterfaces[0].subnetwork': '%s'. Subnetwork "
                              "must belong to network '%s'." % (nic["subnetwork"], network["name"]))
        elif network.get("autoCreateSubnetworks"):
            subnetwork = state.require("regions/%s/subnetworks/%s" % (region, network["name"]))
        else:
            raise invalid("Invalid value for field 'resource.networkInterfaces[0].subnetwork': ''. Subnetwork should "
                          "be specified for custom subnetmode network")
        ip = nic.get("networkIP") or self._free_internal_ip(region)
        if ipaddress.ip_address(ip) not in catalog.subnet_range(region) or ip in self._used_internal_ips(region):
            raise invalid("Invalid value for field 'resource.networkInterfaces[0].networkIP': '%s'. Requested internal "
                          "IP is outside the subnetwork CIDR range or in use." % ip)
        configs = []
        for index, config in enumerate(nic.get("accessConfigs") or []):
            configs.append(self._access_config(config, region, "resource.networkInterfaces[0].accessConfigs[%d]" % index,
                                               path))
        body["networkInterfaces"] = [{
            "kind": "compute#networkInterface", "name": "nic0", "network": network["selfLink"],
            "subnetwork": subnetwork["selfLink"], "networkIP": ip,
            "fingerprint": fingerprint(ip), "stackType": "IPV4_ONLY", "accessConfigs": configs,
        }]
        if not configs:
            body["networkInterfaces"][0].pop("accessConfigs")
        for disk_path, disk in new_disks:
            disk.update(id=state.new_id(), creationTimestamp=now_rfc3339(), selfLink=state.link(disk_path),
                        labelFingerprint=fingerprint(disk.get("labels") or {}), kind="compute#disk")
            disk.setdefault("labels", {})
            state.resources[disk_path] = disk
        for disk in attached:
            disk_resource = state.get(_rel(disk["source"], state.project))
            disk_resource.setdefault("users", []).append(state.link(path))
        for config in configs:
            self._claim_address(config.get("natIP"), region, state.link(path))
        items = (body.get("metadata") or {}).get("items") or []
        metadata_items = [{"key": i["key"], "value": i.get("value", "")} for i in items]
        tags = sorted(set((body.get("tags") or {}).get("items") or []))
        for tag in tags:
            if not re.fullmatch(NAME, tag):
                raise invalid("Invalid value for field 'resource.tags.items[0]': '%s'. Must be a match of regex '%s'"
                              % (tag, NAME))
        accounts = []
        for account in body.get("serviceAccounts") or []:
            email = account.get("email") or "default"
            if email == "default":
                email = "%s-compute@developer.gserviceaccount.com" % PROJECT_NUMBER
            accounts.append({"email": email, "scopes": list(account.get("scopes") or [])})
        body.update(
            zone=state.link("zones/%s" % zone), status="PROVISIONING", disks=attached, serviceAccounts=accounts,
            metadata={"kind": "compute#metadata", "items": metadata_items, "fingerprint": fingerprint(metadata_items)},
            tags={"items": tags, "fingerprint": fingerprint(tags)}, cpuPlatform="Intel Broadwell",
            scheduling={"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False,
                        "provisioningModel": "STANDARD"},
            canIpForward=bool(body.get("canIpForward", False)), deletionProtection=bool(body.get("deletionProtection", False)),
            fingerprint=fingerprint(path), startRestricted=False,
        )
        if not metadata_items:
            body["metadata"].pop("items")
        if not tags:
            body["tags"].pop("items")
        return body

    def _ref_in_zone(self, value: str, collection: str, zone: str, where: str) -> None:
        path = self.state.parse_ref(value, collection, where, "zones/%s" % zone)
        if not path.startswith("zones/%s/" % zone):
            raise invalid("Invalid value for field '%s': '%s'. Resource must be in zone %s." % (where, value, zone))

    def _used_internal_ips(self, region: str) -> set[str]:
        used = set()
        for path, resource in self.state.resources.items():
            if "/instances/" in path:
                used.update(n.get("networkIP") for n in resource.get("networkInterfaces") or [])
            if "/addresses/" in path and resource.get("addressType") == "INTERNAL":
                used.add(resource["address"])
        return used

    def _free_internal_ip(self, region: str) -> str:
        used = self._used_internal_ips(region)
        for host in list(catalog.subnet_range(region).hosts())[1:]:
            if str(host) not in used:
                return str(host)
        raise ApiError(400, "ipSpaceExhausted", "IP space of subnetwork default in region %s is exhausted." % region)

    def _access_config(self, config: dict[str, t.Any], region: str, where: str, instance_path: str) -> dict[str, t.Any]:
        if config.get("type", "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
            raise invalid("Invalid value for field '%s.type': '%s'." % (where, config.get("type")))
        nat_ip = config.get("natIP")
        if nat_ip:
            address = self._address_by_ip(nat_ip)
            if address is None or address.get("addressType", "EXTERNAL") != "EXTERNAL":
                raise invalid("Invalid value for field '%s.natIP': '%s'. The specified external IP address '%s' was not "
                              "found in region '%s'." % (where, nat_ip, nat_ip, region))
            if short(address.get("region")) != region:
                raise invalid("Invalid value for field '%s.natIP': '%s'. The specified external IP address '%s' was not "
                              "found in region '%s'." % (where, nat_ip, nat_ip, region))
            users = [u for u in address.get("users") or [] if u != self.state.link(instance_path)]
            if users:
                raise ApiError(400, "resourceInUseByAnotherResource",
                               "Invalid value for field '%s.natIP': '%s'. The IP address is already being used by '%s'."
                               % (where, nat_ip, _full_from_link(users[0])))
        else:
            nat_ip = self._free_external_ip()
        return {"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT", "name": config.get("name") or "External NAT",
                "natIP": nat_ip, "networkTier": config.get("networkTier", "PREMIUM")}

    def _address_by_ip(self, ip: str) -> dict[str, t.Any] | None:
        for path, resource in self.state.resources.items():
            if "/addresses/" in path and resource.get("address") == ip:
                return resource
        return None

    def _claim_address(self, ip: str | None, region: str, user_link: str) -> None:
        address = self._address_by_ip(ip) if ip else None
        if address is not None and user_link not in address.get("users", []):
            address.setdefault("users", []).append(user_link)
            address["status"] = "IN_USE"

    def _release_address(self, ip: str | None, user_link: str) -> None:
        address = self._address_by_ip(ip) if ip else None
        if address is not None:
            address["users"] = [u for u in address.get("users") or [] if u != user_link]
            if not address["users"]:
                address["status"] = "RESERVED"

    def finish_instances(self, path: str, instance: dict[str, t.Any]) -> None:
        with self.state.lock:
            new_disks = [d for d in (self.state.get(_rel(a["source"], self.state.project)) for a in instance.get("disks") or [])
                         if d is not None and d.get("status") == "CREATING"]
        for disk in new_disks:
            self.backend.disk_created(disk)
        with self.state.lock:
            for disk in new_disks:
                disk["status"] = "READY"
            instance["status"] = "STAGING"
            self.state.save()
        self._boot(path, instance)

    def _disks_of(self, instance: t.Mapping[str, t.Any]) -> dict[str, dict[str, t.Any]]:
        found = {}
        for attached in instance.get("disks") or []:
            disk = self.state.get(_rel(attached["source"], self.state.project))
            if disk is not None:
                found[attached["deviceName"]] = dict(disk, boot=attached.get("boot", False))
        return found

    def _boot(self, path: str, instance: dict[str, t.Any]) -> None:
        with self.state.lock:
            disks = self._disks_of(instance)
        self._network_changed()
        self.backend.instance_started(instance, disks)
        with self.state.lock:
            if self.state.get(path) is instance:
                instance["status"] = "RUNNING"
                instance["lastStartTimestamp"] = now_rfc3339()
                for attached in instance.get("disks") or []:
                    disk = self.state.get(_rel(attached["source"], self.state.project))
                    if disk is not None:
                        disk["lastAttachTimestamp"] = now_rfc3339()
                self.state.save()
        self._network_changed()

    def after_delete_instances(self, path: str, instance: dict[str, t.Any]) -> None:
        link = self.state.link(path)
        for attached in instance.get("disks") or []:
            disk_path = _rel(attached["source"], self.state.project)
            disk = self.state.get(disk_path)
            if disk is None:
                continue
            disk["users"] = [u for u in disk.get("users") or [] if u != link]
            disk["lastDetachTimestamp"] = now_rfc3339()
            if attached.get("autoDelete") and not disk["users"]:
                self.state.resources.pop(disk_path)
                self.backend.disk_deleted(disk)
        for nic in instance.get("networkInterfaces") or []:
            for config in nic.get("accessConfigs") or []:
                self._release_address(config.get("natIP"), link)
        for path_, resource in self.state.resources.items():
            if "/targetPools/" in path_ and link in (resource.get("instances") or []):
                resource["instances"].remove(link)
            if "/instanceGroups/" in path_ and link in self._members(path_):
                self.state.data["group_members"][path_].remove(link)
                resource["size"] = len(self._members(path_))

    def deletable_instances(self, path: str, resource: dict[str, t.Any]) -> None:
        if resource.get("deletionProtection"):
            raise ApiError(400, "resourceIsProtected", "The instance '%s' is protected from deletion." % path)

    def _instance(self, params: t.Mapping[str, str]) -> tuple[str, dict[str, t.Any]]:
        path = "zones/%s/instances/%s" % (params["zone"], params["instance"])
        return path, self.state.require(path)

    def m_instances_setMetadata(self, params, query, body, user):
        path, instance = self._instance(params)
        if body.get("fingerprint") != instance["metadata"].get("fingerprint"):
            raise stale_fingerprint("metadata")
        items = []
        seen = set()
        for index, item in enumerate(body.get("items") or []):
            key = item.get("key") or ""
            if not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", key):
                raise invalid("Invalid value for field 'resource.items[%d].key': '%s'. Must be a match of regex "
                              "'[a-zA-Z0-9-_]{1,128}'" % (index, key))
            if key in seen:
                raise invalid("Invalid value for field 'resource.items[%d].key': '%s'. Duplicate keys are not allowed."
                              % (index, key))
            seen.add(key)
            items.append({"key": key, "value": item.get("value", "")})
        return self._op("instances", params, "setMetadata", path, user, "set_metadata", items=items)

    def s_set_metadata(self, path: str, items: list[dict[str, str]]) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            if instance is not None:
                instance["metadata"] = {"kind": "compute#metadata", "fingerprint": fingerprint(items)}
                if items:
                    instance["metadata"]["items"] = items
                self.state.save()

    def m_instances_setLabels(self, params, query, body, user):
        path, _instance = self._instance(params)
        return self._set_labels("instances", params, path, body, user)

    def m_instances_setTags(self, params, query, body, user):
        path, instance = self._instance(params)
        if body.get("fingerprint") != instance["tags"].get("fingerprint"):
            raise stale_fingerprint("tags")
        tags = sorted(set(body.get("items") or []))
        for index, tag in enumerate(tags):
            if not re.fullmatch(NAME, tag):
                raise invalid("Invalid value for field 'resource.items[%d]': '%s'. Must be a match of regex '%s'"
                              % (index, tag, NAME))
        return self._op("instances", params, "setTags", path, user, "set_tags", tags=tags)

    def s_set_tags(self, path: str, tags: list[str]) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            if instance is not None:
                instance["tags"] = {"fingerprint": fingerprint(tags)}
                if tags:
                    instance["tags"]["items"] = tags
                self.state.save()
        self._network_changed()

    def m_instances_addAccessConfig(self, params, query, body, user):
        path, instance = self._instance(params)
        nic = self._nic(instance, query["networkInterface"])
        if nic.get("accessConfigs"):
            raise invalid("Invalid value for field 'resource.accessConfigs': ''. At most one access config currently "
                          "supported.")
        region = catalog.region_of_zone(params["zone"]) or ""
        config = self._access_config(body, region, "resource", path)
        return self._op("instances", params, "addAccessConfig", path, user, "add_access_config", config=config)

    def s_add_access_config(self, path: str, config: dict[str, t.Any]) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            if instance is None:
                return
            nic = instance["networkInterfaces"][0]
            if self._address_by_ip(config["natIP"]) is not None:
                address = self._address_by_ip(config["natIP"])
                users = [u for u in address.get("users") or [] if u != instance["selfLink"]]
                if users:
                    raise ApiError(400, "resourceInUseByAnotherResource", "The IP address '%s' is already being used "
                                   "by '%s'." % (config["natIP"], _full_from_link(users[0])))
            elif config["natIP"] in self._used_external_ips():
                config["natIP"] = self._free_external_ip()
            nic["accessConfigs"] = [config]
            self._claim_address(config["natIP"], "", instance["selfLink"])
            nic["fingerprint"] = fingerprint(nic["accessConfigs"])
            self.state.save()
        self._network_changed()

    def m_instances_deleteAccessConfig(self, params, query, body, user):
        path, instance = self._instance(params)
        nic = self._nic(instance, query["networkInterface"])
        if not any(c.get("name") == query["accessConfig"] for c in nic.get("accessConfigs") or []):
            raise invalid("Invalid value for field 'accessConfig': '%s'. The access config does not exist."
                          % query["accessConfig"])
        return self._op("instances", params, "deleteAccessConfig", path, user, "delete_access_config",
                        name=query["accessConfig"])

    def s_delete_access_config(self, path: str, name: str) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            if instance is None:
                return
            nic = instance["networkInterfaces"][0]
            keep = []
            for config in nic.get("accessConfigs") or []:
                if config.get("name") == name:
                    self._release_address(config.get("natIP"), instance["selfLink"])
                else:
                    keep.append(config)
            nic["accessConfigs"] = keep
            if not keep:
                nic.pop("accessConfigs")
            nic["fingerprint"] = fingerprint(keep)
            self.state.save()
        self._network_changed()

    @staticmethod
    def _nic(instance: dict[str, t.Any], name: str) -> dict[str, t.Any]:
        for nic in instance.get("networkInterfaces") or []:
            if nic.get("name") == name:
                return nic
        raise invalid("Invalid value for field 'networkInterface': '%s'. The network interface does not exist." % name)

    def m_instances_attachDisk(self, params, query, body, user):
        path, instance = self._instance(params)
        zone = params["zone"]
        if not body.get("source"):
            raise invalid("Invalid value for field 'resource.source': ''. Source must be specified.")
        disk_path = self.state.parse_ref(body["source"], "disks", "resource.source", "zones/%s" % zone)
        if not disk_path.startswith("zones/%s/" % zone):
            raise invalid("Invalid value for field 'resource.source': '%s'. Disk must be in the same zone as the "
                          "instance." % body["source"])
        disk = self.state.get(disk_path)
        if disk is None:
            raise ApiError(404, "notFound", "The resource '%s' was not found" % self.state.full(disk_path))
        link = self.state.link(path)
        if any(d["source"] == self.state.link(disk_path) for d in instance.get("disks") or []):
            raise invalid("Invalid value for field 'resource.source': '%s'. The disk is already attached to the "
                          "instance." % body["source"])
        others = [u for u in disk.get("users") or [] if u != link]
        if body.get("mode", "READ_WRITE") == "READ_WRITE" and others:
            raise in_use(self.state.full(disk_path), _full_from_link(others[0]))
        index = len(instance.get("disks") or [])
        device = body.get("deviceName") or "persistent-disk-%d" % index
        if any(d.get("deviceName") == device for d in instance.get("disks") or []):
            raise invalid("Invalid value for field 'resource.deviceName': '%s'. Device names must be unique." % device)
        attached = {"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": body.get("mode", "READ_WRITE"),
                    "source": self.state.link(disk_path), "deviceName": device, "index": index, "boot": False,
                    "autoDelete": bool(body.get("autoDelete", False)), "interface": body.get("interface", "SCSI")}
        disk.setdefault("users", []).append(link)
        return self._op("instances", params, "attachDisk", path, user, "attach_disk", attached=attached)

    def s_attach_disk(self, path: str, attached: dict[str, t.Any]) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            disk = self.state.get(_rel(attached["source"], self.state.project))
            if instance is None or disk is None:
                return
        self.backend.disk_attached(instance, attached["deviceName"], disk)
        with self.state.lock:
            instance.setdefault("disks", []).append(attached)
            disk["lastAttachTimestamp"] = now_rfc3339()
            self.state.save()

    def m_instances_detachDisk(self, params, query, body, user):
        path, instance = self._instance(params)
        device = query["deviceName"]
        attached = next((d for d in instance.get("disks") or [] if d.get("deviceName") == device), None)
        if attached is None:
            raise invalid("Invalid value for field 'deviceName': '%s'. No attached disk found with device name '%s'"
                          % (device, device))
        if attached.get("boot"):
            raise invalid("Invalid value for field 'deviceName': '%s'. The boot disk cannot be detached." % device)
        return self._op("instances", params, "detachDisk", path, user, "detach_disk", device=device)

    def s_detach_disk(self, path: str, device: str) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            if instance is None:
                return
        self.backend.disk_detached(instance, device)
        with self.state.lock:
            keep = []
            for attached in instance.get("disks") or []:
                if attached.get("deviceName") == device:
                    disk = self.state.get(_rel(attached["source"], self.state.project))
                    if disk is not None:
                        disk["users"] = [u for u in disk.get("users") or [] if u != instance["selfLink"]]
                        disk["lastDetachTimestamp"] = now_rfc3339()
                else:
                    keep.append(attached)
            instance["disks"] = keep
            self.state.save()

    def m_instances_stop(self, params, query, body, user):
        path, _instance = self._instance(params)
        return self._op("instances", params, "stop", path, user, "stop")

    def s_stop(self, path: str) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            if instance is None or instance["status"] == "TERMINATED":
                return
            instance["status"] = "STOPPING"
            self.state.save()
        self.backend.instance_stopped(instance)
        with self.state.lock:
            instance["status"] = "TERMINATED"
            instance["lastStopTimestamp"] = now_rfc3339()
            # An ephemeral external IP is given back when the instance stops.
            nic = instance["networkInterfaces"][0]
            for config in nic.get("accessConfigs") or []:
                if self._address_by_ip(config.get("natIP")) is None:
                    config.pop("natIP", None)
            self.state.save()
        self._network_changed()

    def m_instances_start(self, params, query, body, user):
        path, _instance = self._instance(params)
        return self._op("instances", params, "start", path, user, "start")

    def s_start(self, path: str) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            if instance is None or instance["status"] == "RUNNING":
                return
            nic = instance["networkInterfaces"][0]
            for config in nic.get("accessConfigs") or []:
                if not config.get("natIP"):
                    config["natIP"] = self._free_external_ip()
            instance["status"] = "STAGING"
            self.state.save()
        self._boot(path, instance)

    def m_instances_reset(self, params, query, body, user):
        path, instance = self._instance(params)
        if instance["status"] != "RUNNING":
            raise ApiError(400, "resourceNotReady", "The resource '%s' is not ready" % self.state.full(path))
        return self._op("instances", params, "reset", path, user, "reset")

    def s_reset(self, path: str) -> None:
        with self.state.lock:
            instance = self.state.get(path)
            if instance is None:
                return
        self.backend.instance_stopped(instance)
        self._boot(path, instance)

    # -- firewalls, health checks --------------------------------------------------------------------
    def m_firewalls_insert(self, params, query, body, user):
        return self._insert("firewalls", params, body, user, self._build_firewall)

    def _build_firewall(self, path: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        if bool(body.get("allowed")) == bool(body.get("denied")):
            raise invalid("Invalid value for field 'resource': ''. Exactly one of 'allowed' or 'denied' must be set.")
        direction = body.get("direction", "INGRESS")
        for index, rule in enumerate(body.get("allowed") or body.get("denied") or []):
            protocol = rule.get("IPProtocol", "")
            if protocol not in ("tcp", "udp", "icmp", "all", "sctp", "esp", "ah") and not protocol.isdigit():
                raise invalid("Invalid value for field 'resource.allowed[%d].IPProtocol': '%s'." % (index, protocol))
            for port in rule.get("ports") or []:
                if protocol not in ("tcp", "udp", "sctp") or not re.fullmatch(r"\d+(-\d+)?", port):
                    raise invalid("Invalid value for field 'resource.allowed[%d].ports': '%s'." % (index, port))
        for cidr in body.get("sourceRanges") or []:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise invalid("Invalid value for field 'resource.sourceRanges': '%s'. Must be a CIDR." % cidr) from None
        if direction == "INGRESS" and not body.get("sourceRanges") and not body.get("sourceTags") \
                and not body.get("sourceServiceAccounts"):
            body["sourceRanges"] = ["0.0.0.0/0"]
        network = self._network_of(body.get("network") or "global/networks/default", "resource.network")
        body.update(direction=direction, priority=int(body.get("priority", 1000)), disabled=bool(body.get("disabled", False)),
                    network=network["selfLink"], logConfig={"enable": False})
        if direction == "EGRESS" and not body.get("destinationRanges"):
            body["destinationRanges"] = ["0.0.0.0/0"]
        return body

    def m_firewalls_patch(self, params, query, body, user):
        path = "global/firewalls/%s" % params["firewall"]
        firewall = self.state.require(path)
        merged = copy.deepcopy(firewall)
        merged.update({k: v for k, v in body.items() if k not in ("name", "id", "selfLink", "creationTimestamp", "kind")})
        if "allowed" in body:
            merged.pop("denied", None)
        if "denied" in body:
            merged.pop("allowed", None)
        self._build_firewall(path, merged)
        return self._op("firewalls", params, "patch", path, user, "replace", resource=merged)

    def m_firewalls_update(self, params, query, body, user):
        path = "global/firewalls/%s" % params["firewall"]
        firewall = self.state.require(path)
        merged = self._build_firewall(path, copy.deepcopy(body))
        merged.update(id=firewall["id"], name=firewall["name"], selfLink=firewall["selfLink"],
                      creationTimestamp=firewall["creationTimestamp"], kind="compute#firewall")
        return self._op("firewalls", params, "update", path, user, "replace", resource=merged)

    def s_replace(self, path: str, resource: dict[str, t.Any]) -> None:
        with self.state.lock:
            if self.state.get(path) is not None:
                if "fingerprint" in resource:
                    resource["fingerprint"] = fingerprint({k: v for k, v in resource.items() if k != "fingerprint"})
                self.state.resources[path] = resource
                self.state.save()
        self._network_changed()

    def m_httpHealthChecks_insert(self, params, query, body, user):
        return self._insert("httpHealthChecks", params, body, user, lambda path, b: self._build_http_check(b))

    @staticmethod
    def _build_http_check(b: dict[str, t.Any]) -> dict[str, t.Any]:
        b.update(port=int(b.get("port", 80)), requestPath=b.get("requestPath", "/"), checkIntervalSec=int(
            b.get("checkIntervalSec", 5)), timeoutSec=int(b.get("timeoutSec", 5)), unhealthyThreshold=int(
            b.get("unhealthyThreshold", 2)), healthyThreshold=int(b.get("healthyThreshold", 2)))
        if b["timeoutSec"] > b["checkIntervalSec"]:
            raise invalid("Invalid value for field 'resource.timeoutSec': '%d'. TimeoutSec should be less than or "
                          "equal to checkIntervalSec." % b["timeoutSec"])
        return b

    def m_regionHealthChecks_insert(self, params, query, body, user):
        region = params["region"]
        return self._insert("regionHealthChecks", params, body, user,
                            lambda path, b: self._build_region_check(region, b))

    def _build_region_check(self, region: str, b: dict[str, t.Any]) -> dict[str, t.Any]:
        kind = b.get("type")
        if kind not in ("TCP", "HTTP", "HTTPS", "SSL", "HTTP2"):
            raise invalid("Invalid value for field 'resource.type': '%s'. Health check type must be specified." % kind)
        field = CHECK_FIELDS[kind]
        for other in set(CHECK_FIELDS.values()) - {field}:
            if other in b:
                raise invalid("Invalid value for field 'resource.%s': ''. It does not match the health check type %s."
                              % (other, kind))
        details = b.setdefault(field, {})
        details.setdefault("port", 443 if kind in ("HTTPS", "SSL", "HTTP2") else 80)
        if kind in ("HTTP", "HTTPS", "HTTP2"):
            details.setdefault("requestPath", "/")
        details.setdefault("proxyHeader", "NONE")
        b.update(region=self.state.link("regions/%s" % region), checkIntervalSec=int(b.get("checkIntervalSec", 5)),
                 timeoutSec=int(b.get("timeoutSec", 5)), unhealthyThreshold=int(b.get("unhealthyThreshold", 2)),
                 healthyThreshold=int(b.get("healthyThreshold", 2)))
        if b["timeoutSec"] > b["checkIntervalSec"]:
            raise invalid("Invalid value for field 'resource.timeoutSec': '%d'. TimeoutSec should be less than or "
                          "equal to checkIntervalSec." % b["timeoutSec"])
        return b

    def _replace_check(self, collection: str, path: str, params: t.Mapping[str, str], body: dict[str, t.Any],
                       user: str, op_type: str, build: t.Callable[[dict[str, t.Any]], dict[str, t.Any]]) -> dict[str, t.Any]:
        current = self.state.require(path)
        fixed = ("name", "id", "selfLink", "kind", "creationTimestamp", "region")
        if op_type == "patch":
            merged = copy.deepcopy(current)
            merged.update({k: v for k, v in body.items() if k not in fixed})
        else:
            merged = {k: v for k, v in copy.deepcopy(body).items() if k not in fixed}
        merged = build(merged)
        merged.update({k: current[k] for k in fixed if k in current})
        return self._op(collection, params, op_type, path, user, "replace", resource=merged)

    def m_httpHealthChecks_update(self, params, query, body, user):
        return self._replace_check("httpHealthChecks", "global/httpHealthChecks/%s" % params["httpHealthCheck"],
                                   params, body, user, "update", self._build_http_check)

    def m_httpHealthChecks_patch(self, params, query, body, user):
        return self._replace_check("httpHealthChecks", "global/httpHealthChecks/%s" % params["httpHealthCheck"],
                                   params, body, user, "patch", self._build_http_check)

    def m_regionHealthChecks_update(self, params, query, body, user):
        return self._replace_check("regionHealthChecks", "regions/%s/healthChecks/%s" % (params["region"], params["healthCheck"]),
                                   params, body, user, "update", lambda b: self._build_region_check(params["region"], b))

    def m_regionHealthChecks_patch(self, params, query, body, user):
        return self._replace_check("regionHealthChecks", "regions/%s/healthChecks/%s" % (params["region"], params["healthCheck"]),
                                   params, body, user, "patch", lambda b: self._build_region_check(params["region"], b))

    def deletable_httpHealthChecks(self, path: str, resource: dict[str, t.Any]) -> None:
        self._not_referenced(path, "healthChecks")

    deletable_regionHealthChecks = deletable_httpHealthChecks

    def _not_referenced(self, path: str, field: str) -> None:
        link = self.state.link(path)
        for other_path, other in self.state.resources.items():
            if link in (other.get(field) or []):
                raise in_use(self.state.full(path), self.state.full(other_path))

    # -- target pools --------------------------------------------------------------------------------
    def m_targetPools_insert(self, params, query, body, user):
        region = params["region"]

        def build(path, b):
            b["instances"] = [self._instance_in_region(i, region, "resource.instances") for i in b.get("instances") or []]
            b["healthChecks"] = [self._ref_global(h, "httpHealthChecks", "resource.healthChecks")
                                 for h in b.get("healthChecks") or []]
            if len(b["healthChecks"]) > 1:
                raise invalid("Invalid value for field 'resource.healthChecks': ''. At most one health check.")
            b.update(region=self.state.link("regions/%s" % region), sessionAffinity=b.get("sessionAffinity", "NONE"))
            return b
        return self._insert("targetPools", params, body, user, build)

    def _instance_in_region(self, value: str, region: str, where: str) -> str:
        path = self.state.parse_ref(value, "instances", where)
        zone = path.split("/")[1]
        if catalog.region_of_zone(zone) != region:
            raise invalid("Invalid value for field '%s': '%s'. Instance must be in region %s." % (where, value, region))
        if self.state.get(path) is None:
            raise invalid("Invalid value for field '%s': '%s'. The referenced instance resource cannot be found."
                          % (where, value))
        return self.state.link(path)

    def _ref_global(self, value: str, collection: str, where: str) -> str:
        path = self.state.parse_ref(value, collection, where, "global")
        if self.state.get(path) is None:
            raise invalid("Invalid value for field '%s': '%s'. The referenced resource cannot be found." % (where, value))
        return self.state.link(path)

    def _pool(self, params: t.Mapping[str, str]) -> tuple[str, dict[str, t.Any]]:
        path = "regions/%s/targetPools/%s" % (params["region"], params["targetPool"])
        return path, self.state.require(path)

    def m_targetPools_addInstance(self, params, query, body, user):
        path, pool = self._pool(params)
        links = [self._instance_in_region(i.get("instance", ""), params["region"], "resource.instances")
                 for i in body.get("instances") or []]
        return self._op("targetPools", params, "addInstance", path, user, "pool_members",
                        instances=sorted(set(pool.get("instances") or []) | set(links)))

    def m_targetPools_removeInstance(self, params, query, body, user):
        path, pool = self._pool(params)
        links = [self.state.link(self.state.parse_ref(i.get("instance", ""), "instances", "resource.instances"))
                 for i in body.get("instances") or []]
        return self._op("targetPools", params, "removeInstance", path, user, "pool_members",
                        instances=[i for i in pool.get("instances") or [] if i not in links])

    def s_pool_members(self, path: str, instances: list[str]) -> None:
        with self.state.lock:
            pool = self.state.get(path)
            if pool is not None:
                pool["instances"] = instances
                self.state.save()
        self._network_changed()

    def m_targetPools_addHealthCheck(self, params, query, body, user):
        path, pool = self._pool(params)
        checks = [self._ref_global(h.get("healthCheck", ""), "httpHealthChecks", "resource.healthChecks")
                  for h in body.get("healthChecks") or []]
        merged = sorted(set(pool.get("healthChecks") or []) | set(checks))
        if len(merged) > 1:
            raise invalid("Invalid value for field 'resource.healthChecks': ''. A target pool has at most one health check.")
        return self._op("targetPools", params, "addHealthCheck", path, user, "pool_checks", checks=merged)

    def m_targetPools_removeHealthCheck(self, params, query, body, user):
        path, pool = self._pool(params)
        links = [self.state.link(self.state.parse_ref(h.get("healthCheck", ""), "httpHealthChecks",
                                                      "resource.healthChecks", "global"))
                 for h in body.get("healthChecks") or []]
        return self._op("targetPools", params, "removeHealthCheck", path, user, "pool_checks",
                        checks=[c for c in pool.get("healthChecks") or [] if c not in links])

    def s_pool_checks(self, path: str, checks: list[str]) -> None:
        with self.state.lock:
            pool = self.state.get(path)
            if pool is not None:
                pool["healthChecks"] = checks
                self.state.save()
        self._network_changed()

    def m_targetPools_getHealth(self, params, query, body, user):
        path, pool = self._pool(params)
        link = self.state.link(self.state.parse_ref(body.get("instance", ""), "instances", "resource.instance"))
        if link not in (pool.get("instances") or []):
            raise invalid("Invalid value for field 'resource.instance': '%s'. Instance is not in the target pool."
                          % body.get("instance"))
        check = self.state.get(_rel(pool["healthChecks"][0], self.state.project)) if pool.get("healthChecks") else {}
        instance = self.state.get(_rel(link, self.state.project)) or {}
        healthy = self.health_of(instance, check or {})
        return {"kind": "compute#targetPoolInstanceHealth", "healthStatus": [{
            "instance": link, "ipAddress": self._frontend_ip(pool["selfLink"]) or "",
            "healthState": "HEALTHY" if healthy else "UNHEALTHY", "port": (check or {}).get("port", 80)}]}

    def _frontend_ip(self, target_link: str) -> str | None:
        for path, resource in self.state.resources.items():
            if "/forwardingRules/" in path and target_link in (resource.get("target"), resource.get("backendService")):
                return resource.get("IPAddress")
        return None

    # -- instance groups -----------------------------------------------------------------------------
    def m_instanceGroups_insert(self, params, query, body, user):
        zone = params["zone"]

        def build(path, b):
            # GCE fills in network and subnetwork from the instances added to the group; the lab leaves them out.
            b.update(zone=self.state.link("zones/%s" % zone), size=0, fingerprint=fingerprint(path))
            return b
        return self._insert("instanceGroups", params, body, user, build)

    def _members(self, path: str) -> list[str]:
        """The instances of an unmanaged group (kept beside the resource: GCE lists them with listInstances)."""
        return self.state.data.setdefault("group_members", {}).get(path, [])

    def _group(self, params: t.Mapping[str, str]) -> tuple[str, dict[str, t.Any]]:
        path = "zones/%s/instanceGroups/%s" % (params["zone"], params["instanceGroup"])
        return path, self.state.require(path)

    def m_instanceGroups_addInstances(self, params, query, body, user):
        path, group = self._group(params)
        links = []
        for item in body.get("instances") or []:
            ref = self.state.parse_ref(item.get("instance", ""), "instances", "resource.instances",
                                       "zones/%s" % params["zone"])
            if not ref.startswith("zones/%s/" % params["zone"]) or self.state.get(ref) is None:
                raise invalid("Invalid value for field 'resource.instances': '%s'. Instance must exist in zone %s."
                              % (item.get("instance"), params["zone"]))
            if self.state.link(ref) in self._members(path):
                raise ApiError(400, "memberAlreadyExists", "Resource '%s' is already a member of '%s'"
                               % (self.state.full(ref), self.state.full(path)))
            links.append(self.state.link(ref))
        return self._op("instanceGroups", params, "addInstances", path, user, "group_members",
                        members=sorted(set(self._members(path)) | set(links)))

    def m_instanceGroups_removeInstances(self, params, query, body, user):
        path, group = self._group(params)
        links = [self.state.link(self.state.parse_ref(i.get("instance", ""), "instances", "resource.instances",
                                                      "zones/%s" % params["zone"])) for i in body.get("instances") or []]
        return self._op("instanceGroups", params, "removeInstances", path, user, "group_members",
                        members=[m for m in self._members(path) if m not in links])

    def s_group_members(self, path: str, members: list[str]) -> None:
        with self.state.lock:
            group = self.state.get(path)
            if group is not None:
                self.state.data.setdefault("group_members", {})[path] = members
                group["size"] = len(members)
                self.state.save()
        self._network_changed()

    def m_instanceGroups_listInstances(self, params, query, body, user):
        path, group = self._group(params)
        items = []
        for link in self._members(path):
            instance = self.state.get(_rel(link, self.state.project)) or {}
            items.append({"instance": link, "status": instance.get("status", "UNKNOWN")})
        return self._page(items, query, "compute#instanceGroupsListInstances", self.state.link(path))

    def after_delete_instanceGroups(self, path: str, group: dict[str, t.Any]) -> None:
        # The members go with the group: a new group of the same name starts empty.
        self.state.data.setdefault("group_members", {}).pop(path, None)

    def deletable_instanceGroups(self, path: str, resource: dict[str, t.Any]) -> None:
        link = self.state.link(path)
        for other_path, other in self.state.resources.items():
            if any(b.get("group") == link for b in other.get("backends") or []):
                raise in_use(self.state.full(path), self.state.full(other_path))

    # -- backend services ----------------------------------------------------------------------------
    def m_regionBackendServices_insert(self, params, query, body, user):
        region = params["region"]
        return self._insert("regionBackendServices", params, body, user,
                            lambda path, b: self._build_backend_service(region, b))

    def _build_backend_service(self, region: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        scheme = body.get("loadBalancingScheme", "EXTERNAL")
        if scheme not in ("EXTERNAL", "INTERNAL"):
            raise invalid("Invalid value for field 'resource.loadBalancingScheme': '%s'. The lab supports "
                          "passthrough network load balancers." % scheme)
        protocol = body.get("protocol", "TCP")
        if protocol not in ("TCP", "UDP", "UNSPECIFIED"):
            raise invalid("Invalid value for field 'resource.protocol': '%s'. Passthrough load balancers take TCP, UDP "
                          "or UNSPECIFIED." % protocol)
        checks = []
        for check in body.get("healthChecks") or []:
            path = self.state.parse_ref(check, "healthChecks", "resource.healthChecks", "regions/%s" % region)
            if not path.startswith("regions/%s/" % region) or self.state.get(path) is None:
                raise invalid("Invalid value for field 'resource.healthChecks[0]': '%s'. The referenced regional health "
                              "check cannot be found in region %s." % (check, region))
            checks.append(self.state.link(path))
        if not checks:
            raise invalid("Invalid value for field 'resource.healthChecks': ''. A backend service of a network load "
                          "balancer requires a regional health check.")
        backends = []
        for index, backend in enumerate(body.get("backends") or []):
            path = self.state.parse_ref(backend.get("group", ""), "instanceGroups", "resource.backends[%d].group" % index)
            zone = path.split("/")[1]
            if catalog.region_of_zone(zone) != region or self.state.get(path) is None:
                raise invalid("Invalid value for field 'resource.backends[%d].group': '%s'. The instance group must "
                              "exist in region %s." % (index, backend.get("group"), region))
            backends.append(dict(backend, group=self.state.link(path), balancingMode=backend.get("balancingMode", "CONNECTION")))
        body.update(region=self.state.link("regions/%s" % region), loadBalancingScheme=scheme, protocol=protocol,
                    healthChecks=checks, backends=backends, sessionAffinity=body.get("sessionAffinity", "NONE"),
                    timeoutSec=int(body.get("timeoutSec", 30)))
        body["fingerprint"] = fingerprint({k: v for k, v in body.items() if k != "fingerprint"})
        return body

    def _service(self, params: t.Mapping[str, str]) -> tuple[str, dict[str, t.Any]]:
        path = "regions/%s/backendServices/%s" % (params["region"], params["backendService"])
        return path, self.state.require(path)

    def m_regionBackendServices_patch(self, params, query, body, user):
        path, service = self._service(params)
        if body.get("fingerprint") and body["fingerprint"] != service.get("fingerprint"):
            raise stale_fingerprint("backend service")
        merged = copy.deepcopy(service)
        fixed = ("fingerprint", "name", "id", "selfLink", "kind", "creationTimestamp")
        merged.update({k: v for k, v in body.items() if k not in fixed})
        self._build_backend_service(params["region"], merged)
        return self._op("regionBackendServices", params, "patch", path, user, "replace", resource=merged)

    def m_regionBackendServices_update(self, params, query, body, user):
        path, service = self._service(params)
        if body.get("fingerprint") and body["fingerprint"] != service.get("fingerprint"):
            raise stale_fingerprint("backend service")
        merged = copy.deepcopy(body)
        merged.pop("fingerprint", None)
        self._build_backend_service(params["region"], merged)
        merged.update(id=service["id"], name=service["name"], selfLink=service["selfLink"], kind=service["kind"],
                      creationTimestamp=service["creationTimestamp"])
        return self._op("regionBackendServices", params, "update", path, user, "replace", resource=merged)

    def m_regionBackendServices_getHealth(self, params, query, body, user):
        path, service = self._service(params)
        group_path = self.state.parse_ref(body.get("group", ""), "instanceGroups", "resource.group")
        link = self.state.link(group_path)
        if not any(b.get("group") == link for b in service.get("backends") or []):
            raise invalid("Invalid value for field 'resource.group': '%s'. The group is not a backend of the service."
                          % body.get("group"))
        self.state.require(group_path)
        check = self.state.get(_rel(service["healthChecks"][0], self.state.project)) or {}
        status = []
        for member in self._members(group_path):
            instance = self.state.get(_rel(member, self.state.project)) or {}
            status.append({"instance": member, "ipAddress": (instance.get("networkInterfaces") or [{}])[0].get("networkIP", ""),
                           "healthState": "HEALTHY" if self.health_of(instance, check) else "UNHEALTHY",
                           "forwardingRuleIp": self._frontend_ip(service["selfLink"]) or "",
                           "port": _check_port(check)})
        result: dict[str, t.Any] = {"kind": "compute#backendServiceGroupHealth"}
        if status:
            result["healthStatus"] = status
        return result

    def deletable_regionBackendServices(self, path: str, resource: dict[str, t.Any]) -> None:
        link = self.state.link(path)
        for other_path, other in self.state.resources.items():
            if other.get("backendService") == link:
                raise in_use(self.state.full(path), self.state.full(other_path))

    def deletable_targetPools(self, path: str, resource: dict[str, t.Any]) -> None:
        link = self.state.link(path)
        for other_path, other in self.state.resources.items():
            if other.get("target") == link:
                raise in_use(self.state.full(path), self.state.full(other_path))

    # -- forwarding rules ----------------------------------------------------------------------------
    def m_forwardingRules_insert(self, params, query, body, user):
        region = params["region"]
        return self._insert("forwardingRules", params, body, user, lambda path, b: self._build_rule(region, path, b))

    def _build_rule(self, region: str, path: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
        scheme = body.get("loadBalancingScheme", "EXTERNAL")
        if scheme != "EXTERNAL":
            raise invalid("Invalid value for field 'resource.loadBalancingScheme': '%s'. The lab supports external "
                          "passthrough forwarding rules." % scheme)
        if bool(body.get("target")) == bool(body.get("backendService")):
            raise invalid("Invalid value for field 'resource': ''. Exactly one of target or backendService must be set.")
        if body.get("target"):
            target_path = self.state.parse_ref(body["target"], "targetPools", "resource.target", "regions/%s" % region)
            if not target_path.startswith("regions/%s/" % region) or self.state.get(target_path) is None:
                raise invalid("Invalid value for field 'resource.target': '%s'. The target pool must exist in region %s."
                              % (body["target"], region))
            body["target"] = self.state.link(target_path)
        else:
            service_path = self.state.parse_ref(body["backendService"], "backendServices", "resource.backendService",
                                                "regions/%s" % region)
            if not service_path.startswith("regions/%s/" % region) or self.state.get(service_path) is None:
                raise invalid("Invalid value for field 'resource.backendService': '%s'. The backend service must exist "
                              "in region %s." % (body["backendService"], region))
            body["backendService"] = self.state.link(service_path)
        protocol = body.get("IPProtocol", "TCP")
        if protocol not in ("TCP", "UDP", "L3_DEFAULT"):
            raise invalid("Invalid value for field 'resource.IPProtocol': '%s'." % protocol)
        ports = body.get("ports")
        port_range = body.get("portRange")
        if ports and port_range:
            raise invalid("Invalid value for field 'resource.portRange': '%s'. Specify ports or portRange, not both."
                          % port_range)
        if port_range and not re.fullmatch(r"\d+(-\d+)?", port_range):
            raise invalid("Invalid value for field 'resource.portRange': '%s'." % port_range)
        if port_range and "-" not in port_range:
            body["portRange"] = "%s-%s" % (port_range, port_range)
        ip = body.get("IPAddress")
        if ip:
            if not re.fullmatch(r"[0-9.]+", ip):
                address_path = self.state.parse_ref(ip, "addresses", "resource.IPAddress", "regions/%s" % region)
                address = self.state.get(address_path)
                if address is None:
                    raise invalid("Invalid value for field 'resource.IPAddress': '%s'. The referenced address resource "
                                  "cannot be found." % ip)
                ip = address["address"]
            address = self._address_by_ip(ip)
            if address is None or short(address.get("region")) != region:
                raise invalid("Invalid value for field 'resource.IPAddress': '%s'. Specified IP address is not reserved in "
                              "region %s." % (ip, region))
            users = address.get("users") or []
            if users:
                raise ApiError(400, "resourceInUseByAnotherResource", "Invalid value for field 'resource.IPAddress': "
                               "'%s'. Specified IP address is in-use and would result in a conflict. It is being used by "
                               "'%s'." % (ip, _full_from_link(users[0])))
            self._claim_address(ip, region, self.state.link(path))
        else:
            ip = self._free_external_ip()
        body.update(IPAddress=ip, IPProtocol=protocol, loadBalancingScheme=scheme,
                    region=self.state.link("regions/%s" % region), networkTier=body.get("networkTier", "PREMIUM"),
                    fingerprint=fingerprint(path))
        if not ports and not port_range and not body.get("allPorts"):
            body["portRange"] = "1-65535"
        return body

    def after_delete_forwardingRules(self, path: str, rule: dict[str, t.Any]) -> None:
        self._release_address(rule.get("IPAddress"), self.state.link(path))

    def m_forwardingRules_setTarget(self, params, query, body, user):
        path = "regions/%s/forwardingRules/%s" % (params["region"], params["forwardingRule"])
        rule = self.state.require(path)
        if not rule.get("target"):
            raise invalid("Invalid value for field 'resource.target': ''. Only target-pool forwarding rules take setTarget.")
        target = self.state.parse_ref(body.get("target", ""), "targetPools", "resource.target", "regions/%s" % params["region"])
        if self.state.get(target) is None:
            raise invalid("Invalid value for field 'resource.target': '%s'. The target pool cannot be found." % body.get("target"))
        merged = dict(copy.deepcopy(rule), target=self.state.link(target))
        return self._op("forwardingRules", params, "setTarget", path, user, "replace", resource=merged)

    # -- operations ----------------------------------------------------------------------------------
    def _operation_path(self, params: t.Mapping[str, str], scope: str) -> str:
        return "%s/operations/%s" % (scope, params["operation"])

    def m_zoneOperations_get(self, params, query, body, user):
        return copy.deepcopy(self._require_op(self._operation_path(params, "zones/%s" % params["zone"])))

    def m_regionOperations_get(self, params, query, body, user):
        return copy.deepcopy(self._require_op(self._operation_path(params, "regions/%s" % params["region"])))

    def m_globalOperations_get(self, params, query, body, user):
        return copy.deepcopy(self._require_op(self._operation_path(params, "global")))

    def _require_op(self, path: str) -> dict[str, t.Any]:
        op = self.state.operations.get(path)
        if op is None:
            raise ApiError(404, "notFound", "The resource '%s' was not found" % self.state.full(path))
        return op

    def _wait(self, path: str) -> dict[str, t.Any]:
        self._require_op(path)
        self.state.lock.release()
        try:
            return self.ops.wait(path)
        finally:
            self.state.lock.acquire()

    def m_zoneOperations_wait(self, params, query, body, user):
        return self._wait(self._operation_path(params, "zones/%s" % params["zone"]))

    def m_regionOperations_wait(self, params, query, body, user):
        return self._wait(self._operation_path(params, "regions/%s" % params["region"]))

    def m_globalOperations_wait(self, params, query, body, user):
        return self._wait(self._operation_path(params, "global"))

    def _list_ops(self, scope: str, query: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        prefix = "%s/operations/" % scope
        items = [copy.deepcopy(op) for p, op in sorted(self.state.operations.items()) if p.startswith(prefix)]
        return self._page(items, query, "compute#operationList", self.state.link(prefix.rstrip("/")))

    def m_zoneOperations_list(self, params, query, body, user):
        return self._list_ops("zones/%s" % params["zone"], query)

    def m_regionOperations_list(self, params, query, body, user):
        return self._list_ops("regions/%s" % params["region"], query)

    def m_globalOperations_list(self, params, query, body, user):
        return self._list_ops("global", query)

    def seed(self, network_mode: str = "default") -> None:
        """What a new project has: GCE's auto-mode network ``default`` with its four firewall rules or, with
        ``network_mode`` "custom", a custom-mode network ``lab`` with a subnetwork ``lab`` in every region and no
        firewall rule (a project whose default network was not made, or deleted)."""
        with self.state.lock:
            if self.state.data.get("seeded"):
                return
            name = "lab" if network_mode == "custom" else "default"
            path = "global/networks/%s" % name
            self.state.resources[path] = self._build_network({
                "kind": "compute#network", "id": self.state.new_id(), "name": name, "creationTimestamp": now_rfc3339(),
                "autoCreateSubnetworks": network_mode != "custom", "selfLink": self.state.link(path),
                "description": "Default network for the project" if name == "default" else "The lab's custom network"})
            for region in catalog.REGIONS:
                self._store_subnetwork(region, {"name": name, "network": self.state.link(path),
                                                "ipCidrRange": str(catalog.subnet_range(region))})
            self.state.data.update(seeded=True, network_mode=network_mode)
            if network_mode == "custom":
                self.state.save()
                return
            rules = [
                ("default-allow-internal", {"sourceRanges": ["10.128.0.0/9"], "allowed": [
                    {"IPProtocol": "tcp", "ports": ["0-65535"]}, {"IPProtocol": "udp", "ports": ["0-65535"]},
                    {"IPProtocol": "icmp"}], "description": "Allow internal traffic on the default network"}),
                ("default-allow-ssh", {"sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
                                       "description": "Allow SSH from anywhere"}),
                ("default-allow-rdp", {"sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["3389"]}],
                                       "description": "Allow RDP from anywhere"}),
                ("default-allow-icmp", {"sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "icmp"}],
                                        "description": "Allow ICMP from anywhere"}),
            ]
            for name, body in rules:
                path = "global/firewalls/%s" % name
                rule = self._build_firewall(path, dict(body, name=name, priority=65534))
                rule.update(kind="compute#firewall", id=self.state.new_id(), creationTimestamp=now_rfc3339(),
                            selfLink=self.state.link(path))
                self.state.resources[path] = rule
            self.state.data["seeded"] = True
            self.state.save()

    def instances_with_disks(self) -> list[tuple[dict[str, t.Any], dict[str, dict[str, t.Any]]]]:
        with self.state.lock:
            return [(copy.deepcopy(r), copy.deepcopy(self._disks_of(r))) for p, r in self.state.resources.items()
                    if "/instances/" in p]

    # -- health and the network ------------------------------------------------------------------------
    def health_of(self, instance: t.Mapping[str, t.Any], check: t.Mapping[str, t.Any]) -> bool:
        if not instance:
            return False
        return self.backend.healthy(instance, check)

    def network_view(self) -> dict[str, t.Any]:
        """Instances, firewalls and forwarding rules as the machine backend needs them."""
        with self.state.lock:
            instances = []
            for path, resource in self.state.resources.items():
                if "/instances/" not in path:
                    continue
                nic = (resource.get("networkInterfaces") or [{}])[0]
                nat = next((c.get("natIP") for c in nic.get("accessConfigs") or [] if c.get("natIP")), None)
                instances.append({"name": resource["name"], "selfLink": resource["selfLink"], "zone": short(resource["zone"]),
                                  "internal_ip": nic.get("networkIP"), "nat_ip": nat,
                                  "network": short(nic.get("network")) or "default",
                                  "tags": (resource.get("tags") or {}).get("items") or [],
                                  "service_accounts": [a["email"] for a in resource.get("serviceAccounts") or []],
                                  "status": resource["status"]})
            firewalls = [copy.deepcopy(r) for p, r in self.state.resources.items() if p.startswith("global/firewalls/")]
            rules = []
            for path, rule in self.state.resources.items():
                if "/forwardingRules/" not in path:
                    continue
                members, check = self._rule_members(rule)
                rules.append({"name": rule["name"], "ip": rule["IPAddress"], "protocol": rule["IPProtocol"],
                              "ports": rule.get("ports") or [], "port_range": rule.get("portRange"),
                              "all_ports": bool(rule.get("allPorts")), "members": members, "check": check})
            return {"instances": instances, "firewalls": firewalls, "forwarding_rules": rules}

    def _rule_members(self, rule: t.Mapping[str, t.Any]) -> tuple[list[dict[str, t.Any]], dict[str, t.Any]]:
        members: list[dict[str, t.Any]] = []
        check: dict[str, t.Any] = {}
        if rule.get("target"):
            pool = self.state.get(_rel(rule["target"], self.state.project)) or {}
            links = pool.get("instances") or []
            if pool.get("healthChecks"):
                check = copy.deepcopy(self.state.get(_rel(pool["healthChecks"][0], self.state.project)) or {})
        else:
            service = self.state.get(_rel(rule["backendService"], self.state.project)) or {}
            links = []
            for backend in service.get("backends") or []:
                links.extend(self._members(_rel(backend["group"], self.state.project)))
            if service.get("healthChecks"):
                check = copy.deepcopy(self.state.get(_rel(service["healthChecks"][0], self.state.project)) or {})
        for link in links:
            instance = self.state.get(_rel(link, self.state.project))
            if instance is not None:
                members.append({"name": instance["name"], "selfLink": link,
                                "internal_ip": instance["networkInterfaces"][0]["networkIP"]})
        return members, check

    def _network_changed(self) -> None:
        # The view is taken and applied under the state's lock, so that no older view is applied after a newer one.
        with self.state.lock:
            self.backend.network_changed(self.network_view())


def _rel(link: str, project: str) -> str:
    """Our path of a resource URL."""
    marker = "/projects/%s/" % project
    return link.split(marker, 1)[1] if marker in link else link


def _full_from_link(link: str) -> str:
    """'https://.../compute/v1/projects/p/zones/z/instances/i' -> 'projects/p/zones/z/instances/i'."""
    return "projects/" + link.split("/projects/", 1)[1] if "/projects/" in link else link


def _check_port(check: t.Mapping[str, t.Any]) -> int:
    for field in ("tcpHealthCheck", "httpHealthCheck", "httpsHealthCheck", "sslHealthCheck", "http2HealthCheck"):
        if field in check:
            return int(check[field].get("port", 80))
    return int(check.get("port", 80))
