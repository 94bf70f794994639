#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_member
short_description: Add, promote, update or remove one member of an etcd cluster, safely
version_added: 0.1.0
description:
  - Manages one member of the etcd cluster of the master replicas through etcd's v3 JSON gateway,
    with TLS client certificates. It runs on a healthy replica and needs only python3 there.
  - A new member joins as a learner (O(state=present), O(learner=true)), identified by its peer URLs.
    Start etcd on it with the returned RV(initial_cluster) and C(--initial-cluster-state=existing),
    then promote it (O(state=present), O(learner=false)); the module waits up to O(promote_timeout)
    seconds for the learner to catch up with the leader.
  - An existing member (found by O(member_id) or O(name)) whose peer URLs differ from O(peer_urls)
    gets the new peer URLs, so a replica that comes back on a new address with its old data keeps its
    member identity.
  - O(state=absent) removes the member that O(member_id), O(name) or O(peer_urls) name exactly, as
    found in a member list read again right before the removal. Every identifier given must name the
    same member. Names and URLs are compared as they are, never as patterns.
  - "Guards, always on: no change while another member is unhealthy or unreachable, or the cluster has
    no quorum; no second learner while one is pending; no removal that leaves fewer healthy voting
    members than the new quorum; never the last member. A member that is itself unhealthy is removed
    or updated only with O(force=true). Leadership is moved to the most advanced healthy voting member
    before the leader is removed."
  - A member is healthy when it answers its status at one of its client URLs, has a leader, has no
    alarm raised, and (for a voting member) a quorum read through it succeeds.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.etcd
  - kubeha.gce.etcd.actiongroup
  - kubeha.gce.attributes
options:
  state:
    description:
      - V(present) adds the member as a learner, updates its peer URLs, or promotes it.
      - V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  name:
    description:
      - The member's name, the C(--name) etcd runs with on it.
      - Required to add a member; its etcd must start with this name. A member that has not started yet
        has no name in etcd's member list.
      - Finds an existing member to update or remove. A member's name cannot be changed.
    type: str
  peer_urls:
    description:
      - The member's peer URLs, for example V(https://10.132.0.5:2380).
      - With O(state=present), a member that has any of them is the member of this task (so adding is
        idempotent), and an existing member found by O(member_id) or O(name) whose peer URLs differ is
        updated to exactly these.
    type: list
    elements: str
  member_id:
    description:
      - The member's ID, in hex as C(etcdctl member list) prints it or in decimal as the JSON gateway
        returns it. V(0x) marks hex explicitly.
      - A string of decimal digits may be read both ways; it names the one member it matches, and fails
        if it matches two.
    type: str
  learner:
    description:
      - With O(state=present), V(true) adds the member as a non-voting learner (and leaves an existing
        member as it is); V(false) promotes a learner to a voting member.
      - A member that is not in the cluster yet is only ever added as a learner.
    type: bool
    default: false
  promote_timeout:
    description:
      - Seconds to wait for a learner to be in sync with the leader, which etcd requires before it
        promotes it. The error then says how far behind the learner is.
    type: int
    default: 120
  force:
    description:
      - Remove (or change the peer URLs of) a member that is itself unhealthy or unreachable, that is
        a dead member, through the healthy quorum.
      - It applies to that member only. Other unhealthy members, a lost quorum, a removal below
        quorum and the last member are refused with or without it.
    type: bool
    default: false
seealso:
  - module: kubeha.gce.etcd_member_info
  - name: etcd runtime reconfiguration
    description: How etcd adds, promotes and removes members.
    link: https://etcd.io/docs/v3.4/op-guide/runtime-configuration/
"""

EXAMPLES = r"""
- name: Set the TLS options once for every etcd task
  module_defaults:
    group/kubeha.gce.etcd:
      ca_cert: /etc/kubernetes/pki/etcd/ca.crt
      client_cert: /etc/kubernetes/pki/apiserver-etcd-client.crt
      client_key: /etc/kubernetes/pki/apiserver-etcd-client.key
  block:
    - name: Add the new replica's member as a learner
      kubeha.gce.etcd_member:
        name: kubernetes-master-c1x
        peer_urls: ["https://10.132.0.5:2380"]
        learner: true
      register: learner

    - name: Start etcd on the new replica with --initial-cluster-state=existing and this value
      ansible.builtin.debug:
        msg: "--initial-cluster={{ learner.initial_cluster }}"

    - name: Promote it once it is in sync with the leader
      kubeha.gce.etcd_member:
        name: kubernetes-master-c1x
        peer_urls: ["https://10.132.0.5:2380"]
        promote_timeout: 300

    - name: Remove a replica's member (leadership moves away first if it leads)
      kubeha.gce.etcd_member:
        name: kubernetes-master-b2y
        state: absent

    - name: Remove exactly the member of a dead replica, by the ID etcdctl shows
      kubeha.gce.etcd_member:
        member_id: 8e9e05c52164694d
        state: absent
        force: true

    - name: A replica came back on a new address with its old data disk; keep its member identity
      kubeha.gce.etcd_member:
        name: kubernetes-master-d3z
        peer_urls: ["https://10.132.0.9:2380"]
        force: true
"""

RETURN = r"""
member:
  description:
    - The member after the task; in check mode, as it would be. Empty after O(state=absent).
    - A member that etcd on it has not started yet has no name and no client URLs; a member predicted
      in check mode has no ID.
  returned: always
  type: dict
  contains:
    id:
      description: The member ID in hex, as C(etcdctl) prints it.
      type: str
      sample: 8e9e05c52164694d
    id_decimal:
      description: The member ID in decimal, as the JSON gateway uses it.
      type: str
      sample: "10276657743932975437"
    name:
      description: The member's name.
      type: str
      sample: kubernetes-master-c1x
    peer_urls:
      description: The peer URLs.
      type: list
      elements: str
      sample: ["https://10.132.0.5:2380"]
    client_urls:
      description: The client URLs the member advertises.
      type: list
      elements: str
      sample: ["https://10.132.0.5:2379"]
    is_learner:
      description: Whether the member is a non-voting learner.
      type: bool
      sample: false
members:
  description: Every member after the task (in check mode, as it would be), each as RV(member).
  returned: always
  type: list
  elements: dict
leader:
  description: The leader after the task, or null when the cluster has none.
  returned: always
  type: dict
  contains:
    id:
      description: The leader's member ID in hex.
      type: str
    id_decimal:
      description: The leader's member ID in decimal.
      type: str
    name:
      description: The leader's name.
      type: str
  sample: {"id": "8e9e05c52164694d", "id_decimal": "10276657743932975437", "name": "kubernetes-master"}
initial_cluster:
  description:
    - The value of C(--initial-cluster) for etcd on a joining member, C(name=peerURL,...) for every
      member, including the member of this task under its O(name).
  returned: always
  type: str
  sample: kubernetes-master=https://10.132.0.2:2380,kubernetes-master-c1x=https://10.132.0.5:2380
actions:
  description: The changes made (or, in check mode, that would be made), in order.
  returned: always
  type: list
  elements: str
  sample: ["move leadership from a (8e9e05c52164694d) to b (91bc3c398fb3c146)", "remove a (8e9e05c52164694d)"]
"""

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.member import EtcdMember, request_from_params
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.module import etcd_module, run


def main() -> None:
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        name=dict(type="str"),
        peer_urls=dict(type="list", elements="str"),
        member_id=dict(type="str"),
        learner=dict(type="bool", default=False),
        promote_timeout=dict(type="int", default=120),
        force=dict(type="bool", default=False),
    )
    module = etcd_module(argument_spec, required_one_of=[("name", "peer_urls", "member_id")])

    def work(client):
        member = EtcdMember(client, request_from_params(module.params), check_mode=module.check_mode,
                            warn=module.warn)
        result = member.present() if module.params["state"] == "present" else member.absent()
        if not module._diff:
            result.pop("diff")
        return result

    run(module, work)


if __name__ == "__main__":
    main()
