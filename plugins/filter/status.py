# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The state of a cluster as the status role reports it: per replica, etcd, the load balancer, and advice."""

from __future__ import annotations

import os
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeha.gce.plugins.module_utils._pki.material import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    PkiError,
    load_cert,
    not_after,
)


def _member_state(member: t.Mapping[str, t.Any] | None, etcd_read: bool) -> str | None:
    if member is None:
        return "not a member" if etcd_read else None
    if member.get("is_learner"):
        return "learner"
    return None if member.get("healthy") else "etcd unhealthy"


def _replica_state(replica: t.Mapping[str, t.Any] | None, member: t.Mapping[str, t.Any] | None,
                   reachable: t.Container[str], unavailable: t.Sequence[str], etcd_read: bool) -> str:
    if replica is None:
        # An etcd member without a VM that could be listed: in a zone that did not answer, or gone.
        return "zone unavailable" if unavailable else "no VM"
    if replica.get("status") != "RUNNING":
        return "VM %s" % str(replica.get("status") or "unknown").lower()
    if replica.get("name") not in reachable:
        return "no SSH answer"
    return _member_state(member, etcd_read) or "ok"


# What a report says of an etcd cluster's membership.
_COUNTS = ("voters", "healthy_voters", "quorum", "has_quorum")


def _events_problems(events: t.Mapping[str, t.Any], replicas: t.Sequence[t.Mapping[str, t.Any]]) -> list[str]:
    """What is wrong with the events etcd (as etcd_member_info returned it; empty: it could not be read)."""
    if "has_quorum" not in events:
        return ["the events etcd could not be read through any replica"]
    if not events.get("has_quorum"):
        return ["the events etcd has NO QUORUM: %s of %s voting members healthy, %s needed; the API cannot write events"
                % (events.get("healthy_voters"), events.get("voters"), events.get("quorum"))]
    members = {m.get("name"): m for m in events.get("members") or [] if m.get("name")}
    problems = []
    for replica in replicas:
        if replica.get("etcd") != "voter" or not replica.get("etcd_healthy"):
            continue  # said already, of the main etcd
        member = members.get(replica["name"])
        if member is None:
            problems.append("%s: events etcd not a member" % replica["name"])
        elif member.get("is_learner") or not member.get("healthy"):
            problems.append("%s: events etcd %s" % (replica["name"], "learner" if member.get("is_learner") else "unhealthy"))
    # Members that belong to no replica: left by a run stopped between the two etcd clusters.
    names = {replica["name"] for replica in replicas}
    for name, member in sorted(members.items()):
        if name not in names:
            problems.append("events etcd member %s belongs to no replica of the cluster (%s)"
                            % (name, "healthy" if member.get("healthy") else "unhealthy"))
    unnamed = [m for m in events.get("members") or [] if not m.get("name")]
    if unnamed:
        problems.append("%d events etcd learner(s) never started (a run stopped midway)" % len(unnamed))
    return problems


def cluster_report(cluster: t.Mapping[str, t.Any], etcd: t.Mapping[str, t.Any] | None = None,
                   lb: t.Mapping[str, t.Any] | None = None, reachable: t.Sequence[str] = (),
                   events: t.Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
    """Whether the cluster is healthy or degraded, why, and what to do, from what the status role read.

    ``cluster`` is what gce_master_replica_info returned, ``etcd`` what etcd_member_info returned through a
    replica (empty when no replica could read it), ``lb`` what ha_lb_info returned and ``reachable`` the
    names of the replicas that answered over SSH. ``events`` is what etcd_member_info returned of the events etcd
    when the cluster runs one (None when it does not; empty when it could not be read).
    """
    etcd = etcd or {}
    lb = lb or {}
    etcd_read = "has_quorum" in etcd
    unavailable = [z["name"] for z in cluster.get("unavailable_zones") or []]
    listed = {r["name"]: r for r in cluster.get("replicas") or []}
    members = {m["name"]: m for m in etcd.get("members") or [] if m.get("name")}
    lb_health = {m.get("name"): m.get("health") for m in lb.get("members") or []}

    replicas = []
    for name in sorted(set(listed) | set(members)):
        replica, member = listed.get(name), members.get(name)
        replicas.append({
            "name": name, "zone": (replica or {}).get("zone"),
            "state": _replica_state(replica, member, reachable, unavailable, etcd_read),
            "vm": (replica or {}).get("status"),
            "etcd": None if member is None else ("learner" if member.get("is_learner") else "voter"),
            "etcd_healthy": None if member is None else bool(member.get("healthy")),
            "lb_health": lb_health.get(name),
        })

    problems, advice = [], []
    for zone in unavailable:
        lost = [r["name"] for r in replicas if r["state"] == "zone unavailable"]
        problems.append("zone %s does not answer Compute Engine%s" % (
            zone, "; its replicas cannot be listed (etcd members not found in the zones that answer: %s)"
            % ", ".join(lost) if lost else ""))
    for replica in replicas:
        if replica["state"] not in ("ok", "zone unavailable"):
            problems.append("%s%s: %s" % (replica["name"], " (%s)" % replica["zone"] if replica["zone"] else "",
                                          replica["state"]))
    if events is not None:
        problems += _events_problems(events, replicas)
    unnamed = [m for m in etcd.get("members") or [] if not m.get("name")]
    if unnamed:
        problems.append("%d etcd learner(s) never started (a run stopped midway)" % len(unnamed))

    if not etcd_read:
        problems.append("etcd could not be read through any replica")
        advice.append("make a replica answer over SSH (a running VM in a zone that is up), then run status again")
    elif not etcd.get("has_quorum"):
        problems.append("etcd has NO QUORUM: %s of %s voting members healthy, %s needed; the API cannot write"
                        % (etcd.get("healthy_voters"), etcd.get("voters"), etcd.get("quorum")))
        advice.append("bring the unhealthy members back (their VMs, or their zones), or restore etcd from a snapshot "
                      "once the majority is lost for good")
    else:
        if unavailable:
            advice.append("etcd keeps its quorum (%s of %s voting members healthy, %s needed) and the API is served "
                          "by the replicas that answer; wait for %s to come back, then run status again"
                          % (etcd.get("healthy_voters"), etcd.get("voters"), etcd.get("quorum"),
                             " and ".join(unavailable)))
        broken = [r for r in replicas if r["state"] not in ("ok", "zone unavailable") and r["zone"]]
        for replica in broken:
            advice.append("replace %s in place: ansible-playbook kubeha.gce.recover -e zone=%s -e replica_name=%s"
                          % (replica["name"], replica["zone"], replica["name"]))
    return {
        "degraded": bool(problems), "problems": problems, "advice": advice, "replicas": replicas,
        "unavailable_zones": unavailable,
        "etcd": {key: etcd.get(key) if etcd_read else None for key in _COUNTS},
        "etcd_leader": (etcd.get("leader") or {}).get("name") if etcd_read else None,
        "events_etcd": None if events is None else {key: events.get(key) for key in _COUNTS},
        "load_balancer": {"state": lb.get("state"), "members": dict(sorted(lb_health.items()))},
    }


def certificate_expiry(files: t.Mapping[str, t.Mapping[str, t.Any]], base: str = "/etc/kubernetes/pki") -> list[dict[str, t.Any]]:
    """When each certificate expires: ``files`` as kubeha.gce.replica_files_info returns them, each named by its
    path under ``base``. One that cannot be read has no expiry but an ``error``, and comes first (it needs a look
    soonest); the others follow, soonest expiry first."""
    if CRYPTOGRAPHY_IMPORT_ERROR:
        raise AnsibleFilterError("certificate_expiry needs the Python library cryptography on the controller")
    found = []
    for path, entry in (files or {}).items():
        name = os.path.relpath(path, base) if path.startswith(base.rstrip("/") + "/") else path
        try:
            expires = not_after(load_cert(str(entry.get("content") or ""), name))
        except PkiError as exc:
            found.append({"name": name, "not_after": None, "error": str(exc)})
            continue
        found.append({"name": name, "not_after": expires.strftime("%Y-%m-%dT%H:%M:%SZ"), "error": None})
    return sorted(found, key=lambda c: (c["error"] is None, c["not_after"] or "", c["name"]))


def snapshot_summary(result: t.Mapping[str, t.Any] | None, host: str, copy: str = "") -> str:
    """One line for a run's summary: the etcd snapshot it took (``result``, what etcd_snapshot returned), on which
    replica, and ``copy``, where on the controller it was copied (empty: it was not)."""
    snapshot = (result or {}).get("snapshot") if not (result or {}).get("skipped") else None
    if not snapshot:
        return "etcd snapshot: none taken (the etcd membership did not change)"
    if "revision" not in snapshot:
        return "etcd snapshot: %s on %s would be taken (check mode)" % (snapshot["path"], host)
    return "etcd snapshot: %s on %s (revision %s, %s keys)%s" % (
        snapshot["path"], host, snapshot["revision"], snapshot.get("total_keys"), "; copied to %s" % copy if copy else "")


def etcd_summary(info: t.Mapping[str, t.Any] | None, label: str | None = None) -> str:
    """One line for a run's summary: an etcd cluster's membership as etcd_member_info returned it (``info``), named
    ``label``, or else the label of the loop item it was read for (a cluster of kubeha_etcd_clusters), or C(etcd)."""
    info = info or {}
    item = info.get("item")
    label = label or (item.get("label") if isinstance(item, t.Mapping) else None) or "etcd"
    if "voters" not in info:
        return "%s: not read" % label
    return "%s: %s voting members, %s healthy, leader %s, %d learners" % (
        label, info.get("voters"), info.get("healthy_voters"), (info.get("leader") or {}).get("name") or "none",
        len(info.get("learners") or []))


def workflow_report(etcd: t.Any, replicas: t.Sequence[t.Mapping[str, t.Any]], action: str, cluster: str,
                    region: str | None = None, address: str | None = None, done: t.Sequence[str] = ()) -> dict[str, t.Any]:
    """What a lifecycle playbook hands to an AWX workflow as ``set_stats`` data once it has run ``action``.

    ``etcd`` is what etcd_member_info returned at the end of the run (a registered loop over the etcd clusters is
    taken by its first result, the main etcd); empty or skipped when it could not be read (check mode on a cluster
    that does not exist yet). ``replicas`` are the cluster's replicas with their ``name`` and ``zone``, ``done`` the
    names of those the run added, converged, removed or recovered.
    """
    done = sorted(set(done or ()))
    if isinstance(etcd, t.Mapping) and isinstance(etcd.get("results"), list):
        etcd = (etcd["results"] or [{}])[0]
    etcd = etcd if isinstance(etcd, t.Mapping) else {}
    etcd_read = "has_quorum" in etcd
    zones = {r["name"]: r.get("zone") for r in replicas or [] if r.get("name")}
    members = {m["name"]: m for m in etcd.get("members") or [] if m.get("name")}
    listed = []
    for name in sorted(set(zones) | set(members)):
        state = _member_state(members.get(name), etcd_read) or ("ok" if etcd_read else "not read")
        listed.append({"name": name, "zone": zones.get(name), "state": state})
    return {
        "action": action, "cluster": cluster, "region": region, "address": address,
        "changed": bool(done), "done": done, "replicas": listed,
        "etcd": {key: etcd.get(key) if etcd_read else None for key in _COUNTS},
        "etcd_leader": (etcd.get("leader") or {}).get("name") if etcd_read else None,
    }


class FilterModule:
    """The status report of kubeha.gce."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"cluster_report": cluster_report, "certificate_expiry": certificate_expiry,
                "snapshot_summary": snapshot_summary, "etcd_summary": etcd_summary,
                "workflow_report": workflow_report}
