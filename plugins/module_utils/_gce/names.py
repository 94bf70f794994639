# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: names, labels and resource links of the HA master."""

from __future__ import annotations

import re
import typing as t

RFC1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ZONE = re.compile(r"^(?P<region>[a-z]+-[a-z]+[0-9]+)-[a-z]$")
REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
METADATA_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

CLUSTER_LABEL = "kubeha-cluster"
ROLE_LABEL = "kubeha-role"
ROLE_MASTER = "master"
DATA_DEVICE_NAME = "master-pd"


class InvalidInput(ValueError):
    """Input that is wrong before any API call is made."""


def check_name(value: str, what: str) -> str:
    if not RFC1035.match(value or ""):
        raise InvalidInput(
            "%s '%s' is not a valid Compute Engine name: 1-63 characters, lowercase letters, digits and "
            "hyphens, starting with a letter and not ending with a hyphen (RFC 1035)" % (what, value))
    return value


def region_of(zone: str) -> str:
    """The region of a zone name (``europe-west1-c`` -> ``europe-west1``)."""
    match = ZONE.match(zone or "")
    if not match:
        raise InvalidInput("zone '%s' is not a Compute Engine zone name such as europe-west1-c" % zone)
    return match.group("region")


def check_region(region: str) -> str:
    if not REGION.match(region or ""):
        raise InvalidInput("region '%s' is not a Compute Engine region name such as europe-west1" % region)
    return region


def master_labels(cluster: str, extra: t.Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels every resource of the cluster's masters carries, plus ``extra``."""
    labels = {}
    for key, value in (extra or {}).items():
        value = "" if value is None else str(value)
        if not LABEL_KEY.match(key):
            raise InvalidInput("label key '%s' is not valid: lowercase letters, digits, '_' and '-', "
                               "starting with a letter, at most 63 characters" % key)
        if not LABEL_VALUE.match(value):
            raise InvalidInput("label '%s' has value '%s', which is not valid: lowercase letters, digits, "
                               "'_' and '-', at most 63 characters" % (key, value))
        labels[key] = value
    for key, value in ((CLUSTER_LABEL, cluster), (ROLE_LABEL, ROLE_MASTER)):
        if key in labels and labels[key] != value:
            raise InvalidInput("label '%s' is set by the collection to '%s'; it cannot be '%s'"
                               % (key, value, labels[key]))
        labels[key] = value
    return labels


def check_metadata(metadata: t.Mapping[str, t.Any] | None) -> dict[str, str]:
    result = {}
    for key, value in (metadata or {}).items():
        if not METADATA_KEY.match(key):
            raise InvalidInput("metadata key '%s' is not valid: letters, digits, '_' and '-', "
                               "at most 128 characters" % key)
        result[key] = "" if value is None else str(value)
    return result


def short(link: str | None) -> str | None:
    """The last path element of a resource URL, or ``None``."""
    if not link:
        return None
    return link.rstrip("/").rsplit("/", 1)[-1]


# -- the names of a cluster's resources (kube-up's): every module, filter and role takes them from here --------
def first_replica_name(cluster: str) -> str:
    """The first replica, ``CLUSTER-master`` (kube-up's MASTER_NAME)."""
    return "%s-master" % cluster


def replica_name(cluster: str, zone: str) -> str:
    """A later replica's default name, ``CLUSTER-master-X`` after its zone's letter."""
    return "%s-master-%s" % (cluster, zone.rsplit("-", 1)[-1])


def master_tag(cluster: str) -> str:
    """The network tag of the cluster's replicas (kube-up's MASTER_TAG)."""
    return "%s-master" % cluster


def address_name(cluster: str) -> str:
    """The regional reserved external address (kube-up's MASTER_RESERVED_IP)."""
    return "%s-master-ip" % cluster


def lb_name(cluster: str) -> str:
    """The forwarding rule, backend service or target pool, and the instance group of every zone."""
    return "%s-master" % cluster


def health_check_name(cluster: str) -> str:
    return "%s-master-hc" % cluster


def firewall_names(cluster: str) -> tuple[str, str, str]:
    """The firewall rules: HTTPS to the API servers, etcd between the masters, SSH from the controller."""
    return ("%s-master-https" % cluster, "%s-master-etcd" % cluster, "%s-master-ssh" % cluster)


def resource_names(cluster: str) -> dict[str, t.Any]:
    """Every name above, for the roles (filter kubeha.gce.resource_names)."""
    https, etcd, ssh = firewall_names(cluster)
    return {"first_replica": first_replica_name(cluster), "tag": master_tag(cluster), "address": address_name(cluster),
            "load_balancer": lb_name(cluster), "health_check": health_check_name(cluster),
            "firewall": {"https": https, "etcd": etcd, "ssh": ssh}}


def data_disk_name(replica: str) -> str:
    return "%s-pd" % replica


def is_master_of(resource: t.Mapping[str, t.Any], cluster: str) -> bool:
    """Whether ``resource`` carries the labels of a master of ``cluster``."""
    labels = resource.get("labels") or {}
    return labels.get(CLUSTER_LABEL) == cluster and labels.get(ROLE_LABEL) == ROLE_MASTER


def owner_marker(cluster: str) -> str:
    """How a resource that Compute Engine gives no labels (firewall, health check...) is marked as the
    cluster's: this text in its description."""
    return "%s=%s" % (CLUSTER_LABEL, cluster)


def has_owner_marker(resource: t.Mapping[str, t.Any], cluster: str) -> bool:
    """Whether the description of ``resource`` carries the owner marker of ``cluster`` as a whole word
    (the marker of cluster ``k`` is not found in that of cluster ``k2``)."""
    pattern = r"(?<![-a-z0-9_=])%s(?![-a-z0-9_])" % re.escape(owner_marker(cluster))
    return re.search(pattern, resource.get("description") or "") is not None


def instance_filter(cluster: str) -> str:
    """The list filter that selects a cluster's master instances by label."""
    return '(labels.%s = "%s") AND (labels.%s = "%s")' % (CLUSTER_LABEL, cluster, ROLE_LABEL, ROLE_MASTER)
