#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ha_lb_info
short_description: Report what stands behind the HA masters' reserved IP, and the health of each replica
version_added: 0.1.0
description:
  - Reports how the API servers of an HA Kubernetes control plane on Compute Engine are reached at the
    cluster's reserved regional address C(CLUSTER-master-ip), as M(kubeha.gce.ha_lb) manages it. The
    fields it shares with M(kubeha.gce.ha_lb) have the same names and shapes.
  - RV(state=single) when no forwarding rule of the cluster exists and the reserved address is the
    external IP of a replica; RV(state=balanced) when the forwarding rule C(CLUSTER-master) exists;
    RV(state=absent) otherwise (no forwarding rule, and the address is on no replica or does not exist).
  - With a load balancer, each member's health is read from Compute Engine (C(getHealth) of the backend
    service or of the target pool), as M(kubeha.gce.ha_lb) reads it after a change.
  - Read-only; never reports a change, and returns the same in check mode.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.gce
  - kubeha.gce.attributes.info_module
  - kubeha.gce.attributes.actiongroup_gce
notes:
  - A missing address is reported as RV(address=null), not as a failure. Everything else that
    M(kubeha.gce.ha_lb) refuses fails here too, naming the problem; a same-named load-balancer
    resource that is not the cluster's, the address used by something that is neither the load
    balancer nor a replica of the cluster, the address in another region or internal, or a forwarding
    rule that is not on the reserved address.
options:
  cluster_name:
    description:
      - The name of the Kubernetes cluster (kube-up's C(INSTANCE_PREFIX)).
    type: str
    required: true
  region:
    description:
      - The region of the replicas and of the address, for example V(europe-west1).
    type: str
    required: true
  address:
    description:
      - The name of the reserved regional external address; C(CLUSTER-master-ip) when not set.
    type: str
seealso:
  - module: kubeha.gce.ha_lb
  - module: kubeha.gce.gce_master_replica_info
"""

EXAMPLES = r"""
- name: Look at the load balancer of cluster kubernetes
  kubeha.gce.ha_lb_info:
    cluster_name: kubernetes
    region: europe-west1
  register: lb

- name: Every member behind the load balancer passes its health check
  ansible.builtin.assert:
    that:
      - lb.state == 'balanced'
      - lb.members | rejectattr('health', 'equalto', 'HEALTHY') | list | length == 0
    fail_msg: "{{ lb.members | map(attribute='name') | zip(lb.members | map(attribute='health')) | list }}"
"""

RETURN = r"""
state:
  description:
    - V(balanced) (the forwarding rule exists), V(single) (no forwarding rule; the address is a
      replica's external IP) or V(absent) (neither).
  returned: always
  type: str
  sample: balanced
backend:
  description: The kind of backend of the forwarding rule, or null without one.
  returned: always
  type: str
  sample: backend_service
address:
  description: The reserved address; null when it does not exist.
  returned: always
  type: dict
  contains:
    name:
      description: Its name.
      type: str
      sample: kubernetes-master-ip
    ip:
      description: The IP address.
      type: str
      sample: 203.0.113.10
    self_link:
      description: Its URL.
      type: str
holder:
  description:
    - What uses the address; the forwarding rule's name when RV(state=balanced), the name of the replica
      whose external IP it is when RV(state=single), else null.
    - The forwarding rule and the first replica may have the same name (C(CLUSTER-master)); RV(state)
      tells which one it is.
  returned: always
  type: str
  sample: kubernetes-master
members:
  description:
    - The replicas behind the load balancer (V(balanced)), or the holder (V(single)), sorted by name,
      with their health; empty when V(absent).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The instance name.
      type: str
    zone:
      description: Its zone.
      type: str
    internal_ip:
      description: Its internal IP.
      type: str
    external_ip:
      description: Its external IP (the reserved address for the holder, else an ephemeral one, or null).
      type: str
    health:
      description:
        - V(HEALTHY), V(UNHEALTHY) or V(UNKNOWN) as Compute Engine reports it for the load balancer; null
          without a load balancer, or for a member Compute Engine gives no health for.
      type: str
resources:
  description:
    - The cluster's load-balancer resources that exist. Resources can exist without a forwarding rule,
      for example after a run of M(kubeha.gce.ha_lb) that was killed.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: forwarding rule, backend service, target pool, health check, HTTP health check or instance group.
      type: str
    name:
      description: The resource name.
      type: str
    region:
      description: Its region (regional resources).
      type: str
    zone:
      description: Its zone (instance groups).
      type: str
    self_link:
      description: Its URL.
      type: str
"""

import copy

from ansible_collections.kubeha.gce.plugins.module_utils._gce.lb import (
    TARGET_ARGUMENT_SPEC,
    LoadBalancer,
    target_from_params,
)
from ansible_collections.kubeha.gce.plugins.module_utils._gce.module import checked, gce_module, run


def main() -> None:
    argument_spec = copy.deepcopy(TARGET_ARGUMENT_SPEC)
    module = gce_module(argument_spec)
    spec = checked(module, target_from_params, module.params)
    # Only reads are sent, so a run in check mode reads and reports the same.
    run(module, lambda api: LoadBalancer(api, spec).describe())


if __name__ == "__main__":
    main()
