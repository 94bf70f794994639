#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gce_master_replica
short_description: Manage one Kubernetes master replica VM and its data disk on Compute Engine
version_added: 0.1.0
description:
  - Creates, updates in place or deletes one master replica of an HA Kubernetes control plane
    on Google Compute Engine, that is one VM instance and its persistent data disk.
  - The data disk is named C(NAME-pd), is attached with device name C(master-pd) (it appears as
    C(/dev/disk/by-id/google-master-pd) on the replica) and is never deleted with the instance.
  - Every resource carries the labels C(kubeha-cluster=CLUSTER) and C(kubeha-role=master), by
    which the replicas of a cluster are found (see M(kubeha.gce.gce_master_replica_info)).
    The instance also gets the network tag C(CLUSTER-master) for the firewall rules.
  - An existing instance or disk of that name without these labels, or with another cluster's,
    is never changed or deleted; the module fails instead.
  - On a re-run the labels, metadata, network tags, data disk attachment and external IP are
    changed in place when they differ. A difference that Compute Engine cannot change on an
    existing instance (machine type, network, service account, scopes) fails with a message that
    names the field and both values. The image and boot disk apply at creation only.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.gce
  - kubeha.gce.attributes
  - kubeha.gce.attributes.actiongroup_gce
options:
  cluster_name:
    description:
      - The name of the Kubernetes cluster (kube-up's C(INSTANCE_PREFIX)).
    type: str
    required: true
  name:
    description:
      - The replica's instance name.
      - Defaults to C(CLUSTER-master), the name of the first replica; later replicas are usually
        named C(CLUSTER-master-SUFFIX).
    type: str
  zone:
    description:
      - The zone of the replica, for example V(europe-west1-c).
    type: str
    required: true
  state:
    description:
      - V(present) creates the replica or brings it to the requested configuration.
      - V(absent) deletes the instance; its data disk only with O(delete_data_disk=true).
    type: str
    choices: [present, absent]
    default: present
  machine_type:
    description:
      - The machine type (kube-up's C(MASTER_SIZE)).
    type: str
    default: e2-standard-2
  image:
    description:
      - The boot image as a URL or path, an image or an image family.
      - Used when the instance is created only.
    type: str
    default: projects/debian-cloud/global/images/family/debian-12
  boot_disk_size_gb:
    description:
      - Size of the boot disk in GB, at creation.
    type: int
    default: 20
  boot_disk_type:
    description:
      - Type of the boot disk, at creation.
    type: str
    default: pd-balanced
  data_disk_size_gb:
    description:
      - Size of the data disk in GB (kube-up's C(MASTER_DISK_SIZE)), when it is created.
      - An existing data disk is kept as it is, with a warning if its size or type differ.
    type: int
    default: 20
  data_disk_type:
    description:
      - Type of the data disk (kube-up's C(MASTER_DISK_TYPE)), when it is created.
    type: str
    default: pd-ssd
  network:
    description:
      - The VPC network, by name or path.
    type: str
    default: default
  subnetwork:
    description:
      - The subnetwork in the replica's region, by name or path. Omit it for auto-mode networks.
    type: str
  tags:
    description:
      - Network tags, in addition to C(CLUSTER-master), which is always set.
    type: list
    elements: str
    default: []
  purge_tags:
    description:
      - Remove network tags that are not in O(tags).
    type: bool
    default: false
  labels:
    description:
      - Labels, in addition to C(kubeha-cluster) and C(kubeha-role), which are always set and
        cannot be given other values. They are set on the instance and on its disks.
    type: dict
    default: {}
  purge_labels:
    description:
      - Remove labels that are not in O(labels) (the collection's own labels always stay).
    type: bool
    default: false
  metadata:
    description:
      - Instance metadata, as a dictionary of keys and string values.
      - Never put key material here; metadata is readable by anything on the instance.
    type: dict
    default: {}
  purge_metadata:
    description:
      - Remove metadata keys that are not in O(metadata). Off by default, so keys that other tools
        add (for example C(ssh-keys)) are kept.
    type: bool
    default: false
  external_ip:
    description:
      - The replica's external IP.
      - V(none) gives it no external IP; V(ephemeral) gives it an ephemeral one (and is satisfied
        by any external IP it already has).
      - Any other value is the name of a reserved regional external address in the replica's
        region, such as C(CLUSTER-master-ip), which must not be in use by another resource.
    type: str
    default: ephemeral
  instance_service_account:
    description:
      - The service account the instance runs as. V(default) is the project's Compute Engine
        default service account.
    type: str
    default: default
  instance_scopes:
    description:
      - The OAuth2 scopes of the instance's service account, as URLs.
      - The default is what kube-up gave masters. Compute, read-only storage, logging and monitoring.
    type: list
    elements: str
    default:
      - https://www.googleapis.com/auth/compute
      - https://www.googleapis.com/auth/devstorage.read_only
      - https://www.googleapis.com/auth/logging.write
      - https://www.googleapis.com/auth/monitoring
  delete_data_disk:
    description:
      - With O(state=absent), also delete the data disk, and with it the replica's etcd data.
      - Without it the disk is kept; a replica created again with the same name and zone
        attaches it again.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for each Compute Engine operation to finish. The module fails when an
        operation fails or is not finished in time; a re-run then converges.
    type: int
    default: 600
seealso:
  - module: kubeha.gce.gce_master_replica_info
"""

EXAMPLES = r"""
- name: Create the first master replica of cluster kubernetes on its reserved IP
  kubeha.gce.gce_master_replica:
    cluster_name: kubernetes
    zone: europe-west1-b
    external_ip: kubernetes-master-ip
    metadata:
      cluster-name: kubernetes
  register: first

- name: Add a replica in another zone, with ephemeral external IP
  kubeha.gce.gce_master_replica:
    cluster_name: kubernetes
    name: kubernetes-master-c1x
    zone: europe-west1-c
    labels:
      team: platform

- name: Set credentials once for every module of the collection
  module_defaults:
    group/kubeha.gce.gce:
      auth_kind: serviceaccount
      service_account_file: /etc/kubeha/sa.json
      project: my-project
  block:
    - name: Delete a replica but keep its data disk
      kubeha.gce.gce_master_replica:
        cluster_name: kubernetes
        name: kubernetes-master-c1x
        zone: europe-west1-c
        state: absent
"""

RETURN = r"""
replica:
  description:
    - The replica after the task; in check mode, as it would be. Empty after O(state=absent).
    - In check mode the values Compute Engine assigns (IPs, self link) of a new replica are null.
  returned: always
  type: dict
  contains:
    name:
      description: The instance name.
      type: str
      sample: kubernetes-master
    cluster:
      description: The cluster, from the C(kubeha-cluster) label.
      type: str
      sample: kubernetes
    zone:
      description: The zone.
      type: str
      sample: europe-west1-b
    region:
      description: The region of the zone.
      type: str
      sample: europe-west1
    status:
      description: The instance status (C(PROVISIONING), C(RUNNING), C(TERMINATED)...).
      type: str
      sample: RUNNING
    machine_type:
      description: The machine type.
      type: str
      sample: e2-standard-2
    internal_ip:
      description: The internal IP of the first network interface.
      type: str
      sample: 10.132.0.2
    external_ip:
      description: The external IP, or null.
      type: str
      sample: 203.0.113.10
    self_link:
      description: The instance URL.
      type: str
    labels:
      description: The instance labels.
      type: dict
      sample: {"kubeha-cluster": "kubernetes", "kubeha-role": "master"}
    tags:
      description: The network tags, sorted.
      type: list
      elements: str
      sample: ["kubernetes-master"]
    metadata:
      description: The instance metadata as a dictionary.
      type: dict
    data_disk:
      description: The data disk.
      type: dict
      contains:
        name:
          description: The disk name.
          type: str
          sample: kubernetes-master-pd
        self_link:
          description: The disk URL.
          type: str
        size_gb:
          description: The size in GB.
          type: int
        type:
          description: The disk type.
          type: str
          sample: pd-ssd
        labels:
          description: The disk labels.
          type: dict
        users:
          description: The instances the disk is attached to.
          type: list
          elements: str
actions:
  description: The changes made (or, in check mode, that would be made), in order.
  returned: always
  type: list
  elements: str
  sample: ["create disk kubernetes-master-pd", "create instance kubernetes-master"]
kept_data_disk:
  description: The data disk that was kept with O(state=absent), or null.
  returned: when O(state=absent)
  type: dict
"""

from ansible_collections.kubeha.gce.plugins.module_utils._gce.module import checked, converge, gce_module
from ansible_collections.kubeha.gce.plugins.module_utils._gce.replica import (
    DEFAULT_INSTANCE_SCOPES,
    Replica,
    spec_from_params,
)


def main() -> None:
    argument_spec = dict(
        cluster_name=dict(type="str", required=True),
        name=dict(type="str"),
        zone=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        machine_type=dict(type="str", default="e2-standard-2"),
        image=dict(type="str", default="projects/debian-cloud/global/images/family/debian-12"),
        boot_disk_size_gb=dict(type="int", default=20),
        boot_disk_type=dict(type="str", default="pd-balanced"),
        data_disk_size_gb=dict(type="int", default=20),
        data_disk_type=dict(type="str", default="pd-ssd"),
        network=dict(type="str", default="default"),
        subnetwork=dict(type="str"),
        tags=dict(type="list", elements="str", default=[]),
        purge_tags=dict(type="bool", default=False),
        labels=dict(type="dict", default={}),
        purge_labels=dict(type="bool", default=False),
        metadata=dict(type="dict", default={}),
        purge_metadata=dict(type="bool", default=False),
        external_ip=dict(type="str", default="ephemeral"),
        instance_service_account=dict(type="str", default="default"),
        instance_scopes=dict(type="list", elements="str", default=list(DEFAULT_INSTANCE_SCOPES)),
        delete_data_disk=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=600),
    )
    module = gce_module(argument_spec)
    spec = checked(module, spec_from_params, module.params)

    converge(module, spec, Replica,
             lambda replica: replica.present() if module.params["state"] == "present" else replica.absent())


if __name__ == "__main__":
    main()
