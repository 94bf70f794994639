#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: replica_pki
short_description: Create the cluster's CAs and issue one master replica's certificates
version_added: 0.1.0
description:
  - Runs on the controller and computes certificate material; it writes no file. Roles pass it
    the CA material read from a healthy replica and the replica's current certificates, and write
    back what it returns. Nothing durable stays on the controller.
  - With O(create_ca=true) it creates whichever of the cluster CA, the etcd CA, the front-proxy CA
    and the service-account key pair is missing from O(ca), and returns them all in RV(ca).
  - With O(replica) it returns the replica's certificates (see O(leaves)); a certificate given in O(current) is
    kept when its subject, names, usages and issuer are as required and it does not expire within
    O(renew_before_days), and issued again with a new key otherwise. RV(changed_leaves) says which.
  - B(Key material is returned in the result.) Always set C(no_log) to C(true) on the task, and write
    keys with mode C(0600).
  - O(ca) and O(current) are not marked C(no_log) in the module, because what they hold comes back in the
    result (kept certificates, existing CAs), where Ansible would otherwise replace it with a placeholder.
    The task's C(no_log) keeps them out of the output.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.attributes
options:
  ca:
    description:
      - The CA material, as RV(ca) returns it. C(cluster), C(etcd), C(front_proxy) each with C(cert)
        and C(key) (PEM), and C(service_account) with C(key) and C(public).
      - During a rotation (M(kubeha.gce.replica_ca_rotation)) a C(cert) is a bundle of two CA certificates; the one
        that matches C(key) signs, and kubeconfigs trust both.
      - Required unless O(create_ca=true).
    type: dict
  create_ca:
    description:
      - Create the CAs and the service-account key pair missing from O(ca). Existing ones are kept.
    type: bool
    default: false
  replica:
    description:
      - The replica to issue certificates for. Omit it to only create CAs.
    type: dict
    suboptions:
      name:
        description: The replica's instance name (also its etcd member name).
        type: str
        required: true
      internal_ip:
        description: Its internal IP.
        type: str
        required: true
      external_ip:
        description: Its current external IP, if any.
        type: str
      reserved_ip:
        description: The cluster's reserved address (C(CLUSTER-master-ip)), on the replica or the load balancer.
        type: str
      service_ip:
        description: The first IP of the service range (the C(kubernetes) service).
        type: str
        default: 10.0.0.1
      dns_domain:
        description: The cluster's DNS domain.
        type: str
        default: cluster.local
      extra_sans:
        description: More names or IPs for the API server's serving certificate.
        type: list
        elements: str
        default: []
  current:
    description:
      - The replica's current certificates, as RV(leaves) returns them (leaf name to C(cert) and C(key)).
    type: dict
    default: {}
  leaves:
    description:
      - Which certificates to return. All of them by default.
      - C(etcd-peer) and C(etcd-server) (etcd CA; SANs the replica's name, internal IP, C(127.0.0.1), C(localhost));
        C(apiserver) (serving; SANs as in O(replica)); C(apiserver-etcd-client) (etcd CA); C(apiserver-kubelet-client)
        (C(O=system:masters)); C(front-proxy-client) (front-proxy CA); C(controller-manager) and C(scheduler)
        (C(CN=system:kube-controller-manager), C(CN=system:kube-scheduler), with kubeconfigs in RV(kubeconfigs)).
      - C(addon-manager) is the client certificate of the replica's addon manager, C(CN=system:kube-addon-manager)
        in the C(system:masters) group, because it creates and deletes objects of every kind and no RBAC binding
        can exist for it before it has created one. The control_plane role writes its kubeconfig, which names
        the certificate files, so no kubeconfig is returned for it.
      - C(cloud-controller-manager) is the client certificate of the GCE cloud-controller-manager,
        C(CN=system:cloud-controller-manager), with a kubeconfig in RV(kubeconfigs).
    type: list
    elements: str
    choices: [etcd-peer, etcd-server, apiserver, apiserver-etcd-client, apiserver-kubelet-client, front-proxy-client,
              controller-manager, scheduler, addon-manager, cloud-controller-manager]
  key_type:
    description:
      - Type of the new keys of CAs and certificates. ECDSA P-256 or RSA.
    type: str
    choices: [ecdsa, rsa]
    default: ecdsa
  rsa_key_size:
    description: Size of RSA keys (and of the service-account key, which is always RSA).
    type: int
    default: 2048
  validity_days:
    description: Validity of new certificates (never beyond their CA's).
    type: int
    default: 365
  ca_validity_days:
    description: Validity of new CAs.
    type: int
    default: 3650
  renew_before_days:
    description: Issue a certificate again when it expires within this many days.
    type: int
    default: 30
  reissue:
    description:
      - Certificates to issue again, with a new key, although they are right (rotation on request). Each must be in
        O(leaves) (all of them by default).
      - With O(issued_before), only those issued before that time are, so that a second run with the same time
        changes nothing.
    type: list
    elements: str
    choices: [etcd-peer, etcd-server, apiserver, apiserver-etcd-client, apiserver-kubelet-client, front-proxy-client,
              controller-manager, scheduler, addon-manager, cloud-controller-manager]
    default: []
  issued_before:
    description:
      - With O(reissue), the time (ISO 8601, UTC unless it says otherwise) before which a certificate must have been
        issued to be issued again. The start of a certificate's validity tells when it was issued (the certificates
        issued here start five minutes before they were).
      - It must not be in the future, where the certificates issued now would be issued again by every run.
    type: str
  apiserver_url:
    description: The API server URL written into the controller-manager and scheduler kubeconfigs.
    type: str
    default: https://127.0.0.1:443
notes:
  - In check mode the module reports which certificates would be created or issued again, and returns
    no new key material.
requirements:
  - cryptography >= 42.0.0
seealso:
  - module: kubeha.gce.gce_master_replica
"""

EXAMPLES = r"""
- name: Create the cluster's CAs (once, at bootstrap)
  kubeha.gce.replica_pki:
    create_ca: true
  register: pki
  no_log: true

- name: Issue the certificates of a replica, keeping those that are still right
  kubeha.gce.replica_pki:
    ca: "{{ pki.ca }}"
    replica:
      name: kubernetes-master-c1x
      internal_ip: 10.132.0.3
      reserved_ip: 203.0.113.10
    current: "{{ current_certificates }}"
  register: certs
  no_log: true

- name: Issue every certificate of a replica again that was issued before the rotation began
  kubeha.gce.replica_pki:
    ca: "{{ pki.ca }}"
    replica:
      name: kubernetes-master-c1x
      internal_ip: 10.132.0.3
    current: "{{ current_certificates }}"
    reissue: [etcd-peer, etcd-server, apiserver, apiserver-etcd-client, apiserver-kubelet-client, front-proxy-client,
              controller-manager, scheduler, addon-manager, cloud-controller-manager]
    issued_before: "2026-12-06T14:00:00Z"
  register: certs
  no_log: true

- name: Say which certificates were issued again
  ansible.builtin.debug:
    msg: "{{ certs.changed_leaves }}"
"""

RETURN = r"""
ca:
  description: The CA material (with what was created), when O(create_ca=true).
  returned: when O(create_ca=true)
  type: dict
created_ca:
  description: Which CAs (and C(service_account)) were created.
  returned: always
  type: list
  elements: str
  sample: [cluster, etcd, front_proxy, service_account]
leaves:
  description:
    - Each requested certificate, by name. C(cert) and C(key) are PEM (null in check mode when it would be
      issued again); C(reissued) and C(reason) say whether and why it was issued again; C(authority) names
      the CA that signs it; C(before) and C(after) describe the old and new certificate (subject, DNS
      names, IPs, usages, expiry, serial).
  returned: when O(replica) is given
  type: dict
  sample:
    apiserver:
      reissued: true
      reason: IP addresses are ['10.132.0.3'], wanted ['10.0.0.1', '10.132.0.3', '127.0.0.1', '203.0.113.10']
      authority: cluster
changed_leaves:
  description: The certificates that were (or, in check mode, would be) issued again.
  returned: always
  type: list
  elements: str
  sample: [apiserver]
earliest_expiry:
  description:
    - The earliest expiry (ISO 8601) of the requested certificates as the run leaves them (a certificate issued again
      counts with its new expiry), which a stamp records once they are written. In check mode a certificate to be issued
      again has no expiry yet and does not count. Null when nothing is known.
  returned: when O(replica) is given
  type: str
  sample: "2027-12-04T23:10:00+00:00"
signers:
  description:
    - Each CA's signing certificate alone (PEM), by CA name, for the CAs the requested certificates need. It is the CA
      certificate, or during a rotation (where O(ca) holds a bundle of two) the one that matches the key;
      kube-controller-manager signs with it (C(--cluster-signing-cert-file)), as it accepts one certificate only.
  returned: when O(replica) is given, unless in check mode with CAs to create
  type: dict
kubeconfigs:
  description:
    - Kubeconfig files (YAML text) for the controller-manager, the scheduler and the cloud-controller-manager, with
      their client certificates.
  returned: when O(replica) is given and not in check mode
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._pki.material import PkiError, exit_with, now
from ansible_collections.kubeha.gce.plugins.module_utils._pki.replica import (
    KUBECONFIGS,
    LEAVES,
    converge_leaves,
    create_authorities,
    identity_from,
    kubeconfig,
    leaf_specs,
    load_authorities,
    parse_time,
)


def run(module: AnsibleModule) -> dict:
    params = module.params
    ca = params["ca"]
    if not params["create_ca"] and not ca:
        raise PkiError("ca is required unless create_ca is true")
    created: list = []
    result: dict = {"changed": False, "created_ca": created, "changed_leaves": []}
    if params["create_ca"]:
        if module.check_mode:
            existing = set((ca or {}).keys())
            created = [n for n in ("cluster", "etcd", "front_proxy", "service_account") if n not in existing]
            result.update(created_ca=created, ca=ca or {})
        else:
            ca, created = create_authorities(ca, params["key_type"], params["ca_validity_days"], params["rsa_key_size"])
            result.update(created_ca=created, ca=ca)
        result["changed"] = bool(created)
    if not params["replica"]:
        return result
    identity = identity_from(params["replica"])
    wanted = params["leaves"] or list(LEAVES)
    specs = leaf_specs(identity)
    stray = [n for n in params["reissue"] if n not in wanted]
    if stray:
        raise PkiError("reissue names %s, which leaves does not ask for (%s)" % (", ".join(stray), ", ".join(wanted)))
    issued_before = parse_time(params["issued_before"], "issued_before") if params["issued_before"] else None
    if issued_before and issued_before > now():
        raise PkiError("issued_before %s is in the future: the certificates issued now would be issued again by every "
                       "run; give the time the rotation began" % params["issued_before"])
    if module.check_mode and created:
        # The CAs do not exist yet: every certificate would be issued.
        leaves = {n: {"cert": None, "key": None, "reissued": True, "reason": "missing", "authority": specs[n].authority,
                      "before": None, "after": None} for n in wanted}
    else:
        authorities = load_authorities(ca, [specs[n].authority for n in wanted])
        result["signers"] = {name: authority.signer_pem for name, authority in authorities.items()}
        leaves = converge_leaves(identity, authorities, params["current"] or {}, wanted, params["key_type"],
                                 params["validity_days"], params["renew_before_days"], params["rsa_key_size"],
                                 module.check_mode, params["reissue"], issued_before)
        if not module.check_mode:
            result["kubeconfigs"] = {
                name: kubeconfig(user, params["apiserver_url"], authorities["cluster"].cert_pem, leaves[name]["cert"],
                                 leaves[name]["key"])
                for name, user in KUBECONFIGS.items() if name in leaves
            }
    changed = [n for n in wanted if leaves[n]["reissued"]]
    expiries = [side["not_after"] for side in ((leaves[n]["after"] or leaves[n]["before"]) for n in wanted)
                if side and side.get("not_after")]
    result.update(leaves=leaves, changed_leaves=changed, changed=result["changed"] or bool(changed),
                  earliest_expiry=min(expiries) if expiries else None)
    if module._diff:
        result["diff"] = {"before": {n: leaves[n]["before"] for n in wanted},
                          "after": {n: leaves[n]["after"] for n in wanted}}
    return result


def main() -> None:
    replica_spec = dict(
        name=dict(type="str", required=True),
        internal_ip=dict(type="str", required=True),
        external_ip=dict(type="str"),
        reserved_ip=dict(type="str"),
        service_ip=dict(type="str", default="10.0.0.1"),
        dns_domain=dict(type="str", default="cluster.local"),
        extra_sans=dict(type="list", elements="str", default=[]),
    )
    module = AnsibleModule(
        argument_spec=dict(
            ca=dict(type="dict"),
            create_ca=dict(type="bool", default=False),
            replica=dict(type="dict", options=replica_spec),
            current=dict(type="dict", default={}),
            leaves=dict(type="list", elements="str", choices=list(LEAVES)),
            key_type=dict(type="str", default="ecdsa", choices=["ecdsa", "rsa"]),
            rsa_key_size=dict(type="int", default=2048),
            validity_days=dict(type="int", default=365),
            ca_validity_days=dict(type="int", default=3650),
            renew_before_days=dict(type="int", default=30),
            reissue=dict(type="list", elements="str", default=[], choices=list(LEAVES)),
            issued_before=dict(type="str"),
            apiserver_url=dict(type="str", default="https://127.0.0.1:443"),
        ),
        supports_check_mode=True,
    )
    exit_with(module, run)


if __name__ == "__main__":
    main()
