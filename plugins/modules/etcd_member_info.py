#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_member_info
short_description: Members, health, leader and quorum of an etcd cluster
version_added: 0.1.0
description:
  - Reads the member list of the etcd cluster of the master replicas through etcd's v3 JSON gateway,
    then the status of every member from that member itself, at its client URLs.
  - A member is healthy when it answers, has a leader, has no alarm raised, and (for a voting member)
    a quorum read through it succeeds. The cluster has quorum when more than half of its voting
    members are healthy.
  - A member whose client URL accepts no TCP connection within 5 seconds (or O(timeout), if shorter) is
    unhealthy at once, so that a replica that is gone or cut off does not hold the read for O(timeout).
  - Changes nothing; takes the same connection options as M(kubeha.gce.etcd_member).
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.etcd
  - kubeha.gce.etcd.actiongroup
  - kubeha.gce.attributes.info_module
options: {}
seealso:
  - module: kubeha.gce.etcd_member
"""

EXAMPLES = r"""
- name: Read the etcd cluster through the local member of a replica
  kubeha.gce.etcd_member_info:
    ca_cert: /etc/kubernetes/pki/etcd/ca.crt
    client_cert: /etc/kubernetes/pki/apiserver-etcd-client.crt
    client_key: /etc/kubernetes/pki/apiserver-etcd-client.key
  register: etcd

- name: Stop unless every member is healthy and no learner is pending
  ansible.builtin.assert:
    that:
      - etcd.healthy
      - etcd.learners | length == 0
    fail_msg: "etcd is not ready for a membership change: {{ etcd.members | rejectattr('healthy') | map(attribute='name') }}"
"""

RETURN = r"""
cluster_id:
  description: The cluster ID in hex.
  returned: always
  type: str
  sample: cdf818194e3a8c32
members:
  description: Every member, with its health and status.
  returned: always
  type: list
  elements: dict
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
      description: The member's name; empty until etcd on the member has started.
      type: str
    peer_urls:
      description: The peer URLs.
      type: list
      elements: str
    client_urls:
      description: The client URLs the member advertises.
      type: list
      elements: str
    is_learner:
      description: Whether the member is a non-voting learner.
      type: bool
    is_leader:
      description: Whether the member is the leader.
      type: bool
    reachable:
      description: Whether the member answered its status.
      type: bool
    healthy:
      description: Whether the member answered, has a leader, has no alarm and (for a voter) serves a quorum read.
      type: bool
    endpoint:
      description: The client URL that answered, or null.
      type: str
    error:
      description: What is wrong with the member, or null.
      type: str
    version:
      description: The etcd version of the member.
      type: str
      sample: 3.4.23
    db_size:
      description: Size of the member's database in bytes.
      type: int
    db_size_in_use:
      description: Bytes of the database in use.
      type: int
    raft_index:
      description: The member's raft index.
      type: int
    raft_applied_index:
      description: The member's applied raft index.
      type: int
    raft_term:
      description: The member's raft term.
      type: int
    alarms:
      description: Alarms raised on the member (for example C(NOSPACE)).
      type: list
      elements: str
leader:
  description: The leader (C(id), C(id_decimal), C(name)), or null when no reachable member knows one.
  returned: always
  type: dict
learners:
  description: The learners (non-voting members), each with C(id), C(id_decimal), C(name), C(peer_urls), C(client_urls).
  returned: always
  type: list
  elements: dict
voters:
  description: The number of voting members.
  returned: always
  type: int
  sample: 3
healthy_voters:
  description: The number of healthy voting members.
  returned: always
  type: int
  sample: 3
quorum:
  description: The number of voting members a quorum needs.
  returned: always
  type: int
  sample: 2
has_quorum:
  description: Whether at least RV(quorum) voting members are healthy.
  returned: always
  type: bool
healthy:
  description: Whether every member is healthy.
  returned: always
  type: bool
initial_cluster:
  description: The C(name=peerURL,...) list of the current members.
  returned: always
  type: str
"""

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.cluster import read_cluster
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.module import etcd_module, run


def main() -> None:
    module = etcd_module({})
    run(module, lambda client: read_cluster(client).info())


if __name__ == "__main__":
    main()
