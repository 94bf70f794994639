#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: replica_ca_rotation
short_description: Plan a rotation of the cluster's CAs with a trust overlap, one replica at a time
version_added: 0.1.0
description:
  - Runs on the controller and computes CA material; it writes no file. The rotate_certs role passes it the CA
    material read from every replica, and writes to each replica, pass after pass, what it returns.
  - A CA is rotated in three passes over the replicas, as far as O(phase) asks. C(trust) - the CA certificate file
    becomes a bundle of the old and a new CA certificate, the old one still signing (the new key is kept beside it as
    C(next_key)). C(sign) - the new one signs (the role issues again what it signs), both still trusted. C(retire) -
    the old certificate leaves the bundle. So at every moment every certificate in use is signed by a CA that every
    replica trusts. A replica is never moved back.
  - A rotation that stopped is taken up where the replicas are. A new CA is made only by the phases V(trust) and
    V(all), and not for a CA whose certificate was issued at or after O(issued_before), so that a second run with the
    same time changes nothing.
  - B(Key material is returned in the result.) Always set C(no_log) to C(true) on the task.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.attributes
options:
  replicas:
    description:
      - Each replica's CA material as it holds it, by replica name - C(cluster), C(etcd) and C(front_proxy), each
        with C(cert) (one certificate, or the bundle of two during a rotation), C(key) and, during a rotation's
        first pass, C(next_key); and C(service_account), passed through.
    type: dict
    required: true
  authorities:
    description:
      - The CAs to rotate, or whose rotation to take up where it stopped.
      - A CA not named here is left as the replicas hold it; RV(authorities) says when it is in the middle of a
        rotation.
    type: list
    elements: str
    choices: [cluster, etcd, front_proxy]
    required: true
  phase:
    description:
      - How far the run takes the CAs in O(authorities) - V(trust) (both trusted, the old one signs), V(sign) (both
        trusted, the new one signs), V(retire) (the new one alone), or V(all) (all three passes in one run, for the
        etcd CA only).
      - A new CA is made only by V(trust) and V(all). V(sign) and V(retire) take up a rotation under way, and find
        nothing to do otherwise.
      - The cluster and front-proxy CAs move one pass per run (and V(all) is refused for them), as clients outside the
        masters (nodes, kubeconfigs, aggregated API servers) must be given the new CA before it signs, and their
        certificates issued again before the old one goes; a run that would take them further fails, naming the phase
        to run first.
    type: str
    choices: [trust, sign, retire, all]
    default: trust
  issued_before:
    description:
      - A CA is rotated only when its certificate was issued before this time (ISO 8601); the time the rotation
        began. It must not be in the future.
    type: str
    required: true
  key_type:
    description: Type of the new CAs' keys.
    type: str
    choices: [ecdsa, rsa]
    default: ecdsa
  rsa_key_size:
    description: Size of an RSA key.
    type: int
    default: 2048
  ca_validity_days:
    description: Validity of the new CAs.
    type: int
    default: 3650
notes:
  - In check mode no new CA is made; the passes are planned, with an empty material for a replica that would get
    one.
requirements:
  - cryptography >= 42.0.0
seealso:
  - module: kubeha.gce.replica_pki
"""

EXAMPLES = r"""
- name: Plan the first phase of a rotation of the cluster CA - the new one trusted beside the old one
  kubeha.gce.replica_ca_rotation:
    replicas: "{{ ca_material_by_replica }}"
    authorities: [cluster]
    issued_before: "2026-12-06T14:00:00Z"
  register: rotation
  no_log: true

- name: Rotate the etcd CA in one run - trusted, then signing, then alone
  kubeha.gce.replica_ca_rotation:
    replicas: "{{ ca_material_by_replica }}"
    authorities: [etcd]
    phase: all
    issued_before: "2026-12-06T14:00:00Z"
  register: rotation
  no_log: true
"""

RETURN = r"""
authorities:
  description:
    - Each CA - C(old) and C(new) (subject, serial, expiry; C(new) null when there is none), C(created) (a new CA
      was made by this run, or would be in check mode), C(states) (each replica's state) and C(levels) (the same
      as a number, 0 to 3), C(goal) (the state the run takes every replica to, null when the CA is not rotated), and
      C(rotating) (it is in the middle of a rotation that this run does not take up).
  returned: always
  type: dict
  sample:
    cluster:
      created: true
      goal: trusts both, the new CA signs
      states: {k-master: old CA alone, k-master-c: old CA alone}
      levels: {k-master: 0, k-master-c: 0}
      rotating: false
plan:
  description: One line per CA - where each replica stands, and what this run does to it.
  returned: always
  type: list
  elements: str
summary:
  description: One line per CA rotated - what every replica trusts once the passes are made, and what is left to do.
  returned: always
  type: list
  elements: str
passes:
  description:
    - The passes to make, in order - C(name) (trust, sign or retire), C(authorities) (the CAs it moves), and
      C(material), each replica's whole CA material in that pass (null for a replica it leaves alone; empty in
      check mode when the new CA is not made yet).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._pki.material import PkiError, exit_with, now
from ansible_collections.kubeha.gce.plugins.module_utils._pki.replica import parse_time
from ansible_collections.kubeha.gce.plugins.module_utils._pki.rotation import plan


def run(module: AnsibleModule) -> dict:
    params = module.params
    issued_before = parse_time(params["issued_before"], "issued_before")
    if issued_before > now():
        raise PkiError("issued_before %s is in the future: the CAs made now would be rotated again by every run; give "
                       "the time the rotation began" % params["issued_before"])
    result = plan(params["replicas"], params["authorities"], params["phase"], issued_before, params["key_type"],
                  params["ca_validity_days"], params["rsa_key_size"], module.check_mode)
    if module._diff:
        result["diff"] = {"before": {n: a["states"] for n, a in result["authorities"].items()},
                          "after": {n: ({r: a["goal"] for r in a["states"]} if a["goal"] else a["states"])
                                    for n, a in result["authorities"].items()}}
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            replicas=dict(type="dict", required=True),
            authorities=dict(type="list", elements="str", required=True, choices=["cluster", "etcd", "front_proxy"]),
            phase=dict(type="str", default="trust", choices=["trust", "sign", "retire", "all"]),
            issued_before=dict(type="str", required=True),
            key_type=dict(type="str", default="ecdsa", choices=["ecdsa", "rsa"]),
            rsa_key_size=dict(type="int", default=2048),
            ca_validity_days=dict(type="int", default=3650),
        ),
        supports_check_mode=True,
    )
    exit_with(module, run)


if __name__ == "__main__":
    main()
