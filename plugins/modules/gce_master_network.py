#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gce_master_network
short_description: The reserved IP and the firewall rules of the HA masters of a Kubernetes cluster on Compute Engine
version_added: 0.1.0
description:
  - Manages the network resources that every HA master cluster needs once, whatever its number of replicas,
    with kube-up's names.
  - The regional reserved external address C(CLUSTER-master-ip) in O(region), labelled C(kubeha-cluster=CLUSTER)
    and C(kubeha-role=master). Compute Engine sets the labels of an address only after it is reserved, so it is
    reserved with C(kubeha-cluster=CLUSTER) in its description and labelled right after; a run killed in between
    is finished by the next one.
  - The firewall rule C(CLUSTER-master-https) lets TCP O(https_port) reach the instances with the network tag
    C(CLUSTER-master) from O(https_source_ranges).
  - The firewall rule C(CLUSTER-master-etcd) lets TCP 2379-2381 and 4002 (the etcd client port, where each member's
    health is read, its peer port, and the events etcd's peer and client ports) reach the instances tagged C(CLUSTER-master) from the
    instances with the same tag, and from nowhere else; etcd asks for a client certificate on 2379. So a
    custom-mode network with only the cluster's own rules works as GCE's C(default) network does.
  - The firewall rule C(CLUSTER-master-ssh) lets TCP 22 reach them from O(ssh_source_ranges), only when that is
    not empty.
  - Firewall rules take no labels; they are the cluster's by C(kubeha-cluster=CLUSTER) in their description.
    A same-named firewall rule without it is never changed or deleted, and a same-named address without the
    cluster's labels is taken only with O(adopt_address=true); the module fails instead, naming it.
  - Everything is read and checked before the first change, so bad input changes nothing. A missing resource is
    made, a firewall rule that differs is patched with only the fields that differ, and one that matches is left
    alone.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.gce
  - kubeha.gce.attributes
  - kubeha.gce.attributes.actiongroup_gce
notes:
  - When O(https_source_ranges) does not cover the ranges of Compute Engine's health checkers (C(35.191.0.0/16),
    C(209.85.152.0/22), C(209.85.204.0/22) and C(130.211.0.0/22)), those missing are added to the HTTPS rule, so
    that the health check of M(kubeha.gce.ha_lb) reaches the replicas. V(0.0.0.0/0) covers them all.
  - The replicas must carry the network tag C(CLUSTER-master), as M(kubeha.gce.gce_master_replica) gives them.
  - A firewall rule cannot move to another network or change its direction; the module fails naming such a rule,
    which O(state=absent) deletes so that the next run makes it again.
options:
  cluster_name:
    description:
      - The name of the Kubernetes cluster (kube-up's C(INSTANCE_PREFIX)).
    type: str
    required: true
  region:
    description:
      - The region of the reserved address (and of the replicas), for example V(europe-west1).
    type: str
    required: true
  state:
    description:
      - V(present) makes the address and the firewall rules and corrects the rules that differ.
      - V(absent) deletes the cluster's firewall rules. The address stays unless O(delete_address=true).
    type: str
    choices: [present, absent]
    default: present
  address:
    description:
      - The external IPv4 address to reserve as C(CLUSTER-master-ip) (kube-up's C(MASTER_RESERVED_IP)), for example
        an address that was reserved before and released. Any free one when not set.
      - When the address already exists with another IP, the module fails; a reserved address keeps its IP.
    type: str
  adopt_address:
    description:
      - Take an existing address C(CLUSTER-master-ip) that has no C(kubeha-cluster) or C(kubeha-role) label as the
        cluster's; it keeps its IP and gets the cluster's labels. Without it such an address is refused.
      - An address with the labels of another cluster is always refused.
    type: bool
    default: false
  delete_address:
    description:
      - With O(state=absent), delete the address too. It is refused while an instance or forwarding rule uses it,
        or any replica of the cluster exists in O(region), naming them.
    type: bool
    default: false
  network:
    description:
      - The VPC network of the firewall rules, by name or as a path such as V(projects/PROJECT/global/networks/NAME).
    type: str
    default: default
  https_port:
    description:
      - The TCP port of kube-apiserver on the replicas.
    type: int
    default: 443
  https_source_ranges:
    description:
      - The CIDR ranges that may reach the API servers. At least one; the health-check ranges are added when they
        are not covered (see the notes).
    type: list
    elements: str
    default: [0.0.0.0/0]
  ssh_source_ranges:
    description:
      - The CIDR ranges that may reach the replicas over SSH (TCP 22). Without any, no C(CLUSTER-master-ssh) rule is
        made, and one that the module made before is deleted.
    type: list
    elements: str
    default: []
  wait_timeout:
    description:
      - Seconds to wait for each Compute Engine operation.
    type: int
    default: 300
seealso:
  - module: kubeha.gce.ha_lb
  - module: kubeha.gce.gce_master_replica
  - name: VPC firewall rules
    description: How Compute Engine applies firewall rules, tags and source ranges.
    link: https://cloud.google.com/firewall/docs/firewalls
  - name: Health check firewall rules
    description: The ranges Compute Engine's health checkers send from.
    link: https://cloud.google.com/load-balancing/docs/health-checks#firewall_rules
"""

EXAMPLES = r"""
- name: The reserved IP and the firewall rules of cluster kubernetes
  kubeha.gce.gce_master_network:
    cluster_name: kubernetes
    region: europe-west1
  register: network

- name: API servers only from the office and the nodes (the health-check ranges are added), SSH from the office
  kubeha.gce.gce_master_network:
    cluster_name: kubernetes
    region: europe-west1
    https_source_ranges: [203.0.113.0/28, 10.132.0.0/20]
    ssh_source_ranges: [203.0.113.0/28]

- name: Reserve a given IP, as kube-up's MASTER_RESERVED_IP did
  kubeha.gce.gce_master_network:
    cluster_name: kubernetes
    region: europe-west1
    address: 203.0.113.20

- name: Take over an address kubernetes-master-ip that was reserved by hand
  kubeha.gce.gce_master_network:
    cluster_name: kubernetes
    region: europe-west1
    adopt_address: true

- name: The cluster is gone; delete its firewall rules and its address
  kubeha.gce.gce_master_network:
    cluster_name: kubernetes
    region: europe-west1
    state: absent
    delete_address: true

- name: What would change (check mode returns the plan in actions)
  kubeha.gce.gce_master_network:
    cluster_name: kubernetes
    region: europe-west1
  check_mode: true
  register: plan
"""

RETURN = r"""
address:
  description:
    - The reserved address after the run (in check mode, as the run would leave it; its IP is null when any free one
      would be reserved). Null when there is none.
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
      sample: 203.0.113.20
    self_link:
      description: Its URL.
      type: str
    users:
      description: The URLs of the instances and forwarding rules that use it.
      type: list
      elements: str
firewalls:
  description: The cluster's firewall rules after the run (in check mode, as the run would leave them), by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The rule's name.
      type: str
      sample: kubernetes-master-https
    direction:
      description: Always V(INGRESS).
      type: str
    allowed:
      description: The protocols and ports it allows.
      type: list
      elements: dict
      sample: [{"protocol": "tcp", "ports": ["443"]}]
    source_ranges:
      description: The CIDR ranges it admits.
      type: list
      elements: str
    source_tags:
      description: The network tags of the instances it admits.
      type: list
      elements: str
    target_tags:
      description: The network tags of the instances it applies to.
      type: list
      elements: str
      sample: [kubernetes-master]
    self_link:
      description: Its URL (null in check mode for a rule not made yet).
      type: str
actions:
  description: The changes made (in check mode, that would be made), in order.
  returned: always
  type: list
  elements: str
  sample:
    - reserve address kubernetes-master-ip (europe-west1)
    - label address kubernetes-master-ip (europe-west1) with kubeha-cluster=kubernetes, kubeha-role=master
    - create firewall kubernetes-master-https (tcp:443 to tag kubernetes-master)
    - create firewall kubernetes-master-etcd (tcp:2379-2381,4002 to tag kubernetes-master)
"""

from ansible_collections.kubeha.gce.plugins.module_utils._gce.module import checked, converge, gce_module
from ansible_collections.kubeha.gce.plugins.module_utils._gce.network import STATES, MasterNetwork, spec_from_params


def main() -> None:
    argument_spec = dict(
        cluster_name=dict(type="str", required=True),
        region=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=list(STATES)),
        address=dict(type="str"),
        adopt_address=dict(type="bool", default=False),
        delete_address=dict(type="bool", default=False),
        network=dict(type="str", default="default"),
        https_port=dict(type="int", default=443),
        https_source_ranges=dict(type="list", elements="str", default=["0.0.0.0/0"]),
        ssh_source_ranges=dict(type="list", elements="str", default=[]),
        wait_timeout=dict(type="int", default=300),
    )
    module = gce_module(argument_spec)
    spec = checked(module, spec_from_params, module.params)

    converge(module, spec, MasterNetwork)


if __name__ == "__main__":
    main()
