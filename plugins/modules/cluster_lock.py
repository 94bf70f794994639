#!/usr/bin/python
# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_lock
short_description: One run at a time on the HA masters of a Kubernetes cluster on Compute Engine
version_added: 0.1.0
description:
  - Takes, renews or releases the lock of one run on a cluster, so that two runs that change the same cluster
    (two AWX jobs, an operator and a schedule) do not interleave. The lifecycle roles take it before their checks
    and release it when they end, failed or not.
  - The lock is held as labels on the cluster's reserved address C(CLUSTER-master-ip), which exists from the
    first step of bootstrap to the end of the cluster and is never moved. Compute Engine changes labels only
    through C(setLabels) with the fingerprint of the labels it has and refuses a stale one, so taking the lock is
    a compare-and-swap; the module reads the labels back to confirm. Other labels of the address are kept.
  - The labels say who holds the lock (C(kubeha-lock-by), O(holder)), what for (C(kubeha-lock-for),
    O(purpose)), since when and until when (C(kubeha-lock-since), C(kubeha-lock-until), seconds since the epoch),
    with the run's id in C(kubeha-lock) and its controller process in C(kubeha-lock-proc).
  - A lock is a lease of O(ttl) seconds, renewed by taking it again with the same O(run_id). Another run's lock
    is taken over when it has expired, when its run's process on the same controller has ended (same boot and
    PID namespace, that PID gone or started later), or when O(break_lock) names it; otherwise the module waits
    up to O(timeout) seconds, then fails naming the holder and how to break the lock.
  - Taking and releasing its own lock leaves the address as it was, so they report no change; taking over
    another run's lock reports a change and a warning.
author:
  - kubeha.gce maintainers (@kubeha)
extends_documentation_fragment:
  - kubeha.gce.gce
  - kubeha.gce.attributes
  - kubeha.gce.attributes.actiongroup_gce
notes:
  - Without the reserved address (before bootstrap reserves it) or with an address that is not the cluster's,
    nothing is locked; the module returns RV(locked=false) with the reason, and the checks that follow it refuse
    what cannot be done.
  - Expiry compares the controllers' clocks; keep them in time (NTP) and O(ttl) well above their drift.
  - In check mode nothing is written; a lock held by another run is reported with a warning, not waited for.
options:
  cluster_name:
    description:
      - The name of the Kubernetes cluster (kube-up's C(INSTANCE_PREFIX)).
    type: str
    required: true
  region:
    description:
      - The region of the reserved address, for example V(europe-west1).
    type: str
    required: true
  state:
    description:
      - V(present) takes the lock, or renews it when O(run_id) holds it already.
      - V(renewed) renews the lock that O(run_id) holds, and fails when it does not hold it any more (its lease
        ended and another run took it, or it was broken), so that a run stops before a step another run may
        interleave with.
      - V(absent) releases the lock of O(run_id); another run's lock is left as it is, with a warning.
    type: str
    choices: [present, renewed, absent]
    default: present
  run_id:
    description:
      - The id of the run's lock (6 to 32 lowercase letters and digits), as RV(lock.id) returned it.
      - A new random one when not set with O(state=present); required with O(state=renewed) and O(state=absent).
    type: str
  holder:
    description:
      - Who holds the lock, for the message another run shows, for example the AWX job and its user.
      - C(USER at HOSTNAME) of the controller when not set.
    type: str
  purpose:
    description:
      - What the run does, for example V(replicate europe-west1-c).
    type: str
  ttl:
    description:
      - Seconds after which the lock expires unless it is renewed.
    type: int
    default: 1200
  timeout:
    description:
      - Seconds to wait while another run holds the lock; V(0) fails at once.
    type: int
    default: 600
  break_lock:
    description:
      - The id of another run's lock to take over now, because that run is known to be dead. Only that lock is
        broken; if another run holds the lock by then, the module waits for it as usual.
    type: str
  wait_timeout:
    description:
      - Seconds to wait for each label change to finish.
    type: int
    default: 120
seealso:
  - module: kubeha.gce.gce_master_network
"""

EXAMPLES = r"""
- name: Take the lock of cluster kubernetes, waiting up to ten minutes
  kubeha.gce.cluster_lock:
    cluster_name: kubernetes
    region: europe-west1
    purpose: replicate europe-west1-c
  register: lock

- name: Release it
  kubeha.gce.cluster_lock:
    cluster_name: kubernetes
    region: europe-west1
    state: absent
    run_id: "{{ lock.lock.id }}"

- name: Break the lock of a run that was killed on another controller
  kubeha.gce.cluster_lock:
    cluster_name: kubernetes
    region: europe-west1
    break_lock: 3f9a0c41d2e7
"""

RETURN = r"""
locked:
  description: Whether this run holds the lock now.
  returned: always
  type: bool
reason:
  description:
    - Why the lock is not held (no reserved address, not the cluster's, check mode, released), or why another
      run's lock was taken over; empty when the lock was free or already this run's.
  returned: always
  type: str
  sample: expired at 2026-12-05T06:12:40Z
lock:
  description: The lock this run holds (in check mode, would hold), or null.
  returned: always
  type: dict
  contains:
    id:
      description: The run's id; give it as O(run_id) to renew or release.
      type: str
      sample: 3f9a0c41d2e7
    holder:
      description: Who holds it, as a label value.
      type: str
      sample: root-at-bastion
    purpose:
      description: What for, as a label value.
      type: str
      sample: replicate-europe-west1-c
    since:
      description: When it was taken (UTC).
      type: str
      sample: "2026-12-05T05:52:40Z"
    expires:
      description: When it expires unless renewed (UTC).
      type: str
      sample: "2026-12-05T06:12:40Z"
previous:
  description: The lock that another run held and this one took over or released, in the shape of RV(lock); null otherwise.
  returned: always
  type: dict
waited:
  description: Seconds spent waiting for another run's lock.
  returned: always
  type: float
  sample: 42.5
waited_for:
  description: The lock of the run that this one waited for (the last one, if several), in the shape of RV(lock); null when it did not wait.
  returned: always
  type: dict
"""

from ansible_collections.kubeha.gce.plugins.module_utils._gce.lock import STATES, ClusterLock, spec_from_params
from ansible_collections.kubeha.gce.plugins.module_utils._gce.module import checked, converge, gce_module


def main() -> None:
    argument_spec = dict(
        cluster_name=dict(type="str", required=True),
        region=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=list(STATES)),
        run_id=dict(type="str"),
        holder=dict(type="str"),
        purpose=dict(type="str"),
        ttl=dict(type="int", default=1200),
        timeout=dict(type="int", default=600),
        break_lock=dict(type="str"),
        wait_timeout=dict(type="int", default=120),
    )
    module = gce_module(argument_spec)
    spec = checked(module, spec_from_params, module.params)

    converge(module, spec, ClusterLock)


if __name__ == "__main__":
    main()
