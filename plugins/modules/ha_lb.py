#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ha_lb
short_description: Put the HA masters' reserved IP on one replica or on a load balancer in front of them
version_added: 0.1.0
description:
  - Manages how the API servers of an HA Kubernetes control plane on Compute Engine are reached at
    the cluster's reserved regional address C(CLUSTER-master-ip).
  - O(state=single) is a cluster with one replica, as kube-up makes it; no load balancer, and the
    reserved address is the external IP of the one replica in O(members).
  - O(state=balanced) is a regional external passthrough network load balancer whose forwarding rule
    C(CLUSTER-master) holds the reserved address and sends TCP O(port) to exactly the replicas in
    O(members), with a health check, so a replica that stops answering stops getting connections.
  - O(state=absent) removes every load-balancer resource. The address stays, as it does in every state; it need
    not exist in this state (the cluster's may be deleted already).
  - Going from V(single) to V(balanced), the health check, the instance groups (or target pool) and
    the backend service are made first; then the address is freed from the replica, the forwarding
    rule is made on it, and the replica gets an ephemeral external IP. The address answers nothing
    only between the first and the second of these three steps. V(balanced) to V(single) is the
    reverse; the replica's ephemeral IP goes before the forwarding rule.
  - Every resource is named after the cluster and marked as the cluster's (labels on the forwarding
    rule; the C(kubeha-cluster=CLUSTER) marker in the description of the others). A same-named resource
    without that mark is never changed or deleted; the module fails instead.
  - All input and the current resources are read and checked before the first change, so bad input
    changes nothing. Each step is decided from what Compute Engine shows, so a run that was killed
    at any step is finished by the next run.
  - A member with no external IP at all (as a run killed between freeing the address and the next
    step leaves it) gets an ephemeral one in O(state=balanced).
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.gce
  - kubeha.gce.attributes
  - kubeha.gce.attributes.actiongroup_gce
notes:
  - The address must exist (it is reserved once, at bootstrap). A firewall rule must let clients and
    GCE's health checkers (C(35.191.0.0/16), C(209.85.152.0/22), C(209.85.204.0/22)) reach the replicas
    on O(port) and on the health-check port.
  - A passthrough load balancer delivers packets to the replica with the load balancer's IP as their
    destination; the Compute Engine guest environment adds that IP as a local route on the replica.
    The test lab translates it to the replica's internal IP instead, so it cannot catch an image
    without the guest environment.
  - When every member fails its health check, Compute Engine spreads new connections over all of them,
    as a last resort.
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
  state:
    description:
      - V(single), V(balanced) or V(absent), see the description.
    type: str
    choices: [single, balanced, absent]
    default: balanced
  members:
    description:
      - The replicas (instance names) behind the load balancer with O(state=balanced), at least one;
        the one replica that holds the address with O(state=single). Not used with O(state=absent).
      - Every member must be a replica of the cluster (by its labels) in O(region).
    type: list
    elements: str
    default: []
  address:
    description:
      - The name of the reserved regional external address; C(CLUSTER-master-ip) when not set.
    type: str
  port:
    description:
      - The TCP port the load balancer forwards (kube-apiserver's secure port).
    type: int
    default: 443
  backend:
    description:
      - V(backend_service) is a regional backend service with one unmanaged instance group
        C(CLUSTER-master) per zone that has members, and a regional health check.
      - V(target_pool) is a target pool, as kube-up made it, with an optional legacy HTTP health check.
      - Changing the backend of a balanced load balancer makes its forwarding rule again, and the address
        answers nothing for that moment.
    type: str
    choices: [backend_service, target_pool]
    default: backend_service
  health_check:
    description:
      - The health check C(CLUSTER-master-hc).
    type: dict
    default: {}
    suboptions:
      enabled:
        description:
          - Whether the load balancer checks its members. A backend service always does; only a target
            pool can go without (kube-up's behaviour, in which a dead replica keeps getting connections).
        type: bool
        default: true
      protocol:
        description:
          - V(HTTPS) (the default with a backend service), V(HTTP) or V(TCP).
          - A target pool takes only a legacy V(HTTP) check.
        type: str
        choices: [HTTPS, HTTP, TCP]
      port:
        description:
          - The port that is checked. Defaults to O(port) for HTTPS and TCP checks.
          - Required for an HTTP check (and so for a target pool's check), since kube-apiserver answers
            only HTTPS; name the replicas' plain-HTTP health endpoint.
        type: int
      request_path:
        description:
          - The path of an HTTP or HTTPS check.
        type: str
        default: /readyz
      check_interval_sec:
        description:
          - Seconds between two probes of a member.
        type: int
        default: 5
      timeout_sec:
        description:
          - Seconds a probe may take; at most O(health_check.check_interval_sec).
        type: int
        default: 5
      healthy_threshold:
        description:
          - Passed probes in a row after which a member gets connections again.
        type: int
        default: 2
      unhealthy_threshold:
        description:
          - Failed probes in a row after which a member gets no new connections.
        type: int
        default: 2
  wait_healthy:
    description:
      - With O(state=balanced), wait until every member (or every one in O(wait_for)) passes its health check, and
        fail naming those that did not within O(wait_timeout). The load balancer stays in place either way.
    type: bool
    default: false
  wait_for:
    description:
      - With O(wait_healthy), the members to wait for; by default every member.
      - A member that is kept in the load balancer but not ready yet (a replica that a later step converges) is
        left out, so that the wait does not fail on it.
    type: list
    elements: str
    default: []
  wait_timeout:
    description:
      - Seconds to wait for each Compute Engine operation, and for O(wait_healthy).
    type: int
    default: 300
seealso:
  - module: kubeha.gce.gce_master_replica
  - name: Backend service-based external passthrough Network Load Balancer
    description: How the load balancer of O(backend=backend_service) works.
    link: https://cloud.google.com/load-balancing/docs/network/networklb-backend-service
"""

EXAMPLES = r"""
- name: Second replica is up; put a load balancer in front of both
  kubeha.gce.ha_lb:
    cluster_name: kubernetes
    region: europe-west1
    state: balanced
    members: [kubernetes-master, kubernetes-master-c]
    wait_healthy: true

- name: A kube-up compatible target pool, with a legacy HTTP health check on a health proxy
  kubeha.gce.ha_lb:
    cluster_name: kubernetes
    region: europe-west1
    backend: target_pool
    members: [kubernetes-master, kubernetes-master-c, kubernetes-master-d]
    health_check:
      port: 8080
      request_path: /readyz

- name: Down to one replica; the reserved IP goes back to it and the load balancer is deleted
  kubeha.gce.ha_lb:
    cluster_name: kubernetes
    region: europe-west1
    state: single
    members: [kubernetes-master-c]

- name: What would change (check mode returns the plan in actions)
  kubeha.gce.ha_lb:
    cluster_name: kubernetes
    region: europe-west1
    members: [kubernetes-master, kubernetes-master-c]
  check_mode: true
  register: plan
"""

RETURN = r"""
state:
  description: The state after the run (in check mode, the state the run would reach).
  returned: always
  type: str
  sample: balanced
backend:
  description: The kind of backend of the load balancer, or null without one.
  returned: always
  type: str
  sample: backend_service
address:
  description: The reserved address.
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
  description: The replica whose external IP is the reserved address (V(single)), else null.
  returned: always
  type: str
  sample: kubernetes-master
members:
  description: The replicas behind the load balancer (or the holder), with their health.
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
      description: Its external IP (the reserved address for the holder, else an ephemeral one).
      type: str
    health:
      description:
        - V(HEALTHY) or V(UNHEALTHY) as Compute Engine reports it for the load balancer; null when there
          is no load balancer (or, in check mode, none yet).
      type: str
resources:
  description: The load-balancer resources that exist after the run (before it, in check mode).
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
actions:
  description: The changes made (in check mode, that would be made), in order.
  returned: always
  type: list
  elements: str
  sample:
    - create health check kubernetes-master-hc (europe-west1)
    - create instance group kubernetes-master (europe-west1-b)
    - add kubernetes-master to instance group kubernetes-master (europe-west1-b)
    - create backend service kubernetes-master (europe-west1) with the groups in europe-west1-b
    - free address kubernetes-master-ip (203.0.113.10) from replica kubernetes-master
    - create forwarding rule kubernetes-master (europe-west1) on 203.0.113.10:443
    - give replica kubernetes-master an ephemeral external IP
"""

import copy

from ansible_collections.kubeha.gce.plugins.module_utils._gce.lb import (
    BACKENDS,
    CHECK_PROTOCOLS,
    STATES,
    TARGET_ARGUMENT_SPEC,
    LoadBalancer,
    spec_from_params,
)
from ansible_collections.kubeha.gce.plugins.module_utils._gce.module import checked, converge, gce_module


def main() -> None:
    argument_spec = dict(
        copy.deepcopy(TARGET_ARGUMENT_SPEC),
        state=dict(type="str", default="balanced", choices=list(STATES)),
        members=dict(type="list", elements="str", default=[]),
        port=dict(type="int", default=443),
        backend=dict(type="str", default="backend_service", choices=list(BACKENDS)),
        health_check=dict(type="dict", default={}, options=dict(
            enabled=dict(type="bool", default=True),
            protocol=dict(type="str", choices=list(CHECK_PROTOCOLS)),
            port=dict(type="int"),
            request_path=dict(type="str", default="/readyz"),
            check_interval_sec=dict(type="int", default=5),
            timeout_sec=dict(type="int", default=5),
            healthy_threshold=dict(type="int", default=2),
            unhealthy_threshold=dict(type="int", default=2),
        )),
        wait_healthy=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        wait_for=dict(type="list", elements="str", default=[]),
    )
    module = gce_module(argument_spec)
    spec = checked(module, spec_from_params, module.params)

    converge(module, spec, LoadBalancer)


if __name__ == "__main__":
    main()
