#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gce_master_replica_info
short_description: List the master replicas of a Kubernetes cluster on Compute Engine
version_added: 0.1.0
description:
  - Lists the master replicas of one cluster in every zone of a region, found by their labels
    C(kubeha-cluster=CLUSTER) and C(kubeha-role=master), never by name.
  - Read-only; never reports a change.
  - A zone that does not answer (Compute Engine reports it C(UNREACHABLE) in an outage) is not an error.
    It is returned in RV(unavailable_zones), its status in RV(zones) is C(UNAVAILABLE), and the replicas
    of every other zone are listed as usual. The replicas of an unavailable zone cannot be listed.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.gce
  - kubeha.gce.attributes.info_module
  - kubeha.gce.attributes.actiongroup_gce
options:
  cluster_name:
    description:
      - The name of the Kubernetes cluster.
    type: str
    required: true
  region:
    description:
      - The region to list the replicas of, for example V(europe-west1).
      - When neither O(region) nor O(zone) is given, the region is that of the cluster's reserved address
        C(CLUSTER-master-ip), found across the project (it answers in a zone outage); a project without it
        returns an empty RV(region) and no replicas.
    type: str
  zone:
    description:
      - A zone of the region to list the replicas of; the replicas of every zone of its region
        are listed.
    type: str
  detached_data_disks:
    description:
      - Also list the data disks of the cluster's replicas that no VM has attached (RV(detached_data_disks)), those
        of replicas whose VM is gone. One more call.
    type: bool
    default: false
    version_added: 0.1.0
seealso:
  - module: kubeha.gce.gce_master_replica
"""

EXAMPLES = r"""
- name: List the master replicas of cluster kubernetes
  kubeha.gce.gce_master_replica_info:
    cluster_name: kubernetes
    region: europe-west1
  register: masters

- name: Show the zones that already hold a replica
  ansible.builtin.debug:
    msg: "{{ masters.replicas | map(attribute='zone') | list }}"
"""

RETURN = r"""
region:
  description: The region that was listed; empty when it was to be found and the cluster has no reserved address.
  returned: always
  type: str
  sample: europe-west1
zones:
  description:
    - The zones of the region and their status (C(UP) or C(DOWN) as Compute Engine says, or
      C(UNAVAILABLE) when the zone did not answer), sorted by name, so that a playbook can check a
      zone exists and answers before it creates anything there.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: europe-west1-b, status: UP}
    - {name: europe-west1-c, status: UNAVAILABLE}
unavailable_zones:
  description:
    - The zones of the region that did not answer, with what Compute Engine said; replicas there are
      missing from RV(replicas). Empty when every zone answered.
  returned: always
  type: list
  elements: dict
  sample:
    - name: europe-west1-c
      message: "Scope 'zones/europe-west1-c' is unreachable: the zone is currently unavailable."
detached_data_disks:
  description:
    - With O(detached_data_disks), the data disks of the cluster's replicas (by label, named C(REPLICA-pd)) in the
      region that no VM has attached, sorted by name, each with its C(name), C(zone) and the C(replica) it belongs
      to; in a zone that does not answer, none can be listed.
  returned: when O(detached_data_disks) is true
  type: list
  elements: dict
  sample:
    - {name: kubernetes-master-c-pd, zone: europe-west1-c, replica: kubernetes-master-c}
replicas:
  description:
    - The replicas, sorted by name, with the same fields as the C(replica) that
      M(kubeha.gce.gce_master_replica) returns.
  returned: always
  type: list
  elements: dict
  sample:
    - name: kubernetes-master
      cluster: kubernetes
      zone: europe-west1-b
      region: europe-west1
      status: RUNNING
      machine_type: e2-standard-2
      internal_ip: 10.132.0.2
      external_ip: 203.0.113.10
      labels: {"kubeha-cluster": "kubernetes", "kubeha-role": "master"}
      tags: ["kubernetes-master"]
      metadata: {}
      data_disk:
        name: kubernetes-master-pd
        size_gb: 20
        type: pd-ssd
"""

from ansible_collections.kubeha.gce.plugins.module_utils._gce.module import checked, gce_module, run
from ansible_collections.kubeha.gce.plugins.module_utils._gce.names import check_name, check_region, region_of
from ansible_collections.kubeha.gce.plugins.module_utils._gce.replica import (
    cluster_region,
    detached_data_disks,
    list_replicas,
    region_zones,
    unavailable_zones,
)


def target(params):
    cluster = check_name(params["cluster_name"], "cluster_name")
    if not params.get("region") and not params.get("zone"):
        return cluster, None, None
    region = check_region(params["region"]) if params.get("region") else region_of(params["zone"])
    if params.get("region") and params.get("zone") and region_of(params["zone"]) != region:
        return cluster, region, "zone %s is not in region %s" % (params["zone"], region)
    return cluster, region, None


def main() -> None:
    argument_spec = dict(
        cluster_name=dict(type="str", required=True),
        region=dict(type="str"),
        zone=dict(type="str"),
        detached_data_disks=dict(type="bool", default=False),
    )
    module = gce_module(argument_spec)
    cluster, wanted, problem = checked(module, target, module.params)
    if problem:
        module.fail_json(msg=problem)

    def read(api):
        region = wanted or cluster_region(api, cluster)
        if not region:
            return {"changed": False, "region": "", "replicas": [], "unavailable_zones": [], "zones": []}
        zones = region_zones(api, region)
        replicas = list_replicas(api, cluster, region)
        detached = detached_data_disks(api, cluster, region) if module.params["detached_data_disks"] else None
        unavailable = unavailable_zones(api, region)
        down = {z["name"] for z in unavailable}
        result = {"changed": False, "region": region, "replicas": replicas, "unavailable_zones": unavailable,
                  "zones": [dict(z, status="UNAVAILABLE") if z["name"] in down else z for z in zones]}
        if detached is not None:
            result["detached_data_disks"] = detached
        return result

    run(module, read)


if __name__ == "__main__":
    main()
