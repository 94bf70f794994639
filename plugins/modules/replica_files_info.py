#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: replica_files_info
short_description: Read several files of a master replica in one call
version_added: 0.1.0
description:
  - Returns each file named in O(paths) that exists on the replica, with its mode, owner, size and sha256, and
    (unless O(content=false)) its text, in one module run instead of one per file.
  - The roles read a replica's certificates, keys and kubeconfigs with it (the pki role) and its certificates'
    expiry (the status role, with the filter P(kubeha.gce.certificate_expiry#filter)).
  - A path that does not exist is left out of RV(files); one that is not a regular file, cannot be read, or (with
    O(content)) is not UTF-8 text fails the module, naming it.
  - Key material is returned as it is read, so a task that reads keys needs C(no_log).
  - Changes nothing. Uses only the Python standard library.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.attributes.info_module
options:
  paths:
    description: Absolute paths, or glob patterns such as C(/etc/kubernetes/pki/*.crt).
    type: list
    elements: path
    required: true
  content:
    description: Return each file's text.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Read the certificates of a replica
  kubeha.gce.replica_files_info:
    paths:
      - /etc/kubernetes/pki/*.crt
      - /etc/kubernetes/pki/etcd/*.crt
  delegate_to: k-master-c
  become: true
  register: certificates

- name: Say when each expires
  ansible.builtin.debug:
    msg: "{{ certificates.files | kubeha.gce.certificate_expiry }}"

- name: Read a key (key material is returned as it is read)
  kubeha.gce.replica_files_info:
    paths: [/etc/kubernetes/pki/ca.key]
  delegate_to: k-master
  become: true
  register: ca_key
  no_log: true
"""

RETURN = r"""
files:
  description: Each file that exists, by path.
  returned: always
  type: dict
  sample:
    /etc/kubernetes/pki/ca.crt:
      content: "-----BEGIN CERTIFICATE-----\n..."
      mode: "0644"
      uid: 0
      gid: 0
      size: 1123
      sha256: 5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef
  contains:
    content:
      description: The file's text.
      returned: when O(content=true)
      type: str
    mode:
      description: The permission bits, in octal.
      type: str
    uid:
      description: The owner's user ID.
      type: int
    gid:
      description: The owner's group ID.
      type: int
    size:
      description: The size in bytes.
      type: int
    sha256:
      description: The sha256 of the content.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._files import FilesError, read_files


def main() -> None:
    module = AnsibleModule(
        argument_spec={"paths": {"type": "list", "elements": "path", "required": True},
                       "content": {"type": "bool", "default": True}},
        supports_check_mode=True,
    )
    try:
        files = read_files(module.params["paths"], module.params["content"])
    except FilesError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, files=files)


if __name__ == "__main__":
    main()
