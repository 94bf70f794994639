#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_snapshot
short_description: Take an etcd v3 snapshot on a master replica, check it, and keep a bounded number
version_added: 0.1.0
description:
  - Takes a snapshot of the etcd cluster with C(etcdctl snapshot save) through the first of O(endpoints) whose
    member answers and has a leader, reads it back with C(snapshot status) (its hash, revision and number of keys;
    of C(etcdutl) when it is installed next to etcdctl, as etcd 3.6 has it there only, else of etcdctl), and only
    then keeps it as C(PREFIX-YYYYmmddTHHMMSSZ.db) in O(dest), mode 0600. A snapshot that cannot be read back is
    deleted, and the module fails.
  - Fails before it starts when O(dest) has less free space than the member's database and 64 MiB.
  - Then deletes the oldest snapshots of O(prefix) in O(dest) beyond O(keep) (one that cannot be deleted is a
    warning), and temporary files that a killed run left there an hour or more ago.
  - Every run takes a new snapshot, so it always reports a change; in check mode it says which file it would
    write and which it would delete, and writes nothing.
  - Runs on a replica (delegate to it), where the etcd role installs C(etcdctl); uses only the Python standard
    library besides that. A lifecycle run takes one before it changes the etcd membership, on the data
    disk of a replica that stays.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.etcd
  - kubeha.gce.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The snapshots of O(prefix) in O(dest) before and after.
  idempotent:
    support: none
    details: Every run takes a new snapshot.
options:
  dest:
    description: The directory of the snapshots (made with mode 0700 when missing).
    type: path
    default: /mnt/disks/master-pd/var/etcd/snapshots
  prefix:
    description: The start of each snapshot's file name, for example the cluster's name.
    type: str
    default: etcd
  keep:
    description: How many snapshots of O(prefix) to keep in O(dest), this one included.
    type: int
    default: 5
  etcdctl:
    description: The etcdctl to run (found on the PATH and in C(/usr/local/bin) when it is a bare name).
    type: str
    default: etcdctl
seealso:
  - module: kubeha.gce.etcd_member_info
"""

EXAMPLES = r"""
- name: Take a snapshot before a membership change, with the TLS settings of the etcd action group
  kubeha.gce.etcd_snapshot:
    prefix: "{{ kubeha_cluster_name }}"
    keep: 5
  module_defaults:
    group/kubeha.gce.etcd:
      ca_cert: /etc/kubernetes/pki/etcd/ca.crt
      client_cert: /etc/kubernetes/pki/apiserver-etcd-client.crt
      client_key: /etc/kubernetes/pki/apiserver-etcd-client.key
  delegate_to: k-master
  become: true
  register: snapshot

- name: Say which one
  ansible.builtin.debug:
    msg: "{{ snapshot.snapshot.path }} at revision {{ snapshot.snapshot.revision }}"
"""

RETURN = r"""
snapshot:
  description: The snapshot taken (in check mode, the one that would be).
  returned: always
  type: dict
  contains:
    path:
      description: Where it is on the replica.
      type: str
      sample: /mnt/disks/master-pd/var/etcd/snapshots/demo-20261205T031500Z.db
    endpoint:
      description: The member it was taken through.
      type: str
      sample: https://127.0.0.1:2379
    taken_at:
      description: When, UTC.
      type: str
      sample: "2026-12-05T03:15:00Z"
    revision:
      description: The etcd revision it holds, as C(etcdctl snapshot status) reads it.
      returned: unless in check mode
      type: int
    hash:
      description: Its hash, as C(etcdctl snapshot status) reads it.
      returned: unless in check mode
      type: int
    total_keys:
      description: The number of keys it holds.
      returned: unless in check mode
      type: int
    size:
      description: Its size in bytes.
      returned: unless in check mode
      type: int
removed:
  description: The older snapshots deleted (in check mode, those that would be) to keep O(keep).
  returned: always
  type: list
  elements: str
"""

import datetime

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import EtcdError
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.module import etcd_module, run
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.snapshot import request_from_params, take


def main() -> None:
    module = etcd_module(dict(
        dest=dict(type="path", default="/mnt/disks/master-pd/var/etcd/snapshots"),
        prefix=dict(type="str", default="etcd"),
        keep=dict(type="int", default=5),
        etcdctl=dict(type="str", default="etcdctl"),
    ))
    etcdctl = module.get_bin_path(module.params["etcdctl"], required=True, opt_dirs=["/usr/local/bin"])

    def command(argv, environ):
        return module.run_command(list(argv), environ_update=dict(environ))

    def work(client):
        try:
            request = request_from_params(module.params, etcdctl)
            result = take(client, request, command, datetime.datetime.now(datetime.timezone.utc), module.check_mode)
        except OSError as exc:
            raise EtcdError("snapshot in %s: %s" % (module.params["dest"], exc)) from None
        for warning in result.pop("warnings"):
            module.warn(warning)
        if not module._diff:
            del result["diff"]
        return result

    run(module, work)


if __name__ == "__main__":
    main()
