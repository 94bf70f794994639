# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: one master replica (instance + data disk)."""

from __future__ import annotations

import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._gce.address import external_address
from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import ComputeApi, GceError, with_fingerprint
from ansible_collections.kubeha.gce.plugins.module_utils._gce.converger import Converger
from ansible_collections.kubeha.gce.plugins.module_utils._gce.names import (
    CLUSTER_LABEL,
    DATA_DEVICE_NAME,
    ROLE_LABEL,
    InvalidInput,
    address_name,
    check_metadata,
    check_name,
    data_disk_name,
    first_replica_name,
    has_owner_marker,
    instance_filter,
    is_master_of,
    master_labels,
    master_tag,
    region_of,
    short,
)

DEFAULT_INSTANCE_SCOPES = [
    "https://www.googleapis.com/auth/compute",
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring",
]
EXTERNAL_NAT = "External NAT"

#: Human names for the resource collections that appear in ``users`` lists.
RESOURCE_KINDS = {
    "instances": "instance",
    "forwardingRules": "forwarding rule",
    "targetPools": "target pool",
    "globalForwardingRules": "global forwarding rule",
    "routers": "router",
}


class Spec(t.NamedTuple):
    """What the task asks for, checked before any API call."""

    cluster: str
    name: str
    zone: str
    region: str
    machine_type: str
    image: str
    boot_disk_size_gb: int
    boot_disk_type: str
    data_disk: str
    data_disk_size_gb: int
    data_disk_type: str
    network: str
    subnetwork: str | None
    tags: list[str]
    labels: dict[str, str]
    metadata: dict[str, str]
    purge_labels: bool
    purge_metadata: bool
    purge_tags: bool
    external_ip: str
    instance_service_account: str
    instance_scopes: list[str]
    delete_data_disk: bool
    wait_timeout: int


def spec_from_params(params: t.Mapping[str, t.Any]) -> Spec:
    """Build and validate a :class:`Spec`; raises InvalidInput naming the problem."""
    cluster = check_name(params["cluster_name"], "cluster_name")
    name = check_name(params.get("name") or first_replica_name(cluster), "name")
    zone = params["zone"]
    region = region_of(zone)
    # The data disk's name must itself be a valid name: name + "-pd" is 3 characters longer.
    check_name(data_disk_name(name), "data disk name (name + '-pd')")
    tags = []
    for tag in [master_tag(cluster)] + list(params.get("tags") or []):
        check_name(tag, "tag")
        if tag not in tags:
            tags.append(tag)
    image = params.get("image") or ""
    if "/" not in image:
        raise InvalidInput("image '%s' must be an image URL or path, for example "
                           "projects/debian-cloud/global/images/family/debian-12" % image)
    external_ip = params.get("external_ip") or "ephemeral"
    if external_ip not in ("none", "ephemeral"):
        check_name(external_ip, "external_ip (a reserved address name, 'ephemeral' or 'none')")
    for key in ("boot_disk_size_gb", "data_disk_size_gb"):
        if params[key] < 10:
            raise InvalidInput("%s is %d; Compute Engine disks are at least 10 GB" % (key, params[key]))
    return Spec(
        cluster=cluster,
        name=name,
        zone=zone,
        region=region,
        machine_type=params["machine_type"],
        image=image,
        boot_disk_size_gb=params["boot_disk_size_gb"],
        boot_disk_type=params["boot_disk_type"],
        data_disk=data_disk_name(name),
        data_disk_size_gb=params["data_disk_size_gb"],
        data_disk_type=params["data_disk_type"],
        network=params["network"],
        subnetwork=params.get("subnetwork"),
        tags=tags,
        labels=master_labels(cluster, params.get("labels")),
        metadata=check_metadata(params.get("metadata")),
        purge_labels=params["purge_labels"],
        purge_metadata=params["purge_metadata"],
        purge_tags=params["purge_tags"],
        external_ip=external_ip,
        instance_service_account=params["instance_service_account"],
        instance_scopes=list(params["instance_scopes"]),
        delete_data_disk=params["delete_data_disk"],
        wait_timeout=params["wait_timeout"],
    )


# -- reading GCE resources into the module's view -------------------------------------------

def metadata_dict(instance: t.Mapping[str, t.Any]) -> dict[str, str]:
    return {i["key"]: i.get("value", "") for i in (instance.get("metadata") or {}).get("items") or []}


def nic0(instance: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    nics = instance.get("networkInterfaces") or [{}]
    return nics[0]


def external_ip_of(instance: t.Mapping[str, t.Any]) -> str | None:
    for config in nic0(instance).get("accessConfigs") or []:
        if config.get("natIP"):
            return config["natIP"]
    return None


def attached_data_disk(instance: t.Mapping[str, t.Any]) -> dict[str, t.Any] | None:
    for disk in instance.get("disks") or []:
        if disk.get("deviceName") == DATA_DEVICE_NAME:
            return disk
    return None


def disk_view(disk: t.Mapping[str, t.Any] | None) -> dict[str, t.Any] | None:
    if not disk:
        return None
    return {
        "name": disk.get("name"),
        "self_link": disk.get("selfLink"),
        "size_gb": int(disk["sizeGb"]) if disk.get("sizeGb") else None,
        "type": short(disk.get("type")),
        "labels": dict(disk.get("labels") or {}),
        "users": [short(u) for u in disk.get("users") or []],
    }


def replica_view(instance: t.Mapping[str, t.Any] | None,
                 disk: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    """The replica as the modules return it (empty when the instance does not exist)."""
    if not instance:
        return {}
    zone = short(instance.get("zone")) or ""
    attached = attached_data_disk(instance)
    return {
        "name": instance.get("name"),
        "cluster": (instance.get("labels") or {}).get(CLUSTER_LABEL),
        "zone": zone,
        "region": region_of(zone) if zone else None,
        "status": instance.get("status"),
        "machine_type": short(instance.get("machineType")),
        "internal_ip": nic0(instance).get("networkIP"),
        "external_ip": external_ip_of(instance),
        "self_link": instance.get("selfLink"),
        "labels": dict(instance.get("labels") or {}),
        "tags": sorted((instance.get("tags") or {}).get("items") or []),
        "metadata": metadata_dict(instance),
        "data_disk": disk_view(disk) or ({"name": short(attached.get("source")), "self_link": attached.get("source")}
                                         if attached else None),
    }


def describe_user(link: str, with_zone: bool = False) -> str:
    """``.../regions/r/forwardingRules/k-master`` -> ``forwarding rule 'k-master'``; ``with_zone`` adds
    `` (ZONE)`` for a zonal resource."""
    parts = link.rstrip("/").split("/")
    kind = RESOURCE_KINDS.get(parts[-2], parts[-2]) if len(parts) > 1 else "resource"
    where = ""
    if with_zone and "zones" in parts[:-2]:
        where = " (%s)" % parts[parts.index("zones") + 1]
    return "%s '%s'%s" % (kind, parts[-1], where)


# -- the resource ------------------------------------------------------------------------------

class Replica(Converger):
    """Answers "does it need to change?", then changes only what differs."""

    spec: Spec

    # reads
    def _instance(self) -> dict[str, t.Any] | None:
        return self.api.get("instances", zone=self.spec.zone, instance=self.spec.name)

    def _disk(self) -> dict[str, t.Any] | None:
        return self.api.get("disks", zone=self.spec.zone, disk=self.spec.data_disk)

    # ownership: never touch another cluster's (or nobody's) resources
    def _check_owner(self, resource: t.Mapping[str, t.Any], what: str) -> None:
        labels = resource.get("labels") or {}
        if not is_master_of(resource, self.spec.cluster):
            raise GceError(
                "%s '%s' in zone %s exists but is not a master of cluster '%s' (its labels %s=%s, %s=%s); "
                "refusing to manage it" % (
                    what, resource.get("name"), self.spec.zone, self.spec.cluster,
                    CLUSTER_LABEL, labels.get(CLUSTER_LABEL, "<unset>"),
                    ROLE_LABEL, labels.get(ROLE_LABEL, "<unset>")))

    # external address
    def _reserved_address(self, instance: t.Mapping[str, t.Any] | None) -> dict[str, t.Any] | None:
        spec = self.spec
        if spec.external_ip in ("none", "ephemeral"):
            return None
        address = external_address(self.api, spec.external_ip, spec.region, prefix="external_ip: ",
                                   elsewhere_hint=" of zone %s" % spec.zone)
        others = self._other_users(address, instance)
        if others:
            raise GceError("external_ip: address '%s' (%s) is in use by %s; it cannot be given to replica '%s'"
                           % (spec.external_ip, address.get("address"),
                              ", ".join(describe_user(u) for u in others), spec.name),
                           status=409, reason="resourceInUseByAnotherResource")
        return address

    def _read(self, check_disk: bool = True) -> tuple[dict[str, t.Any] | None, dict[str, t.Any] | None]:
        """The instance and the data disk, after making sure they are this cluster's."""
        instance = self._instance()
        disk = self._disk()
        if instance:
            self._check_owner(instance, "instance")
        if disk and check_disk:
            self._check_owner(disk, "disk")
        return instance, disk

    @staticmethod
    def _other_users(resource: t.Mapping[str, t.Any], instance: t.Mapping[str, t.Any] | None) -> list[str]:
        own = instance.get("selfLink") if instance else None
        return [u for u in resource.get("users") or [] if u != own]

    # present
    def present(self) -> dict[str, t.Any]:
        spec = self.spec
        instance, disk = self._read()
        address = self._reserved_address(instance)
        before = replica_view(instance, disk)

        if disk is None:
            if instance is None and self.api.get("zones", zone=spec.zone) is None:
                raise GceError("zone '%s' does not exist in project %s" % (spec.zone, self.api.project),
                               status=404, reason="notFound")
            self._act("create disk %s" % spec.data_disk, self._create_disk)
        else:
            self._check_disk(disk, instance)
            self._converge_labels("disks", spec.data_disk, disk)

        if instance is None:
            self._act("create instance %s" % spec.name, lambda: self._create_instance(address))
        else:
            self._check_immutable(instance)
            if attached_data_disk(instance) is None:
                self._act("attach disk %s to %s" % (spec.data_disk, spec.name), self._attach_disk)
            self._converge_labels("instances", spec.name, instance)
            self._converge_metadata(instance)
            self._converge_tags(instance)
            self._converge_external_ip(instance, address)

        if self.check_mode:
            after = self._predict(instance, disk, address)
        else:
            after = replica_view(self._instance(), self._disk()) if self.actions else before
        return {"changed": bool(self.actions), "replica": after, "actions": self.actions,
                "diff": {"before": before, "after": after}}

    def _check_disk(self, disk: t.Mapping[str, t.Any], instance: t.Mapping[str, t.Any] | None) -> None:
        spec = self.spec
        others = self._other_users(disk, instance)
        if others:
            raise GceError("disk '%s' is attached to %s; it can only be the data disk of replica '%s'"
                           % (spec.data_disk, ", ".join(describe_user(u) for u in others), spec.name),
                           status=409, reason="resourceInUseByAnotherResource")
        size = int(disk.get("sizeGb") or 0)
        kind = short(disk.get("type"))
        if size != spec.data_disk_size_gb or kind != spec.data_disk_type:
            self.warn("data disk '%s' exists with %d GB %s (asked for %d GB %s); it is kept as it is, "
                      "with its data" % (spec.data_disk, size, kind, spec.data_disk_size_gb, spec.data_disk_type))

    def _check_immutable(self, instance: t.Mapping[str, t.Any]) -> None:
        spec = self.spec
        nic = nic0(instance)
        differences = [
            ("machine_type", spec.machine_type, short(instance.get("machineType"))),
            ("network", short(spec.network), short(nic.get("network"))),
        ]
        if spec.subnetwork:
            differences.append(("subnetwork", short(spec.subnetwork), short(nic.get("subnetwork"))))
        accounts = instance.get("serviceAccounts") or []
        current_account = accounts[0] if accounts else {}
        if spec.instance_service_account != "default":
            differences.append(("instance_service_account", spec.instance_service_account,
                                current_account.get("email")))
        differences.append(("instance_scopes", sorted(spec.instance_scopes),
                            sorted(current_account.get("scopes") or [])))
        attached = attached_data_disk(instance)
        if attached and short(attached.get("source")) != spec.data_disk:
            differences.append(("data disk (device %s)" % DATA_DEVICE_NAME, spec.data_disk,
                                short(attached.get("source"))))
        for field, wanted, actual in differences:
            if wanted != actual:
                raise GceError(
                    "replica '%s' in zone %s has %s %s, the task asks for %s; Compute Engine cannot change "
                    "that on a running instance: replace the replica (kubeha.gce.recover) or keep the current "
                    "value" % (spec.name, spec.zone, field, actual, wanted),
                    status=400, reason="immutableField")

    # creation
    def _create_disk(self) -> None:
        spec = self.spec
        body = {
            "name": spec.data_disk,
            "sizeGb": str(spec.data_disk_size_gb),
            "type": "projects/%s/zones/%s/diskTypes/%s" % (self.api.project, spec.zone, spec.data_disk_type),
            "labels": dict(spec.labels),
            "description": "etcd data of master replica %s of cluster %s" % (spec.name, spec.cluster),
        }
        self.api.insert("disks", body, spec.wait_timeout, "creating disk %s" % spec.data_disk, zone=spec.zone)

    def _instance_body(self, address: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
        spec = self.spec
        project = self.api.project
        nic: dict[str, t.Any] = {"network": _path(project, "global/networks", spec.network)}
        if spec.subnetwork:
            nic["subnetwork"] = _path(project, "regions/%s/subnetworks" % spec.region, spec.subnetwork)
        if spec.external_ip != "none":
            access = {"name": EXTERNAL_NAT, "type": "ONE_TO_ONE_NAT"}
            if address:
                access["natIP"] = address["address"]
            nic["accessConfigs"] = [access]
        return {
            "name": spec.name,
            "description": "Kubernetes master replica of cluster %s" % spec.cluster,
            "machineType": "projects/%s/zones/%s/machineTypes/%s" % (project, spec.zone, spec.machine_type),
            "labels": dict(spec.labels),
            "tags": {"items": list(spec.tags)},
            "metadata": {"items": [{"key": k, "value": v} for k, v in sorted(spec.metadata.items())]},
            "disks": [
                {
                    "boot": True,
                    "autoDelete": True,
                    "initializeParams": {
                        "sourceImage": spec.image,
                        "diskSizeGb": str(spec.boot_disk_size_gb),
                        "diskType": "projects/%s/zones/%s/diskTypes/%s" % (project, spec.zone, spec.boot_disk_type),
                        "labels": dict(spec.labels),
                    },
                },
                self._data_disk_attachment(),
            ],
            "networkInterfaces": [nic],
            "serviceAccounts": [{"email": spec.instance_service_account, "scopes": list(spec.instance_scopes)}],
        }

    def _data_disk_attachment(self) -> dict[str, t.Any]:
        spec = self.spec
        return {
            "boot": False,
            "autoDelete": False,
            "deviceName": DATA_DEVICE_NAME,
            "mode": "READ_WRITE",
            "source": "projects/%s/zones/%s/disks/%s" % (self.api.project, spec.zone, spec.data_disk),
        }

    def _create_instance(self, address: t.Mapping[str, t.Any] | None) -> None:
        spec = self.spec
        self.api.insert("instances", self._instance_body(address), spec.wait_timeout,
                        "creating instance %s" % spec.name, zone=spec.zone)

    def _attach_disk(self) -> None:
        spec = self.spec
        self._wait(self.api.call("instances", "attachDisk", zone=spec.zone, instance=spec.name,
                                 body=self._data_disk_attachment()),
                   "attaching disk %s to %s" % (spec.data_disk, spec.name))

    # in-place changes, each with its fingerprint
    def _wanted_labels(self, current: t.Mapping[str, str]) -> dict[str, str]:
        labels = {} if self.spec.purge_labels else dict(current)
        labels.update(self.spec.labels)
        return labels

    def _wanted_metadata(self, current: t.Mapping[str, str]) -> dict[str, str]:
        metadata = {} if self.spec.purge_metadata else dict(current)
        metadata.update(self.spec.metadata)
        return metadata

    def _wanted_tags(self, current: t.Iterable[str]) -> list[str]:
        tags = set() if self.spec.purge_tags else set(current)
        return sorted(tags | set(self.spec.tags))

    def _converge_labels(self, collection: str, name: str, resource: t.Mapping[str, t.Any]) -> None:
        if self._wanted_labels(resource.get("labels") or {}) == (resource.get("labels") or {}):
            return
        key = "instance" if collection == "instances" else "resource"
        singular = collection[:-1]

        def read() -> dict[str, t.Any] | None:
            return self.api.get(collection, zone=self.spec.zone, **{singular: name})

        def apply(fresh: t.Mapping[str, t.Any]) -> bool:
            wanted = self._wanted_labels(fresh.get("labels") or {})
            if wanted == (fresh.get("labels") or {}):
                return False
            body = {"labels": wanted, "labelFingerprint": fresh.get("labelFingerprint")}
            self._wait(self.api.call(collection, "setLabels", zone=self.spec.zone, body=body, **{key: name}),
                       "setting labels of %s %s" % (singular, name))
            return True

        self._act("set labels of %s %s" % (singular, name), lambda: with_fingerprint(resource, read, apply))

    def _converge_metadata(self, instance: t.Mapping[str, t.Any]) -> None:
        if self._wanted_metadata(metadata_dict(instance)) == metadata_dict(instance):
            return

        def apply(fresh: t.Mapping[str, t.Any]) -> bool:
            current = metadata_dict(fresh)
            wanted = self._wanted_metadata(current)
            if wanted == current:
                return False
            body = {"items": [{"key": k, "value": v} for k, v in sorted(wanted.items())],
                    "fingerprint": (fresh.get("metadata") or {}).get("fingerprint")}
            self._wait(self.api.call("instances", "setMetadata", zone=self.spec.zone, instance=self.spec.name,
                                     body=body), "setting metadata of instance %s" % self.spec.name)
            return True

        self._act("set metadata of instance %s" % self.spec.name,
                  lambda: with_fingerprint(instance, self._instance, apply))

    def _converge_tags(self, instance: t.Mapping[str, t.Any]) -> None:
        current = sorted((instance.get("tags") or {}).get("items") or [])
        if self._wanted_tags(current) == current:
            return

        def apply(fresh: t.Mapping[str, t.Any]) -> bool:
            now = sorted((fresh.get("tags") or {}).get("items") or [])
            wanted = self._wanted_tags(now)
            if wanted == now:
                return False
            body = {"items": wanted, "fingerprint": (fresh.get("tags") or {}).get("fingerprint")}
            self._wait(self.api.call("instances", "setTags", zone=self.spec.zone, instance=self.spec.name,
                                     body=body), "setting tags of instance %s" % self.spec.name)
            return True

        self._act("set tags of instance %s" % self.spec.name,
                  lambda: with_fingerprint(instance, self._instance, apply))

    def _converge_external_ip(self, instance: t.Mapping[str, t.Any], address: t.Mapping[str, t.Any] | None) -> None:
        spec = self.spec
        nic = nic0(instance)
        configs = nic.get("accessConfigs") or []
        current_ip = external_ip_of(instance)
        if spec.external_ip == "none":
            wanted_ok = not configs
        elif spec.external_ip == "ephemeral":
            wanted_ok = bool(current_ip)
        else:
            wanted_ok = address is not None and current_ip == address.get("address")
        if wanted_ok:
            return
        nic_name = nic.get("name", "nic0")

        def change() -> None:
            for config in configs:
                self._wait(self.api.call("instances", "deleteAccessConfig", zone=spec.zone, instance=spec.name,
                                         accessConfig=config.get("name", EXTERNAL_NAT), networkInterface=nic_name),
                           "removing the external IP of %s" % spec.name)
            if spec.external_ip != "none":
                body = {"name": EXTERNAL_NAT, "type": "ONE_TO_ONE_NAT"}
                if address:
                    body["natIP"] = address["address"]
                self._wait(self.api.call("instances", "addAccessConfig", zone=spec.zone, instance=spec.name,
                                         networkInterface=nic_name, body=body),
                           "giving %s its external IP" % spec.name)

        self._act("set external IP of instance %s to %s" % (spec.name, spec.external_ip), change)

    def _predict(self, instance: t.Mapping[str, t.Any] | None, disk: t.Mapping[str, t.Any] | None,
                 address: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
        """What the replica will look like after a real run (check mode)."""
        spec = self.spec
        if disk is None:
            disk = {"name": spec.data_disk, "sizeGb": str(spec.data_disk_size_gb), "type": spec.data_disk_type,
                    "labels": spec.labels}
        else:
            disk = dict(disk, labels=self._wanted_labels(disk.get("labels") or {}))
        if instance is None:
            view = replica_view(self._instance_body(address), disk)
            view.update(zone=spec.zone, region=spec.region, status="RUNNING", machine_type=spec.machine_type,
                        self_link=None, internal_ip=None)
            if spec.external_ip == "ephemeral":
                view["external_ip"] = None
            return view
        view = replica_view(instance, disk)
        view["labels"] = self._wanted_labels(instance.get("labels") or {})
        view["metadata"] = self._wanted_metadata(metadata_dict(instance))
        view["tags"] = self._wanted_tags((instance.get("tags") or {}).get("items") or [])
        if spec.external_ip == "none":
            view["external_ip"] = None
        elif address:
            view["external_ip"] = address.get("address")
        return view

    # absent
    def absent(self) -> dict[str, t.Any]:
        spec = self.spec
        instance, disk = self._read(check_disk=spec.delete_data_disk)
        if disk and spec.delete_data_disk:
            others = self._other_users(disk, instance)
            if others:
                raise GceError("disk '%s' is attached to %s; not deleting it"
                               % (spec.data_disk, ", ".join(describe_user(u) for u in others)),
                               status=409, reason="resourceInUseByAnotherResource")
        before = replica_view(instance, disk)
        if instance:
            self._act("delete instance %s" % spec.name, self._delete_instance)
        if disk and spec.delete_data_disk:
            self._act("delete disk %s" % spec.data_disk, self._delete_disk)
        kept = disk_view(disk) if disk and not spec.delete_data_disk else None
        after: dict[str, t.Any] = {}
        return {"changed": bool(self.actions), "replica": after, "actions": self.actions,
                "kept_data_disk": kept, "diff": {"before": before, "after": after}}

    def _delete_instance(self) -> None:
        spec = self.spec
        self.api.delete("instances", spec.wait_timeout, "deleting instance %s" % spec.name, zone=spec.zone,
                        instance=spec.name)

    def _delete_disk(self) -> None:
        spec = self.spec
        self.api.delete("disks", spec.wait_timeout, "deleting disk %s" % spec.data_disk, zone=spec.zone,
                        disk=spec.data_disk)


def _path(project: str, collection: str, value: str) -> str:
    """A resource given by name or by path/URL, as a path GCE accepts."""
    return value if "/" in value else "projects/%s/%s/%s" % (project, collection, value)


# -- listing -----------------------------------------------------------------------------------

def cluster_instances(api: ComputeApi, cluster: str, region: str) -> list[dict[str, t.Any]]:
    """The instances of a cluster's replicas in every zone of ``region``, found by label."""
    found = []
    for instance in api.aggregated("instances", filter=instance_filter(cluster)):
        # The filter is applied by GCE; check again so a filter mistake can never pick up
        # another cluster's instances.
        zone = short(instance.get("zone")) or ""
        if is_master_of(instance, cluster) and zone and region_of(zone) == region:
            found.append(instance)
    return found


def list_replicas(api: ComputeApi, cluster: str, region: str) -> list[dict[str, t.Any]]:
    """A cluster's replicas in every zone of ``region`` that answers, found by label, sorted by name.

    A zone that stops answering while its replicas' disks are read is added to ``api.unreachable``; its
    replicas are listed without their disk's details.
    """
    found = []
    for instance in cluster_instances(api, cluster, region):
        zone = short(instance.get("zone")) or ""
        attached = attached_data_disk(instance)
        disk = None
        if attached and "zones/%s" % zone not in api.unreachable:
            try:
                disk = api.get("disks", zone=zone, disk=short(attached.get("source")))
            except GceError as exc:
                if exc.kind != "unavailable":
                    raise
                api.unreachable["zones/%s" % zone] = str(exc)
        found.append(replica_view(instance, disk))
    return sorted(found, key=lambda r: r["name"])


def unavailable_zones(api: ComputeApi, region: str) -> list[dict[str, str]]:
    """The zones of ``region`` that did not answer the calls made so far, with what GCE said, by name."""
    zones = [(scope.split("/", 1)[1], message) for scope, message in api.unreachable.items()
             if scope.startswith("zones/") and region_of(scope.split("/", 1)[1]) == region]
    return [{"name": zone, "message": message} for zone, message in sorted(zones)]


def detached_data_disks(api: ComputeApi, cluster: str, region: str) -> list[dict[str, str]]:
    """The data disks of a cluster's replicas in ``region`` (by label and name) that no VM has attached: those of
    replicas whose VM is gone, which a recover attaches to a new VM. Sorted by name."""
    found = []
    for disk in api.aggregated("disks", filter=instance_filter(cluster)):
        zone = short(disk.get("zone")) or ""
        name = disk.get("name") or ""
        if (is_master_of(disk, cluster) and zone and region_of(zone) == region and name.endswith("-pd")
                and not disk.get("users")):
            found.append({"name": name, "zone": zone, "replica": name[:-len("-pd")]})
    return sorted(found, key=lambda d: d["name"])


def cluster_region(api: ComputeApi, cluster: str) -> str:
    """The region of a cluster, as that of its reserved address (regional calls answer in a zone outage, and every
    cluster has one from its bootstrap on); empty when the project has none. Several regions are an error."""
    name = address_name(cluster)
    found = api.aggregated("addresses", filter='name = "%s"' % name)
    regions = sorted({short(a.get("region")) or "" for a in found
                      if a.get("name") == name and a.get("region")
                      and (is_master_of(a, cluster) or has_owner_marker(a, cluster))})
    if len(regions) > 1:
        raise GceError("cluster '%s' has a reserved address %s in several regions (%s): give zone or region to say "
                       "which cluster is meant" % (cluster, name, ", ".join(regions)),
                       reason="ambiguous")
    return regions[0] if regions else ""


def region_zones(api: ComputeApi, region: str) -> list[dict[str, str]]:
    """The zones of ``region`` with their status, sorted by name."""
    zones = [z for z in api.list_all("zones") if short(z.get("region")) == region]
    return sorted(({"name": z["name"], "status": z.get("status", "UP")} for z in zones), key=lambda z: z["name"])


__all__ = ["Replica", "Spec", "spec_from_params", "cluster_instances", "cluster_region", "detached_data_disks", "list_replicas",
           "region_zones",
           "unavailable_zones", "describe_user",
           "InvalidInput"]
