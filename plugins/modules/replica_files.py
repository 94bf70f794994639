#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: replica_files
short_description: Write several files of a master replica in one call
version_added: 0.1.0
description:
  - Writes each file in O(files) whose content, mode or owner differs from what is on the replica, in one module run
    instead of one per file; the counterpart of M(kubeha.gce.replica_files_info).
  - New content is written to a temporary file in the same directory, with mode 0600 until its owner and mode are
    set, and synced, for every file first; then each is renamed over its old file, so that a service reading it (or
    a run killed halfway) finds the old file or the new one, never part of one, and a run killed while the files are
    written leaves every old file (a CA's certificate and key change together; only a kill amid the renames, which
    take microseconds, leaves some renamed). A file whose content is the same only gets its mode and owner set.
  - The roles write a replica's CA material, certificates, keys and kubeconfigs with it (the pki and etcd roles).
  - Every file is checked before any is written; a path that is not absolute, given twice, not a regular file (a
    symbolic link is refused, never followed), without content, or in a directory that does not exist fails the
    module, naming it, and nothing is written. In check mode a missing directory or owner (one an earlier task
    would make) predicts the file written instead.
  - A failure while writing names the file; one before the renames leaves every file as it was, and RV(files) says
    what was done before it.
  - The diff names each file with its mode, owner and the sha256 of its content, never the content; the task still
    needs C(no_log) when the content is key material, as task arguments are shown on failure.
  - Uses only the Python standard library.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.attributes
options:
  files:
    description: The files to write.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file. Its directory must exist.
        type: path
        required: true
      content:
        description: The file's text (UTF-8).
        type: str
        required: true
      mode:
        description:
          - Permission bits, as octal text (V("0640")); an unquoted YAML number such as C(0640) is read as the
            octal number it was written as.
        type: raw
        default: "0600"
      force:
        description: When false, a file that exists is kept as it is (content, mode and owner); only a missing one is written.
        type: bool
        default: true
  owner:
    description: User that owns every file written.
    type: str
    default: root
  group:
    description: Group that owns every file written.
    type: str
    default: root
seealso:
  - module: kubeha.gce.replica_files_info
"""

EXAMPLES = r"""
- name: Write a replica's front-proxy CA certificate and key
  kubeha.gce.replica_files:
    files:
      - path: /etc/kubernetes/pki/front-proxy-ca.crt
        content: "{{ front_proxy.cert }}"
        mode: "0644"
      - path: /etc/kubernetes/pki/front-proxy-ca.key
        content: "{{ front_proxy.key }}"
  delegate_to: k-master-c
  become: true
  no_log: true

- name: Write etcd's certificates, owned by etcd
  kubeha.gce.replica_files:
    files:
      - path: /etc/kubernetes/pki/etcd/server.crt
        content: "{{ server.cert }}"
      - path: /etc/kubernetes/pki/etcd/server.key
        content: "{{ server.key }}"
    owner: etcd
    group: etcd
  become: true
  no_log: true
"""

RETURN = r"""
files:
  description:
    - What was done (in check mode, what would be done) to each file, by path, as C(created), C(replaced) (new
      content), C(attributes) (the same content with a new mode or owner) or C(unchanged).
    - On a failure while writing, the files done before it.
  returned: always
  type: dict
  sample:
    /etc/kubernetes/pki/front-proxy-ca.crt: created
    /etc/kubernetes/pki/front-proxy-ca.key: unchanged
"""

import grp
import pwd
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._files import FilesError, apply_writes, plan_writes

ARGUMENT_SPEC = {
    "files": {"type": "list", "elements": "dict", "required": True, "options": {
        "path": {"type": "path", "required": True},
        "content": {"type": "str", "required": True, "no_log": True},
        "mode": {"type": "raw", "default": "0600"},
        "force": {"type": "bool", "default": True},
    }},
    "owner": {"type": "str", "default": "root"},
    "group": {"type": "str", "default": "root"},
}


def ids(owner: str, group: str, check_mode: bool) -> tuple[int | None, int | None]:
    """The user and group IDs of owner and group. One that does not exist fails, except in check mode, where an
    earlier task would have made it (None: every file is then predicted to change)."""
    found: list[int | None] = []
    for kind, name, lookup in (("user", owner, lambda n: pwd.getpwnam(n).pw_uid),
                               ("group", group, lambda n: grp.getgrnam(n).gr_gid)):
        try:
            found.append(lookup(name))
        except KeyError:
            if not check_mode:
                raise FilesError("%s %s does not exist on this host" % (kind, name)) from None
            found.append(None)
    return found[0], found[1]


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    done: dict[str, str] = {}
    try:
        uid, gid = ids(module.params["owner"], module.params["group"], module.check_mode)
        changes = plan_writes(module.params["files"], uid, gid, module.check_mode)
        if not module.check_mode:
            apply_writes(changes, t.cast(int, uid), t.cast(int, gid), done)
    except FilesError as exc:
        module.fail_json(msg=str(exc), changed=any(a != "unchanged" for a in done.values()), files=done)
    changed = [c for c in changes if c.action != "unchanged"]
    result = {"changed": bool(changed), "files": {c.path: c.action for c in changes}}
    if module._diff:
        result["diff"] = {"before": "".join("%s: %s\n" % (c.path, c.before) for c in changed),
                          "after": "".join("%s: %s\n" % (c.path, c.after) for c in changed)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
