#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_restore
short_description: Rebuild a replica's etcd member from a snapshot, as a new one-member cluster
version_added: 0.1.0
description:
  - For the day a majority of the etcd members is lost for good. Restores O(snapshot) into O(data_dir) with
    C(snapshot restore) (of C(etcdutl) when it is installed next to etcdctl, else of etcdctl) as the only member,
    O(name) at O(peer_url), of a new cluster with a new cluster token, and so a new cluster ID; the members of the
    old cluster can never join it.
  - The snapshot is read first (C(snapshot status), its sha256); one that cannot be read changes nothing. etcd must
    not answer at O(endpoints) (stop the member first); the module fails otherwise.
  - The restore is written beside O(data_dir) and swapped in by renames; the data directory it replaces is kept as
    C(DATA_DIR.before-restore-YYYYmmddTHHMMSSZ). The restored directory is owned by O(owner), mode 0700.
  - A record C(DATA_DIR.restored.json) says which snapshot (sha256), member and peer URL the data directory was made
    from, and how far the restore went (C(pending) while the renames are under way, C(restored) once they are done,
    C(done) once the caller started the member on the data and said so with O(started=true)). A run with the same ones
    again changes nothing unless O(force=true), and one after a run that was stopped halfway finishes it without
    moving the data twice.
  - Runs on a replica (delegate to it); uses only the Python standard library besides etcd's tools. The restore
    playbook of the collection drives it (see docs/lifecycle.md).
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
    details: The data directory and the snapshot it was restored from, before and after.
  idempotent:
    support: full
notes:
  - O(endpoints) (and the other connection options) are where the member would answer; they are only checked to
    answer nothing.
  - Only the main etcd is restored; an events etcd (kube-up's second one) holds only events, which are lost.
options:
  snapshot:
    description:
      - The snapshot file on the replica, as M(kubeha.gce.etcd_snapshot) keeps it.
    type: path
    required: true
  data_dir:
    description:
      - The member's data directory, as the etcd unit gives it to etcd.
    type: path
    default: /mnt/disks/master-pd/var/etcd/data
  name:
    description:
      - The member's name (the replica's), as the etcd unit gives it.
    type: str
    required: true
  peer_url:
    description:
      - The member's peer URL, as the etcd unit advertises it, for example V(https://10.132.0.5:2380).
    type: str
    required: true
  owner:
    description:
      - The user that etcd runs as, who gets the restored directory.
    type: str
    default: etcd
  etcdctl:
    description:
      - The etcdctl program; C(etcdutl) next to it is used when it exists.
    type: str
    default: etcdctl
  force:
    description:
      - Restore even when the record says the data directory was restored from this snapshot already, for a later
        quorum loss of a cluster that grew again since (its data directory holds more than the snapshot).
    type: bool
    default: false
  begin:
    description:
      - Only record that a restore from O(snapshot) begins (the record says C(pending)); the data directory is not
        touched and the member may still run. Written before etcd is stopped, it lets the next run know that a run
        killed between the stop and the restore was restoring this member, and finish it.
    type: bool
    default: false
    version_added: 0.1.0
  started:
    description:
      - Only record that the member was started on the data restored from O(snapshot) (the record goes from
        C(restored) to C(done)). Until then, a run that finds the member's etcd down knows that a restore stopped it,
        and finishes it. Fails when the data directory was not restored from O(snapshot).
    type: bool
    default: false
    version_added: 0.1.0
seealso:
  - module: kubeha.gce.etcd_snapshot
  - module: kubeha.gce.etcd_member_info
"""

EXAMPLES = r"""
- name: Restore the etcd member of demo-master from its newest snapshot
  kubeha.gce.etcd_restore:
    snapshot: /mnt/disks/master-pd/var/etcd/snapshots/demo-20261205T031500Z.db
    name: demo-master
    peer_url: https://10.132.0.5:2380
  delegate_to: demo-master
  become: true
"""

RETURN = r"""
restored:
  description: What the data directory was restored from (in check mode, would be).
  returned: always
  type: dict
  contains:
    snapshot:
      description: The snapshot's path.
      type: str
    sha256:
      description: The snapshot's sha256.
      type: str
    revision:
      description: The etcd revision of the snapshot.
      type: int
    total_keys:
      description: The number of keys in it.
      type: int
    hash:
      description: Its hash, as C(snapshot status) reads it.
      type: int
    name:
      description: The member's name.
      type: str
    peer_url:
      description: The member's peer URL.
      type: str
    cluster_token:
      description: The new cluster's token.
      type: str
      sample: kubeha-restored-20261205t061500z
    restored_at:
      description: When (UTC).
      type: str
    state:
      description: >-
        V(restored) once the data directory is swapped, V(done) once the member was started on it (O(started));
        the record says V(pending) while the swap is under way.
      type: str
previous_data_dir:
  description: Where the data directory before the restore was kept; null when there was none.
  returned: always
  type: str
  sample: /mnt/disks/master-pd/var/etcd/data.before-restore-20261205T061500Z
"""

import datetime

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import EtcdError
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.module import etcd_module, run
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.restore import request_from_params, restore


def main() -> None:
    module = etcd_module(dict(
        snapshot=dict(type="path", required=True),
        data_dir=dict(type="path", default="/mnt/disks/master-pd/var/etcd/data"),
        name=dict(type="str", required=True),
        peer_url=dict(type="str", required=True),
        owner=dict(type="str", default="etcd"),
        etcdctl=dict(type="str", default="etcdctl"),
        force=dict(type="bool", default=False),
        begin=dict(type="bool", default=False),
        started=dict(type="bool", default=False),
    ), mutually_exclusive=[("begin", "started")])
    etcdctl = module.get_bin_path(module.params["etcdctl"], required=True, opt_dirs=["/usr/local/bin"])

    def command(argv, environ):
        return module.run_command(list(argv), environ_update=dict(environ))

    def work(client):
        try:
            request = request_from_params(module.params, etcdctl)
            result = restore(client, request, command, datetime.datetime.now(datetime.timezone.utc), module.check_mode,
                             module.params["force"], module.params["begin"], module.params["started"])
        except (OSError, KeyError) as exc:
            raise EtcdError("restore into %s: %s" % (module.params["data_dir"], exc)) from None
        if not module._diff:
            del result["diff"]
        return result

    run(module, work)


if __name__ == "__main__":
    main()
