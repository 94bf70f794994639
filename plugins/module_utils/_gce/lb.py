# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: the API servers' load balancer and the reserved-IP promotion.

Three states, all built around the regional reserved address ``{cluster}-master-ip``:

* ``single``: no load balancer; the address is the external IP of one replica.
* ``balanced``: a regional external passthrough load balancer (forwarding rule on
  the address) in front of the given replicas, with a health check; behind it
  either a backend service with one unmanaged instance group per zone, or a
  (legacy) target pool.
* ``absent``: no load-balancer resources; the address stays.

Everything is read first and checked; only then is anything changed, in an
order that keeps the address unanswered for the shortest time. Every step is
decided from what GCE shows, never from a saved plan, so a run killed at any
step is finished by the next one.
"""

from __future__ import annotations

import contextlib

import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._clock import CLOCK, Clock
from ansible_collections.kubeha.gce.plugins.module_utils._gce.address import external_address
from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import ComputeApi, Deadline, GceError, with_fingerprint
from ansible_collections.kubeha.gce.plugins.module_utils._gce.converger import Converger
from ansible_collections.kubeha.gce.plugins.module_utils._gce.names import (
    CLUSTER_LABEL,
    ROLE_LABEL,
    InvalidInput,
    address_name,
    check_name,
    check_region,
    has_owner_marker,
    health_check_name,
    is_master_of,
    lb_name,
    master_labels,
    owner_marker,
    region_of,
    short,
)
from ansible_collections.kubeha.gce.plugins.module_utils._gce.replica import (
    EXTERNAL_NAT,
    cluster_instances,
    describe_user,
    external_ip_of,
    nic0,
)

STATES = ("single", "balanced", "absent")
BACKENDS = ("backend_service", "target_pool")
CHECK_PROTOCOLS = ("HTTPS", "HTTP", "TCP")
#: What GCE calls the details of each regional health check type.
CHECK_FIELDS = {"HTTPS": "httpsHealthCheck", "HTTP": "httpHealthCheck", "TCP": "tcpHealthCheck"}
#: The options that name the cluster's load balancer, shared by ha_lb and ha_lb_info.
TARGET_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    "cluster_name": {"type": "str", "required": True},
    "region": {"type": "str", "required": True},
    "address": {"type": "str"},
}
KINDS = {
    "forwardingRules": "forwarding rule",
    "regionBackendServices": "backend service",
    "targetPools": "target pool",
    "regionHealthChecks": "health check",
    "httpHealthChecks": "HTTP health check",
    "instanceGroups": "instance group",
}


class HealthCheck(t.NamedTuple):
    enabled: bool
    protocol: str
    port: int | None
    request_path: str
    check_interval_sec: int
    timeout_sec: int
    healthy_threshold: int
    unhealthy_threshold: int


class Spec(t.NamedTuple):
    cluster: str
    region: str
    state: str
    members: tuple[str, ...]
    address: str
    port: int
    backend: str
    health_check: HealthCheck
    wait_healthy: bool
    wait_timeout: int
    wait_for: tuple[str, ...] = ()

    @property
    def lb_name(self) -> str:
        """Forwarding rule, backend service or target pool, and the instance group of every zone."""
        return lb_name(self.cluster)

    @property
    def check_name(self) -> str:
        return health_check_name(self.cluster)

    @property
    def marker(self) -> str:
        """How resources without labels (all but the forwarding rule) are known to be ours."""
        return owner_marker(self.cluster)

    @property
    def description(self) -> str:
        return "kubeha.gce: API server load balancer of the masters of cluster %s (%s)" % (self.cluster, self.marker)


def spec_from_params(params: t.Mapping[str, t.Any]) -> Spec:
    """Build and check a :class:`Spec`; raises InvalidInput naming the problem, before any API call."""
    cluster = check_name(params["cluster_name"], "cluster_name")
    region = check_region(params["region"])
    state = params["state"]
    members: list[str] = []
    for name in params.get("members") or []:
        check_name(name, "members")
        if name in members:
            raise InvalidInput("members lists replica '%s' twice" % name)
        members.append(name)
    if state == "single" and len(members) != 1:
        raise InvalidInput("state=single needs exactly one member, the replica that gets the reserved address; "
                           "members has %d (%s)" % (len(members), ", ".join(members) or "none"))
    if state == "balanced" and not members:
        raise InvalidInput("state=balanced needs at least one member: the load balancer must have a replica "
                           "behind it")
    if state == "absent":
        members = []
    port = params["port"]
    if not 1 <= port <= 65535:
        raise InvalidInput("port is %d; it must be between 1 and 65535" % port)
    backend = params["backend"]
    address = check_name(params.get("address") or address_name(cluster), "address")
    wait_for = tuple(params.get("wait_for") or ())
    for name in wait_for:
        if name not in members:
            raise InvalidInput("wait_for names '%s', which is not one of the members (%s)" % (name, ", ".join(members)))
    return Spec(
        cluster=cluster, region=region, state=state, members=tuple(members), address=address, port=port,
        backend=backend, health_check=_health_check(params.get("health_check") or {}, backend, port),
        wait_healthy=params["wait_healthy"], wait_timeout=params["wait_timeout"], wait_for=wait_for,
    )


def target_from_params(params: t.Mapping[str, t.Any]) -> Spec:
    """The :class:`Spec` of a load balancer that is only looked at (ha_lb_info): the options of
    TARGET_ARGUMENT_SPEC, checked as spec_from_params checks them, and ha_lb's defaults for the
    rest, which reading does not use."""
    return spec_from_params({
        "cluster_name": params["cluster_name"], "region": params["region"], "address": params.get("address"),
        "state": "absent", "members": [], "port": 443, "backend": "backend_service", "health_check": {},
        "wait_healthy": False, "wait_timeout": 300,
    })


def _health_check(given: t.Mapping[str, t.Any], backend: str, port: int) -> HealthCheck:
    enabled = given.get("enabled")
    enabled = True if enabled is None else enabled
    protocol = given.get("protocol")
    if backend == "target_pool":
        if protocol not in (None, "HTTP"):
            raise InvalidInput("health_check.protocol is %s, but a target pool takes only a legacy HTTP health "
                               "check; use backend=backend_service for an %s check" % (protocol, protocol))
        protocol = "HTTP"
    else:
        if not enabled:
            raise InvalidInput("health_check.enabled=false is only possible with backend=target_pool: a backend "
                               "service always needs a health check")
        protocol = protocol or "HTTPS"
    check_port = given.get("port")
    if check_port is None and protocol != "HTTP":
        check_port = port
    if enabled and check_port is None:
        raise InvalidInput("health_check.port is needed for an HTTP health check: kube-apiserver answers only "
                           "HTTPS, so a plain-HTTP health endpoint on the replicas must be named; or use "
                           "backend=backend_service (HTTPS check) or health_check.enabled=false")
    if check_port is not None and not 1 <= check_port <= 65535:
        raise InvalidInput("health_check.port is %d; it must be between 1 and 65535" % check_port)

    def value(key: str, default: t.Any) -> t.Any:
        return default if given.get(key) is None else given[key]

    check = HealthCheck(
        enabled=enabled, protocol=protocol, port=check_port, request_path=value("request_path", "/readyz"),
        check_interval_sec=value("check_interval_sec", 5), timeout_sec=value("timeout_sec", 5),
        healthy_threshold=value("healthy_threshold", 2), unhealthy_threshold=value("unhealthy_threshold", 2),
    )
    if not check.request_path.startswith("/"):
        raise InvalidInput("health_check.request_path '%s' must start with '/'" % check.request_path)
    for field in ("check_interval_sec", "timeout_sec", "healthy_threshold", "unhealthy_threshold"):
        number = getattr(check, field)
        upper = 300 if field.endswith("_sec") else 10
        if not 1 <= number <= upper:
            raise InvalidInput("health_check.%s is %d; it must be between 1 and %d" % (field, number, upper))
    if check.timeout_sec > check.check_interval_sec:
        raise InvalidInput("health_check.timeout_sec (%d) must not be longer than health_check.check_interval_sec "
                           "(%d)" % (check.timeout_sec, check.check_interval_sec))
    return check


# -- helpers -----------------------------------------------------------------------------------------

def rel(link: str | None) -> str:
    """``https://.../projects/p/zones/z/instances/n`` -> ``zones/z/instances/n`` (paths compare equal)."""
    if not link:
        return ""
    path = link.split("/compute/v1/", 1)[-1]
    if path.startswith("projects/"):
        path = path.split("/", 2)[2] if path.count("/") >= 2 else ""
    return path


class Resource(t.NamedTuple):
    collection: str
    name: str
    scope: dict[str, str]  # {"region": r} / {"zone": z} / {}
    body: dict[str, t.Any]

    @property
    def label(self) -> str:
        where = self.scope.get("zone") or self.scope.get("region")
        return "%s %s%s" % (KINDS[self.collection], self.name, " (%s)" % where if where else "")


# -- the load balancer ---------------------------------------------------------------------------------

class LoadBalancer(Converger):
    """Reads everything, checks it, then converges in the order that keeps the address answering."""

    def __init__(self, api: ComputeApi, spec: Spec, check_mode: bool = False,
                 warn: t.Callable[[str], None] = lambda msg: None, clock: Clock | None = None) -> None:
        super().__init__(api, spec, check_mode, warn)
        self.clock = clock or CLOCK
        # What was read.
        self.address: dict[str, t.Any] = {}
        self.replicas: dict[str, dict[str, t.Any]] = {}  # every master of the cluster in the region
        self.rule: dict[str, t.Any] | None = None
        self.service: dict[str, t.Any] | None = None
        self.region_check: dict[str, t.Any] | None = None
        self.pool: dict[str, t.Any] | None = None
        self.http_check: dict[str, t.Any] | None = None
        self.groups: dict[str, dict[str, t.Any]] = {}  # zone -> instance group
        self.group_members: dict[str, set[str]] = {}  # zone -> instance paths

    # -- reading ------------------------------------------------------------------------------------
    def read(self, address_required: bool = True) -> None:
        """Read and check everything; without ``address_required`` a missing address is read as ``{}``."""
        spec = self.spec
        region = {"region": spec.region}
        self.address = self._read_address(address_required)
        self.replicas = self._read_replicas()
        self._check_members()
        self.rule = self._owned(self.api.get("forwardingRules", forwardingRule=spec.lb_name, **region),
                                "forwardingRules")
        self.service = self._owned(self.api.get("regionBackendServices", backendService=spec.lb_name, **region),
                                   "regionBackendServices")
        self.region_check = self._owned(self.api.get("regionHealthChecks", healthCheck=spec.check_name, **region),
                                        "regionHealthChecks")
        self.pool = self._owned(self.api.get("targetPools", targetPool=spec.lb_name, **region), "targetPools")
        self.http_check = self._owned(self.api.get("httpHealthChecks", httpHealthCheck=spec.check_name),
                                      "httpHealthChecks")
        self.groups, self.group_members = {}, {}
        for group in self.api.aggregated("instanceGroups", filter='name = "%s"' % spec.lb_name):
            zone = short(group.get("zone")) or ""
            if group.get("name") != spec.lb_name or not zone or region_of(zone) != spec.region:
                continue
            self.groups[zone] = t.cast(t.Dict[str, t.Any], self._owned(group, "instanceGroups"))
            listed = self.api.list_all("instanceGroups", "listInstances", zone=zone, instanceGroup=spec.lb_name,
                                       body={"instanceState": "ALL"})
            self.group_members[zone] = {rel(item.get("instance")) for item in listed}
        self._check_address_users()

    def _read_address(self, required: bool = True) -> dict[str, t.Any]:
        try:
            return external_address(
                self.api, self.spec.address, self.spec.region,
                elsewhere_hint="; the load balancer's address must be in the replicas' region",
                missing_hint=": reserve it first (it is made once, at bootstrap, and never deleted)",
                internal_hint="the API servers need an external one")
        except GceError as exc:
            if required or exc.reason != "notFound":
                raise
            return {}

    def _read_replicas(self) -> dict[str, dict[str, t.Any]]:
        return {i["name"]: i for i in cluster_instances(self.api, self.spec.cluster, self.spec.region)}

    def _check_members(self) -> None:
        spec = self.spec
        for name in spec.members:
            if name in self.replicas:
                continue
            matches = [i for i in self.api.aggregated("instances", filter='name = "%s"' % name) if i.get("name") == name]
            if not matches:
                raise GceError("replica '%s' was not found in any zone of project %s" % (name, self.api.project),
                               status=404, reason="notFound")
            zone = short(matches[0].get("zone")) or ""
            labels = matches[0].get("labels") or {}
            if not is_master_of(matches[0], spec.cluster):
                raise GceError("instance '%s' in zone %s is not a master of cluster '%s' (its labels %s=%s, %s=%s); "
                               "only the cluster's replicas can be members" % (
                                   name, zone, spec.cluster, CLUSTER_LABEL, labels.get(CLUSTER_LABEL, "<unset>"),
                                   ROLE_LABEL, labels.get(ROLE_LABEL, "<unset>")), status=400, reason="invalid")
            raise GceError("replica '%s' is in zone %s of region %s, not in region %s; a regional load balancer "
                           "can only have members in its own region" % (name, zone, region_of(zone), spec.region),
                           status=400, reason="invalid")

    def _owned(self, resource: dict[str, t.Any] | None, collection: str) -> dict[str, t.Any] | None:
        """The resource, after making sure this cluster's load balancer made it."""
        if resource is None:
            return None
        spec = self.spec
        if collection == "forwardingRules":
            ours = is_master_of(resource, spec.cluster)
        else:
            ours = has_owner_marker(resource, spec.cluster)
        if not ours:
            where = short(resource.get("zone")) or short(resource.get("region")) or "global"
            raise GceError("%s '%s' (%s) exists but was not made by kubeha.gce for cluster '%s' (no %s in its %s); "
                           "refusing to manage it: rename or delete it, or use another cluster_name"
                           % (KINDS[collection], resource.get("name"), where, spec.cluster, spec.marker,
                              "labels" if collection == "forwardingRules" else "description"),
                           status=409, reason="notOwned")
        return resource

    def _check_address_users(self) -> None:
        spec = self.spec
        rule_path = "regions/%s/forwardingRules/%s" % (spec.region, spec.lb_name)
        replica_paths = {rel(i.get("selfLink")) for i in self.replicas.values()}
        for user in self.address.get("users") or []:
            if rel(user) != rule_path and rel(user) not in replica_paths:
                raise GceError("address '%s' (%s) is in use by %s, which is neither the load balancer nor a "
                               "replica of cluster '%s'; free it first" % (
                                   spec.address, self.address.get("address"), describe_user(user, with_zone=True), spec.cluster),
                               status=409, reason="resourceInUseByAnotherResource")
        if self.rule and self.address and self.rule.get("IPAddress") != self.address.get("address"):
            raise GceError("forwarding rule '%s' has IP %s, not the reserved address '%s' (%s); delete it so that "
                           "it can be made again on the reserved address" % (
                               spec.lb_name, self.rule.get("IPAddress"), spec.address, self.address.get("address")),
                           status=409, reason="invalid")

    # -- what is there -------------------------------------------------------------------------------
    def holder(self) -> dict[str, t.Any] | None:
        """The replica whose external IP is the reserved address."""
        ip = self.address.get("address")
        for instance in self.replicas.values():
            if ip and external_ip_of(instance) == ip:
                return instance
        return None

    def current_backend(self) -> str | None:
        if not self.rule:
            return None
        return "target_pool" if self.rule.get("target") else "backend_service"

    def current_members(self) -> list[str]:
        names = {rel(i.get("selfLink")): n for n, i in self.replicas.items()}
        backend = self.current_backend()
        if backend == "target_pool" and self.pool:
            paths = {rel(link) for link in self.pool.get("instances") or []}
        elif backend == "backend_service" and self.service:
            used = {rel(b.get("group")) for b in self.service.get("backends") or []}
            paths = set()
            for zone, group in self.groups.items():
                if rel(group.get("selfLink")) in used:
                    paths |= self.group_members.get(zone, set())
        else:
            holder = self.holder()
            return [holder["name"]] if holder else []
        return sorted(names.get(p, short(p) or p) for p in paths)

    def current_state(self) -> str:
        if self.rule:
            return "balanced"
        return "single" if self.holder() else "absent"

    def existing(self) -> list[Resource]:
        found = []
        region = {"region": self.spec.region}
        for collection, resource, scope in (("forwardingRules", self.rule, region),
                                            ("regionBackendServices", self.service, region),
                                            ("targetPools", self.pool, region),
                                            ("regionHealthChecks", self.region_check, region),
                                            ("httpHealthChecks", self.http_check, {})):
            if resource:
                found.append(Resource(collection, resource["name"], scope, resource))
        for zone in sorted(self.groups):
            found.append(Resource("instanceGroups", self.groups[zone]["name"], {"zone": zone}, self.groups[zone]))
        return found

    def view(self) -> dict[str, t.Any]:
        state = self.current_state()
        return {"state": state, "backend": self.current_backend(), "address": self.address.get("address"),
                "holder": (self.holder() or {}).get("name"), "members": self.current_members(),
                "resources": sorted(r.label for r in self.existing())}

    def predicted_view(self) -> dict[str, t.Any]:
        spec = self.spec
        resources = []
        if spec.state == "balanced":
            region = " (%s)" % spec.region
            resources.append("forwarding rule %s%s" % (spec.lb_name, region))
            if spec.backend == "backend_service":
                resources.append("backend service %s%s" % (spec.lb_name, region))
                resources.append("health check %s%s" % (spec.check_name, region))
                for zone in sorted({self._zone(n) for n in spec.members}):
                    resources.append("instance group %s (%s)" % (spec.lb_name, zone))
            else:
                resources.append("target pool %s%s" % (spec.lb_name, region))
                if spec.health_check.enabled:
                    resources.append("HTTP health check %s" % spec.check_name)
        return {"state": spec.state, "backend": spec.backend if spec.state == "balanced" else None,
                "address": self.address.get("address"),
                "holder": spec.members[0] if spec.state == "single" else None,
                "members": sorted(spec.members) if spec.state != "absent" else [],
                "resources": sorted(resources)}

    def _zone(self, name: str) -> str:
        return short(self.replicas[name].get("zone")) or ""

    def _path(self, name: str) -> str:
        return rel(self.replicas[name].get("selfLink"))

    def _ref(self, path: str) -> str:
        """A project-relative path as the partial URL GCE takes in request bodies."""
        return "projects/%s/%s" % (self.api.project, path)

    # -- doing ----------------------------------------------------------------------------------------
    def _insert(self, collection: str, body: dict[str, t.Any], what: str, **scope: str) -> None:
        self.api.insert(collection, body, self.spec.wait_timeout, what, **scope)

    def _delete(self, resource: Resource) -> None:
        key = {"forwardingRules": "forwardingRule", "regionBackendServices": "backendService",
               "targetPools": "targetPool", "regionHealthChecks": "healthCheck", "httpHealthChecks": "httpHealthCheck",
               "instanceGroups": "instanceGroup"}[resource.collection]

        self._act("delete %s" % resource.label, lambda: self.api.delete(
            resource.collection, self.spec.wait_timeout, "deleting %s" % resource.label,
            **dict(resource.scope, **{key: resource.name})))

    def _delete_rule(self) -> None:
        """Delete the forwarding rule now (it frees the address), and not again among the unused resources."""
        if self.rule is not None:
            self._delete(Resource("forwardingRules", self.spec.lb_name, {"region": self.spec.region}, self.rule))
            self.rule = None

    def converge(self) -> None:
        if self.spec.state == "balanced":
            self._balanced()
        elif self.spec.state == "single":
            self._single(self.spec.members[0])
        else:
            self._absent()

    # balanced
    def _balanced(self) -> None:
        spec = self.spec
        if spec.backend == "backend_service":
            check_link = self._ensure_region_check()
            target = self._ensure_service(check_link)
        else:
            target = self._ensure_pool()
        self._ensure_rule(target)
        # A member left without any external IP by a run killed between freeing the address and the
        # next step gets one. (The holder had the reserved IP when it was read: it is not one of them.)
        for name in spec.members:
            if not external_ip_of(self.replicas[name]):
                self._give_ephemeral(name)
        self._delete_unused()

    def _check_body(self) -> dict[str, t.Any]:
        spec, check = self.spec, self.spec.health_check
        body: dict[str, t.Any] = {
            "name": spec.check_name, "description": spec.description,
            "checkIntervalSec": check.check_interval_sec, "timeoutSec": check.timeout_sec,
            "healthyThreshold": check.healthy_threshold, "unhealthyThreshold": check.unhealthy_threshold,
        }
        if spec.backend == "target_pool":
            body.update(port=check.port, requestPath=check.request_path)
        else:
            details: dict[str, t.Any] = {"port": check.port}
            if check.protocol != "TCP":
                details["requestPath"] = check.request_path
            body.update({"type": check.protocol, CHECK_FIELDS[check.protocol]: details})
        return body

    @staticmethod
    def _differs(current: t.Mapping[str, t.Any], wanted: t.Mapping[str, t.Any]) -> list[str]:
        """The fields of ``wanted`` that ``current`` does not have (dicts compared on wanted's keys)."""
        changed = []
        for key, value in wanted.items():
            now = current.get(key)
            if isinstance(value, dict):
                now = {k: (now or {}).get(k) for k in value}
            if now != value:
                changed.append(key)
        return changed

    def _ensure_region_check(self) -> str:
        spec = self.spec
        body = self._check_body()
        path = "regions/%s/healthChecks/%s" % (spec.region, spec.check_name)
        label = "health check %s (%s)" % (spec.check_name, spec.region)
        if self.region_check is None:
            self._act("create %s" % label, lambda: self._insert("regionHealthChecks", body, "creating %s" % label,
                                                                region=spec.region))
        else:
            fields = self._differs(self.region_check, body)
            if fields:
                update = dict(body)
                for field in set(CHECK_FIELDS.values()) - {CHECK_FIELDS[spec.health_check.protocol]}:
                    update.pop(field, None)
                self._act("update %s (%s)" % (label, ", ".join(sorted(fields))), lambda: self._wait(
                    self.api.call("regionHealthChecks", "update", region=spec.region, healthCheck=spec.check_name,
                                  body=update), "updating %s" % label))
        return path

    def _ensure_service(self, check_path: str) -> str:
        spec = self.spec
        zones = sorted({self._zone(n) for n in spec.members})
        # Groups and their members first, so the backend service never points at a missing group.
        for zone in zones:
            wanted = {self._path(n) for n in spec.members if self._zone(n) == zone}
            label = "instance group %s (%s)" % (spec.lb_name, zone)
            if zone not in self.groups:
                self._act("create %s" % label, lambda zone=zone, label=label: self._insert(
                    "instanceGroups", {"name": spec.lb_name, "description": spec.description},
                    "creating %s" % label, zone=zone))
            missing = sorted(wanted - self.group_members.get(zone, set()))
            if missing:
                self._act("add %s to %s" % (", ".join(short(p) or p for p in missing), label),
                          lambda zone=zone, missing=missing, label=label: self._group_members(
                              zone, "addInstances", missing, label))
        service_path = "regions/%s/backendServices/%s" % (spec.region, spec.lb_name)
        label = "backend service %s (%s)" % (spec.lb_name, spec.region)
        groups = ["zones/%s/instanceGroups/%s" % (z, spec.lb_name) for z in zones]
        backends = [{"group": self._ref(g), "balancingMode": "CONNECTION"} for g in groups]
        if self.service is None:
            body = {"name": spec.lb_name, "description": spec.description, "loadBalancingScheme": "EXTERNAL",
                    "protocol": "TCP", "healthChecks": [self._ref(check_path)], "backends": backends}
            self._act("create %s with the groups in %s" % (label, ", ".join(zones)), lambda: self._insert(
                "regionBackendServices", body, "creating %s" % label, region=spec.region))
        else:
            now_groups = sorted(rel(b.get("group")) for b in self.service.get("backends") or [])
            now_checks = [rel(c) for c in self.service.get("healthChecks") or []]
            if now_groups != groups or now_checks != [check_path]:
                self._act("set the backends of %s to the groups in %s" % (label, ", ".join(zones)),
                          lambda: self._patch_service(backends, check_path, label))
        # Then members out of groups that stay; groups of zones without members go in _delete_unused.
        for zone in zones:
            wanted = {self._path(n) for n in spec.members if self._zone(n) == zone}
            extra = sorted(self.group_members.get(zone, set()) - wanted)
            if extra:
                label = "instance group %s (%s)" % (spec.lb_name, zone)
                self._act("remove %s from %s" % (", ".join(short(p) or p for p in extra), label),
                          lambda zone=zone, extra=extra, label=label: self._group_members(
                              zone, "removeInstances", extra, label))
        return service_path

    def _group_members(self, zone: str, method: str, paths: list[str], label: str) -> None:
        body = {"instances": [{"instance": self._ref(p)} for p in paths]}
        try:
            self._wait(self.api.call("instanceGroups", method, zone=zone, instanceGroup=self.spec.lb_name, body=body),
                       "%s of %s" % (method, label))
        except GceError as exc:
            if exc.reason != "memberAlreadyExists":
                raise

    def _patch_service(self, backends: list[dict[str, str]], check_path: str, label: str) -> None:
        spec = self.spec

        def read() -> dict[str, t.Any] | None:
            return self.api.get("regionBackendServices", region=spec.region, backendService=spec.lb_name)

        def apply(service: t.Mapping[str, t.Any]) -> None:
            body = {"backends": backends, "healthChecks": [self._ref(check_path)],
                    "fingerprint": service.get("fingerprint")}
            self._wait(self.api.call("regionBackendServices", "patch", region=spec.region,
                                     backendService=spec.lb_name, body=body), "changing %s" % label)

        with_fingerprint(self.service or {}, read, apply)

    def _ensure_pool(self) -> str:
        spec = self.spec
        region = {"region": spec.region}
        label = "target pool %s (%s)" % (spec.lb_name, spec.region)
        check_path = "global/httpHealthChecks/%s" % spec.check_name
        if spec.health_check.enabled:
            body = self._check_body()
            check_label = "HTTP health check %s" % spec.check_name
            if self.http_check is None:
                self._act("create %s" % check_label, lambda: self._insert("httpHealthChecks", body,
                                                                          "creating %s" % check_label))
            else:
                fields = self._differs(self.http_check, body)
                if fields:
                    self._act("update %s (%s)" % (check_label, ", ".join(sorted(fields))), lambda: self._wait(
                        self.api.call("httpHealthChecks", "update", httpHealthCheck=spec.check_name, body=body),
                        "updating %s" % check_label))
        wanted = {self._path(n) for n in spec.members}
        checks = [check_path] if spec.health_check.enabled else []
        if self.pool is None:
            body = {"name": spec.lb_name, "description": spec.description, "sessionAffinity": "NONE",
                    "instances": [self._ref(p) for p in sorted(wanted)],
                    "healthChecks": [self._ref(c) for c in checks]}
            self._act("create %s with %s" % (label, ", ".join(sorted(spec.members))), lambda: self._insert(
                "targetPools", body, "creating %s" % label, **region))
        else:
            current = {rel(link) for link in self.pool.get("instances") or []}
            now_checks = [rel(c) for c in self.pool.get("healthChecks") or []]
            missing, extra = sorted(wanted - current), sorted(current - wanted)
            if checks and now_checks != checks:
                self._act("add %s to %s" % (spec.check_name, label), lambda: self._pool_call(
                    "addHealthCheck", {"healthChecks": [{"healthCheck": self._ref(check_path)}]}, label))
            if missing:
                self._act("add %s to %s" % (", ".join(short(p) or p for p in missing), label),
                          lambda: self._pool_call("addInstance", {"instances": [
                              {"instance": self._ref(p)} for p in missing]}, label))
            if extra:
                self._act("remove %s from %s" % (", ".join(short(p) or p for p in extra), label),
                          lambda: self._pool_call("removeInstance", {"instances": [
                              {"instance": self._ref(p)} for p in extra]}, label))
            if not checks and now_checks:
                self._act("remove the health check from %s" % label, lambda: self._pool_call(
                    "removeHealthCheck", {"healthChecks": [{"healthCheck": self._ref(c)} for c in now_checks]}, label))
        return "regions/%s/targetPools/%s" % (spec.region, spec.lb_name)

    def _pool_call(self, method: str, body: dict[str, t.Any], label: str) -> None:
        self._wait(self.api.call("targetPools", method, region=self.spec.region, targetPool=self.spec.lb_name,
                                 body=body), "%s on %s" % (method, label))

    def _rule_body(self, target: str) -> dict[str, t.Any]:
        spec = self.spec
        body = {"name": spec.lb_name, "description": spec.description, "IPAddress": self.address["address"],
                "IPProtocol": "TCP", "portRange": str(spec.port), "loadBalancingScheme": "EXTERNAL",
                "labels": master_labels(spec.cluster)}
        body["target" if spec.backend == "target_pool" else "backendService"] = self._ref(target)
        return body

    def _rule_port_ok(self) -> bool:
        rule = self.rule or {}
        wanted = str(self.spec.port)
        return rule.get("portRange") in (wanted, "%s-%s" % (wanted, wanted)) or rule.get("ports") == [wanted]

    def _ensure_rule(self, target: str) -> None:
        spec = self.spec
        label = "forwarding rule %s (%s)" % (spec.lb_name, spec.region)
        rule = self.rule
        if rule is not None:
            if rel(rule.get("target") or rule.get("backendService")) == target and self._rule_port_ok():
                return
            # A forwarding rule cannot change its kind of backend or its port: it is made again.
            self.warn("%s is made again (its backend or port changes): the address answers nothing until the new "
                      "rule is in place" % label)
            self._delete_rule()
        holder = None if rule is not None else self.holder()
        if holder is not None:
            self._free_address(holder)
        ip = self.address["address"]
        with self._giving_back(holder["name"] if holder is not None else None, ip):
            self._act("create %s on %s:%d" % (label, ip, spec.port), lambda: self._insert(
                "forwardingRules", self._rule_body(target), "creating %s" % label, region=spec.region))
        if holder is not None:
            self._give_ephemeral(holder["name"])

    # access configs
    @contextlib.contextmanager
    def _giving_back(self, name: str | None, ip: str | None) -> t.Iterator[None]:
        """Replica ``name`` has just lost its external IP for the next steps: when one of them fails, it gets an
        external IP again (``ip``, or an ephemeral one), so that the next run still reaches it over SSH; then the
        error goes on. A run killed there leaves it without one: ``state=balanced`` gives it one again."""
        try:
            yield
        except GceError:
            if name is not None and not self.check_mode:
                try:
                    self._add_access_config(name, ip, "give replica %s an external IP again, as the step after "
                                                      "failed" % name)
                except GceError as exc:
                    self.warn("replica %s is left without an external IP, and could not be given one again: %s"
                              % (name, exc))
            raise

    def _remove_access_config(self, instance: t.Mapping[str, t.Any], description: str) -> None:
        zone = short(instance.get("zone"))
        nic = nic0(instance)
        configs = [c for c in nic.get("accessConfigs") or [] if c.get("natIP") or c.get("name")]

        def remove() -> None:
            for config in configs:
                try:
                    self._wait(self.api.call("instances", "deleteAccessConfig", zone=zone, instance=instance["name"],
                                             accessConfig=config.get("name", EXTERNAL_NAT),
                                             networkInterface=nic.get("name", "nic0")), description)
                except GceError as exc:
                    if exc.status != 404:
                        raise

        self._act(description, remove)

    def _add_access_config(self, name: str, ip: str | None, description: str) -> None:
        instance = self.replicas[name]
        zone = short(instance.get("zone"))
        body = {"name": EXTERNAL_NAT, "type": "ONE_TO_ONE_NAT"}
        if ip:
            body["natIP"] = ip
        self._act(description, lambda: self._wait(self.api.call(
            "instances", "addAccessConfig", zone=zone, instance=name,
            networkInterface=nic0(instance).get("name", "nic0"), body=body), description))

    def _free_address(self, holder: t.Mapping[str, t.Any]) -> None:
        self._remove_access_config(holder, "free address %s (%s) from replica %s" % (
            self.spec.address, self.address["address"], holder["name"]))

    def _give_ephemeral(self, name: str) -> None:
        self._add_access_config(name, None, "give replica %s an ephemeral external IP" % name)

    # single
    def _single(self, name: str) -> None:
        spec = self.spec
        member = self.replicas[name]
        ip = self.address["address"]
        holder = self.holder()
        if holder is None or holder["name"] != name:
            own = external_ip_of(member)
            if own:
                # Its own ephemeral IP goes first: clients of the reserved address do not notice.
                self._remove_access_config(member, "remove the ephemeral external IP %s of replica %s" % (own, name))
            with self._giving_back(name if own else None, None):
                if self.rule is not None:
                    self._delete_rule()
                elif holder is not None:
                    self._free_address(holder)
                self._add_access_config(name, ip, "give replica %s the address %s (%s)" % (name, spec.address, ip))
            if holder is not None:
                self._give_ephemeral(holder["name"])
        self._delete_unused()

    # absent
    def _absent(self) -> None:
        self._delete_rule()
        self._delete_unused()

    def _delete_unused(self) -> None:
        """Every load-balancer resource the wanted state does not use, users before what they use."""
        spec = self.spec
        keep: set[str] = set()
        if spec.state == "balanced":
            keep.add("forwardingRules")
            if spec.backend == "backend_service":
                keep |= {"regionBackendServices", "regionHealthChecks"}
                keep |= {"instanceGroups/%s" % self._zone(n) for n in spec.members}
            else:
                keep.add("targetPools")
                if spec.health_check.enabled:
                    keep.add("httpHealthChecks")
        order = ["forwardingRules", "regionBackendServices", "targetPools", "instanceGroups", "regionHealthChecks",
                 "httpHealthChecks"]
        for resource in sorted(self.existing(), key=lambda r: (order.index(r.collection), r.label)):
            name = resource.collection
            if resource.collection == "instanceGroups":
                name = "instanceGroups/%s" % resource.scope["zone"]
            if name not in keep:
                self._delete(resource)

    # -- health -----------------------------------------------------------------------------------------
    def health(self) -> dict[str, str]:
        """name -> HEALTHY / UNHEALTHY / UNKNOWN for the members behind the load balancer, as GCE reports."""
        spec = self.spec
        found: dict[str, str] = {}
        names = {rel(i.get("selfLink")): n for n, i in self.replicas.items()}
        backend = self.current_backend()
        if backend == "backend_service" and self.service:
            for backend_item in self.service.get("backends") or []:
                answer = self.api.call("regionBackendServices", "getHealth", region=spec.region,
                                       backendService=spec.lb_name, body={"group": backend_item.get("group")})
                for status in answer.get("healthStatus") or []:
                    path = rel(status.get("instance"))
                    found[names.get(path, short(path) or path)] = status.get("healthState", "UNKNOWN")
        elif backend == "target_pool" and self.pool:
            for link in self.pool.get("instances") or []:
                answer = self.api.call("targetPools", "getHealth", region=spec.region, targetPool=spec.lb_name,
                                       body={"instance": link})
                states = [s.get("healthState", "UNKNOWN") for s in answer.get("healthStatus") or []]
                found[names.get(rel(link), short(link) or link)] = states[0] if states else "UNKNOWN"
        return found

    def wait_healthy(self) -> dict[str, str]:
        deadline = Deadline(self.spec.wait_timeout, self.clock)
        while True:
            health = self.health()
            waiting = {n: health.get(n, "UNKNOWN") for n in self.spec.wait_for or self.spec.members
                       if health.get(n) != "HEALTHY"}
            if not waiting:
                return health
            if deadline.expired():
                raise GceError("the load balancer is in place, but after %d seconds these members are not healthy: "
                               "%s; check that they answer the health check (%s port %s %s) and that a firewall rule "
                               "lets GCE's health checkers reach them" % (
                                   self.spec.wait_timeout,
                                   ", ".join("%s is %s" % item for item in sorted(waiting.items())),
                                   self.spec.health_check.protocol, self.spec.health_check.port,
                                   self.spec.health_check.request_path), reason="unhealthy")
            self.clock.sleep(min(2.0, max(0.0, deadline.remaining())))

    # -- the result ----------------------------------------------------------------------------------------
    def members_view(self, health: t.Mapping[str, str] | None,
                     names: t.Iterable[str] | None = None) -> list[dict[str, t.Any]]:
        if names is None:
            names = self.spec.members if self.check_mode else self.current_members()
        result = []
        for name in sorted(names):
            instance = self.replicas.get(name) or {}
            result.append({
                "name": name, "zone": short(instance.get("zone")), "internal_ip": nic0(instance).get("networkIP"),
                "external_ip": external_ip_of(instance),
                "health": (health or {}).get(name) if health is not None else None,
            })
        return result

    def address_view(self) -> dict[str, t.Any] | None:
        if not self.address:
            return None
        return {"name": self.spec.address, "ip": self.address.get("address"), "self_link": self.address.get("selfLink")}

    def resources_view(self) -> list[dict[str, t.Any]]:
        return [{"kind": KINDS[r.collection], "name": r.name, "zone": r.scope.get("zone"),
                 "region": r.scope.get("region"), "self_link": r.body.get("selfLink")} for r in self.existing()]

    def run(self) -> dict[str, t.Any]:
        # Nothing is put on the address in state absent: it may be gone already (a cluster torn down).
        address_required = self.spec.state != "absent"
        self.read(address_required=address_required)
        before = self.view()
        self.converge()
        if self.check_mode or not self.actions:
            after = self.predicted_view() if self.actions else before
        else:
            self.read(address_required=address_required)
            after = self.view()
        health = None
        if not self.check_mode and after["state"] == "balanced":
            health = self.wait_healthy() if self.spec.wait_healthy else self.health()
        elif self.check_mode and before["state"] == "balanced" and after["state"] == "balanced":
            health = self.health()
        return {
            "changed": bool(self.actions), "actions": self.actions,
            "state": after["state"], "backend": after["backend"],
            "address": self.address_view(),
            "holder": after["holder"],
            "members": self.members_view(health),
            "resources": self.resources_view(),
            "diff": {"before": before, "after": after},
        }

    def describe(self) -> dict[str, t.Any]:
        """The load balancer as it is (ha_lb_info), in the shape of :meth:`run`'s result; changes nothing.

        Only reads are sent (``listInstances`` and ``getHealth`` are POSTs that read), so check mode
        gives the same result. A missing address is reported as ``None``; everything else that
        :meth:`read` refuses fails here too. ``holder`` is whatever uses the address: the forwarding
        rule when balanced, the replica when single.
        """
        self.read(address_required=False)
        state = self.current_state()
        health = self.health() if state == "balanced" else None
        holder = self.rule if state == "balanced" and self.address else self.holder()
        return {
            "changed": False, "state": state, "backend": self.current_backend(), "address": self.address_view(),
            "holder": (holder or {}).get("name"),
            "members": self.members_view(health, self.current_members()),
            "resources": self.resources_view(),
        }


__all__ = ["LoadBalancer", "Spec", "spec_from_params", "target_from_params", "TARGET_ARGUMENT_SPEC", "STATES",
           "BACKENDS", "CHECK_PROTOCOLS"]
