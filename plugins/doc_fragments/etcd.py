# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Options shared by every module that talks to etcd.
    DOCUMENTATION = r"""
options:
  endpoints:
    description:
      - Client URLs of etcd members, tried in order until one answers, for example the local member
        C(https://127.0.0.1:2379) on a replica.
      - The member list is read through them. Each member's health is read from the member itself, at
        one of these endpoints when it is that member, otherwise at the client URLs the member advertises,
        so these must be reachable from where the module runs.
    type: list
    elements: str
    default: ['https://127.0.0.1:2379']
  ca_cert:
    description:
      - The CA certificate (PEM) that signed the members' serving certificates, for example
        C(/etc/kubernetes/pki/etcd/ca.crt).
      - Without it the system's trusted CAs are used.
    type: path
  client_cert:
    description:
      - The client certificate (PEM) to present to etcd, which etcd started with C(--client-cert-auth)
        requires, for example C(/etc/kubernetes/pki/apiserver-etcd-client.crt).
      - It may also hold the private key.
    type: path
  client_key:
    description:
      - The private key (PEM) of O(client_cert), when it is not in the same file.
    type: path
  timeout:
    description:
      - Seconds to wait for one answer from one etcd endpoint.
    type: int
    default: 10
requirements:
  - python >= 3.8 on the host that runs the module (a replica); nothing else
notes:
  - The modules use etcd's v3 JSON gateway (C(/v3/...) on the client port), which etcd 3.4 and later
    serve by default. Member IDs there are decimal; the modules accept and return them as hex too, as
    C(etcdctl) prints them.
  - With C(--client-cert-auth), etcd 3.4's gateway connects to its own member with the member's serving
    certificate, so that certificate must also allow client authentication (extended key usage C(clientAuth)).
"""

    # Modules in the kubeha.gce.etcd action group.
    ACTIONGROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/kubeha.gce.etcd) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - kubeha.gce.etcd
"""
