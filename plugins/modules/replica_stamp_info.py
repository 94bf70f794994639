#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: replica_stamp_info
short_description: Whether a master replica is still as it was converged
version_added: 0.1.0
description:
  - Compares a replica with the stamp that M(kubeha.gce.replica_stamp) wrote there, part by part.
  - A part is current when it was recorded with the same inputs digest, paths and services; every file,
    directory and link under its paths is as recorded (content, mode, owner; none missing, none new); every
    service is active and enabled; and none of its certificates expires within O(renew_before_days).
  - A replica without a stamp, or whose stamp cannot be read, is not current.
  - RV(parts) lists, for each part that is not current, what differs, so that a run can say why it converges a
    replica again.
  - Changes nothing; takes the same options as M(kubeha.gce.replica_stamp). Uses only the Python standard library
    and C(systemctl).
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.attributes.info_module
options:
  parts:
    description:
      - The parts to compare, by name, as given to M(kubeha.gce.replica_stamp) (C(inputs), C(paths), C(exclude), C(units);
        C(expires) is read from the stamp).
    type: dict
    required: true
  path:
    description: The stamp file.
    type: path
    default: /etc/kubeha/converged.json
  renew_before_days:
    description: A part whose certificates expire within this many days is not current, so that they are renewed.
    type: int
    default: 30
seealso:
  - module: kubeha.gce.replica_stamp
"""

EXAMPLES = r"""
- name: Compare a replica with the parts that the collection's roles record (defaults of kubeha.gce.kubeha)
  kubeha.gce.replica_stamp_info:
    parts:
      pki: "{{ kubeha_stamp_pki }}"
      services: "{{ kubeha_stamp_services }}"
    renew_before_days: 45
  delegate_to: k-master-c
  become: true
  register: stamp

- name: Say what differs
  ansible.builtin.debug:
    msg: "{{ stamp.parts | dict2items | rejectattr('value.current') | map(attribute='value.differences') | flatten }}"
  when: not stamp.current
"""

RETURN = r"""
current:
  description: Whether every given part is current.
  returned: always
  type: bool
parts:
  description: For each given part, whether it is current, what differs, and whether that is drift.
  returned: always
  type: dict
  sample:
    services:
      current: false
      differences: ["/etc/gce.conf changed", "service kube-scheduler is inactive enabled"]
      drift: true
  contains:
    current:
      description: Whether the part is as it was converged.
      type: bool
    differences:
      description: What differs, one sentence each.
      type: list
      elements: str
    drift:
      description:
        - Whether the part differs although it was converged with the same inputs (a file changed, a service
          stopped, a certificate due), as opposed to a part without a stamp or with new inputs.
      type: bool
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._stamp import ARGUMENT_SPEC, StampError, check, parts_from


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)

    def run(argv):
        return module.run_command(list(argv))

    try:
        parts = check(module.params["path"], parts_from(module.params["parts"]), run, module.params["renew_before_days"],
                      datetime.datetime.now(datetime.timezone.utc))
    except StampError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, current=all(p["current"] for p in parts.values()), parts=parts)


if __name__ == "__main__":
    main()
