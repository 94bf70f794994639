#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: replica_stamp
short_description: Record what a master replica was converged to
version_added: 0.1.0
description:
  - Runs on a replica once a role has converged a part of it, and records in a stamp file, for each part given
    in O(parts), the digest of the inputs the part was converged with, every file, directory and link under the
    part's paths (sha256, mode, owner), the services that must run, and when its certificates must be renewed.
  - M(kubeha.gce.replica_stamp_info) compares the replica with the stamp, so that a re-run skips the roles of a
    part that is still as it was converged, and converges again one with a changed file, a stopped service, an
    expiring certificate or new inputs.
  - Parts not given are kept as they are. Nothing is written when the recorded part is the same.
  - Uses only the Python standard library.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.attributes
options:
  parts:
    description:
      - The parts to record, by name (the roles use C(pki) and C(services)).
      - Each is a dict with C(inputs), a non-empty digest of what the part was converged with (see the
        P(kubeha.gce.stamp_digest#filter) filter); C(paths), the absolute paths the part writes (a directory
        covers everything under it); C(exclude), paths under those that another part covers; C(units), the systemd services that must be active and enabled; and
        C(expires), the earliest expiry of the part's certificates (ISO 8601), if it has any.
    type: dict
    required: true
  path:
    description: The stamp file. Its directory is created with mode 0700; the file has mode 0600.
    type: path
    default: /etc/kubeha/converged.json
  renew_before_days:
    description: Not used when recording; accepted so that the writer and M(kubeha.gce.replica_stamp_info) take the same options.
    type: int
    default: 30
seealso:
  - module: kubeha.gce.replica_stamp_info
"""

EXAMPLES = r"""
- name: Record that the control plane of the replica is converged
  kubeha.gce.replica_stamp:
    parts:
      services:
        inputs: "{{ {'version': 'v1.31.0', 'name': inventory_hostname} | kubeha.gce.stamp_digest }}"
        paths: [/etc/kubernetes/addons, /etc/systemd/system/kube-apiserver.service]
        units: [kube-apiserver]
  become: true
"""

RETURN = r"""
parts:
  description: The stamp's parts after the run (in check mode, as they would be), without the file lists.
  returned: always
  type: dict
  sample:
    services:
      inputs: sha256:5f0c...
      files: 42
      units: [kube-apiserver]
      expires: null
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._stamp import ARGUMENT_SPEC, StampError, parts_from, plan, summary, write


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        before, after, changed = plan(module.params["path"], parts_from(module.params["parts"]),
                                      datetime.datetime.now(datetime.timezone.utc))
        if changed and not module.check_mode:
            write(module.params["path"], after)
    except StampError as exc:
        module.fail_json(msg=str(exc))
    result = {"changed": changed, "parts": summary(after)}
    if module._diff:
        result["diff"] = {"before": summary(before), "after": summary(after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
