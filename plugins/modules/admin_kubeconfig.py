#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: admin_kubeconfig
short_description: Write a kubeconfig for the cluster's administrator
version_added: 0.2.0
description:
  - Writes, on the host it runs on (the controller, in the lifecycle roles), a kubeconfig with the cluster's
    API address, its CA certificate and a client certificate for an administrator, signed by the cluster CA
    given in O(ca). The file has mode C(0600).
  - The identity is kubeadm's C(kubernetes-admin) in the group C(kubeha:cluster-admins), which the lifecycle roles
    bind to the ClusterRole C(cluster-admin) (so deleting the binding takes the right away), or with
    O(super_admin=true) C(kubernetes-super-admin) in C(system:masters), which no RBAC binding can restrict.
  - A client certificate already in O(dest) is kept while it is right (subject, issuer, key, and not within
    O(renew_before_days) of its expiry); otherwise one is issued with a new key. The server and CA are set when
    they differ. A second run with the same arguments changes nothing.
  - The file is the module's own. One that holds other clusters, users or contexts is refused rather than
    overwritten; merge several files with C(KUBECONFIG=a:b) instead.
  - The CA key is used in memory only; O(ca) is kept out of the output and logs by the argument spec.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.attributes
options:
  dest:
    description: Path of the kubeconfig. Its directory must exist. A symbolic link is followed.
    type: path
    required: true
  server:
    description: The API server's URL, for example C(https://203.0.113.10) (the cluster's reserved address).
    type: str
    required: true
  cluster_name:
    description: The cluster's name; the kubeconfig's cluster entry is named after it, its user and context
      C(USER@CLUSTER).
    type: str
    required: true
  ca:
    description: The cluster CA, C(cert) and C(key) in PEM (the C(cluster) entry of kubeha.gce.replica_pki's C(ca)).
    type: dict
    required: true
  super_admin:
    description: Issue the certificate for C(kubernetes-super-admin) in C(system:masters) instead of
      C(kubernetes-admin) in C(kubeha:cluster-admins).
    type: bool
    default: false
  key_type:
    description: The client key's type.
    type: str
    default: ecdsa
    choices: [ecdsa, rsa]
  rsa_key_size:
    description: Bits of an RSA key.
    type: int
    default: 2048
  validity_days:
    description: Validity of a new client certificate, in days (never beyond the CA's).
    type: int
    default: 365
  renew_before_days:
    description:
      - Issue the certificate again when it expires within this many days (but not when it ends with the CA, as a
        new one would too). Must be less than O(validity_days).
    type: int
    default: 30
notes:
  - In check mode nothing is written and no key is made; the result says what would change and why.
requirements:
  - cryptography >= 42.0.0
  - PyYAML (comes with ansible-core)
seealso:
  - module: kubeha.gce.replica_pki
"""

EXAMPLES = r"""
- name: Write the administrator's kubeconfig next to the playbook
  kubeha.gce.admin_kubeconfig:
    dest: "{{ playbook_dir }}/k.kubeconfig"
    server: https://203.0.113.10
    cluster_name: k
    ca: "{{ cluster_ca }}"
"""

RETURN = r"""
dest:
  description: The kubeconfig's path.
  returned: always
  type: str
  sample: /home/ops/k.kubeconfig
server:
  description: The API server's URL in the kubeconfig.
  returned: always
  type: str
  sample: https://203.0.113.10
context:
  description: The kubeconfig's current context.
  returned: always
  type: str
  sample: kubernetes-admin@k
subject:
  description: The client certificate's subject.
  returned: always
  type: str
  sample: CN=kubernetes-admin,O=kubeha:cluster-admins
not_after:
  description: When the client certificate expires (ISO 8601); null in check mode when one would be issued.
  returned: always
  type: str
  sample: "2027-12-05T22:00:00+00:00"
reissued:
  description: Whether the client certificate was (in check mode, would be) issued again.
  returned: always
  type: bool
reason:
  description: Why the file was (would be) written, or null.
  returned: always
  type: str
  sample: the client certificate is not signed by the cluster CA
"""

import datetime
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._pki.admin import (
    converge,
    describe_state,
    fingerprint,
    names,
    read,
    render,
    spec_for,
)
from ansible_collections.kubeha.gce.plugins.module_utils._pki.material import (
    PkiError,
    exit_with,
    load_authority,
)


def write(path: str, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600 from its creation (mkstemp's)."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise PkiError("the directory %s of dest does not exist" % directory)
    handle, partial = tempfile.mkstemp(prefix=".kubeconfig.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(partial, path)
    except OSError as exc:
        raise PkiError("cannot write %s: %s" % (path, exc)) from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def run(module: AnsibleModule) -> dict:
    params = module.params
    # A symbolic link is followed: the file it names is the one read and replaced.
    path = os.path.realpath(params["dest"])
    cluster, super_admin = params["cluster_name"], params["super_admin"]
    if params["validity_days"] <= params["renew_before_days"]:
        raise PkiError("validity_days (%d) must be more than renew_before_days (%d), or every run would issue the "
                       "certificate again" % (params["validity_days"], params["renew_before_days"]))
    authority = load_authority("cluster", params["ca"])
    current = None
    mode = None
    if os.path.exists(path):
        mode = os.stat(path).st_mode & 0o777
        try:
            with open(path, encoding="utf-8") as stream:
                text = stream.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise PkiError("cannot read %s: %s" % (path, exc)) from None
        current = read(text, path, cluster, super_admin)
    wanted, reissue, why = converge(current, authority, params["server"], super_admin, params["key_type"],
                                    params["validity_days"], params["renew_before_days"], params["rsa_key_size"],
                                    module.check_mode)
    if why is None and mode is not None and mode != 0o600:
        why = "its mode is %04o, wanted 0600" % mode
    changed = why is not None
    if changed and wanted is not None and not module.check_mode:
        write(path, render(wanted, cluster, super_admin))
    after = describe_state(wanted)
    if wanted is not None and reissue is None and after and after["not_after"]:
        left = datetime.datetime.fromisoformat(after["not_after"]) - datetime.datetime.now(datetime.timezone.utc)
        if left < datetime.timedelta(days=params["renew_before_days"]):
            module.warn("the client certificate in %s expires on %s, with the cluster CA: a new one could not last "
                        "longer. Renew the cluster CA." % (params["dest"], after["not_after"]))
    spec = spec_for(super_admin)
    result = {
        "changed": changed, "dest": params["dest"], "server": params["server"], "context": names(cluster, super_admin)[1],
        "subject": ",".join(["CN=%s" % spec.common_name] + ["O=%s" % o for o in spec.organizations]),
        "not_after": after and after["not_after"], "reissued": reissue is not None, "reason": why,
    }
    if module._diff:
        before = describe_state(current, mode) or ({"mode": "%04o" % mode} if mode is not None else {})
        planned = {"server": params["server"], "ca_sha256": fingerprint(authority.cert_pem), "subject":
                   result["subject"], "not_after": None, "serial": None, "mode": "0600"}
        result["diff"] = {"before": before, "after": after or planned, "before_header": params["dest"],
                          "after_header": params["dest"]}
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            server=dict(type="str", required=True),
            cluster_name=dict(type="str", required=True),
            ca=dict(type="dict", required=True, no_log=True),
            super_admin=dict(type="bool", default=False),
            key_type=dict(type="str", default="ecdsa", choices=["ecdsa", "rsa"]),
            rsa_key_size=dict(type="int", default=2048),
            validity_days=dict(type="int", default=365),
            renew_before_days=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    exit_with(module, run)


if __name__ == "__main__":
    main()
