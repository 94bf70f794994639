#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: replica_units_info
short_description: Which services of a master replica run with files older than those on disk
version_added: 0.1.0
description:
  - For each systemd service, reads when its main process started and the command lines it runs, and lists what it
    read at start that changed since. That is its executable (written since, replaced under the running process, or a
    link that now points at another binary), every file that a C(--flag=value) of its command line names as one it
    reads (a flag ending in C(file), C(kubeconfig), C(config), C(certificate) or C(-key); comma-separated values too),
    except the flags of O(reloaded), and its unit file when it changed and systemd was not reloaded.
  - A certificate issued again, a kubeconfig written again or a binary replaced is not used by a service that read it
    at start until the service is restarted; RV(stale) names those services, in the order given, so that a run can
    restart exactly them.
  - Only files that exist and are regular files count. A service that is not active is never stale (starting it
    reads its files).
  - Changes nothing. Uses only the Python standard library, C(systemctl) and C(/proc).
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.attributes.info_module
options:
  units:
    description: The services, without C(.service).
    type: list
    elements: str
    required: true
  reloaded:
    description:
      - For each service, the flags whose files it reads again by itself when they change; those files do not make it
        stale. Each value is a list of flag names.
      - By default, kube-apiserver's C(tls-cert-file), C(tls-private-key-file), C(client-ca-file) and
        C(requestheader-client-ca-file), and the addon manager's C(kubeconfig) and C(kubectl) (it runs kubectl with
        that kubeconfig on each pass).
    type: dict
seealso:
  - module: kubeha.gce.replica_stamp_info
"""

EXAMPLES = r"""
- name: Find the control-plane services that run with older certificates than those on disk
  kubeha.gce.replica_units_info:
    units: [kube-apiserver, kube-controller-manager, kube-scheduler]
  delegate_to: k-master-c
  become: true
  register: units

- name: Restart them
  ansible.builtin.systemd_service:
    name: "{{ item }}"
    state: restarted
    daemon_reload: true
  loop: "{{ units.stale }}"
  delegate_to: k-master-c
  become: true
"""

RETURN = r"""
stale:
  description: The services that are active and read at start a file written since, in the order of O(units).
  returned: always
  type: list
  elements: str
  sample: [kube-apiserver]
units:
  description: For each service of O(units), what was found.
  returned: always
  type: dict
  sample:
    kube-apiserver:
      active: true
      pid: 4242
      started: "2026-12-06T10:53:41.123456+00:00"
      files: [/usr/local/bin/kube-apiserver, /etc/kubernetes/pki/apiserver-etcd-client.crt]
      newer: [/etc/kubernetes/pki/apiserver-etcd-client.crt]
  contains:
    active:
      description: Whether systemd has the service active.
      type: bool
    pid:
      description: The PID of its main process, or null when it is not active.
      type: int
    started:
      description:
        - When its main process started (ISO 8601), or null when it is not active. Computed from the monotonic clock,
          it may differ by microseconds from one reading to the next; RV(units.pid) tells a restart.
      type: str
    files:
      description: The files it read at start that exist, its executable first.
      type: list
      elements: str
    newer:
      description:
        - What changed since it started, each a path - its executable (written since, or replaced), those of
          RV(units.files) written since, and its unit file when systemd was not reloaded since it changed.
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._units import ARGUMENT_SPEC, UnitsError, check


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)

    def run(argv):
        return module.run_command(list(argv))

    try:
        units = check(module.params["units"], module.params["reloaded"], run)
    except UnitsError as exc:
        module.fail_json(msg=str(exc))
    stale = [name for name in module.params["units"] if units[name]["newer"]]
    module.exit_json(changed=False, stale=stale, units=units)


if __name__ == "__main__":
    main()
