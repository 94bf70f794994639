# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Zone and quorum rules for the preflight checks of the lifecycle roles."""

from __future__ import annotations

import re
import typing as t
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.members import quorum as majority_of
from ansible_collections.kubeha.gce.plugins.module_utils._gce import names


def zone_region(zone: str) -> str:
    """The region of a zone name."""
    try:
        return names.region_of(str(zone or ""))
    except names.InvalidInput as exc:
        raise AnsibleFilterError(str(exc)) from None


def quorum(voters: int) -> int:
    """How many voting etcd members a majority needs."""
    voters = int(voters)
    if voters < 1:
        raise AnsibleFilterError("a cluster has at least one voting member, not %d" % voters)
    return majority_of(voters)


def fault_tolerance(voters: int) -> int:
    """How many voting members can fail while the rest keep a majority."""
    return int(voters) - quorum(voters)


def _zones(value: t.Any) -> list[str]:
    if isinstance(value, str):
        return [z.strip() for z in value.split(",") if z.strip()]
    return [str(z).strip() for z in value or [] if str(z).strip()]


def zone_name_problems(zones: t.Any) -> list[str]:
    """Why ``zones`` (a list, or a comma-separated string) are not zone names; empty when they are."""
    wanted = _zones(zones)
    if not wanted:
        return ["no zone was given: set zone, for example zone=europe-west1-c"]
    return ["zone '%s' is not a Compute Engine zone name such as europe-west1-c" % z for z in wanted if not names.ZONE.match(z)]


def zone_problems(zones: t.Any, known: t.Sequence[t.Mapping[str, t.Any]], region: str,
                  unavailable_ok: bool = False) -> list[str]:
    """Why ``zones`` cannot be used: not a zone of ``region`` that is up.

    ``known`` are the region's zones as gce_master_replica_info returns them (name and status). With
    ``unavailable_ok``, a zone that does not answer (UNAVAILABLE) is fine: the run only takes something out.
    """
    up = sorted(z["name"] for z in known if z.get("status", "UP") == "UP")
    problems = []
    for zone in _zones(zones):
        status = next((z.get("status", "UP") for z in known if z["name"] == zone), None)
        match = names.ZONE.match(zone)
        if status is None and match and match.group("region") != region:
            problems.append("zone %s is in region %s, but the cluster's masters are in region %s: every replica of a "
                            "cluster must be in one region; choose a zone of %s (%s)"
                            % (zone, match.group("region"), region, region, ", ".join(up) or "none is up"))
        elif status is None:
            problems.append("zone %s does not exist in region %s; its zones: %s"
                            % (zone, region, ", ".join(sorted(z["name"] for z in known)) or "none"))
        elif status == "UNAVAILABLE" and unavailable_ok:
            continue
        elif status == "UNAVAILABLE":
            problems.append("zone %s does not answer Compute Engine (a zone outage): nothing can be made or changed "
                            "there until it does; zones of %s that answer: %s"
                            % (zone, region, ", ".join(up) or "none"))
        elif status != "UP":
            problems.append("zone %s is %s; zones of %s that are up: %s" % (zone, status, region, ", ".join(up) or "none"))
    return problems


def bootstrap_problems(replicas: t.Sequence[t.Mapping[str, t.Any]], cluster: str, zone: str) -> list[str]:
    """Why bootstrapping ``cluster`` in ``zone`` must not happen; empty when it may.

    Bootstrap creates the first replica, CLUSTER-master, or checks it again: any other replica,
    or the first one in another zone, means the cluster exists and another role is meant.
    """
    first = names.first_replica_name(cluster)
    others = [r for r in replicas if r.get("name") != first or r.get("zone") != zone]
    if not others:
        return []
    return ["cluster %s already has replicas (%s): bootstrap only creates or checks its first replica %s in %s; "
            "use replicate to add replicas, recover to replace one, and status to look"
            % (cluster, ", ".join("%s in %s" % (r["name"], r.get("zone")) for r in replicas), first, zone)]


def replica_targets(replicas: t.Sequence[t.Mapping[str, t.Any]], zones: t.Any, cluster: str,
                    name: str | None = None) -> list[dict[str, t.Any]]:
    """The replicas a replicate run makes, one per zone: ``name`` and ``zone``, and ``exists`` when a
    replica of that name is already in that zone (a run that is repeated, or finishes a stopped one).

    A replica's name is ``name`` when given (one zone only), else ``CLUSTER-master-X`` after the
    zone's letter, so that a repeated run finds the replica it made.
    """
    wanted = _zones(zones)
    if name and len(wanted) > 1:
        raise AnsibleFilterError("replica_name names one replica, but %d zones were given; give one zone with it"
                                 % len(wanted))
    targets = []
    for zone in wanted:
        target = name or names.replica_name(cluster, zone)
        found = [r for r in replicas if r.get("name") == target]
        if found and found[0].get("zone") != zone:
            raise AnsibleFilterError("replica %s already exists in zone %s, not %s; give another replica_name"
                                     % (target, found[0].get("zone"), zone))
        targets.append({"name": target, "zone": zone, "exists": bool(found)})
    return targets


def replicate_problems(replicas: t.Sequence[t.Mapping[str, t.Any]], zones: t.Any, region: str | None = None,
                       allow_same_zone: bool = False, allow_even: bool = False) -> list[str]:
    """Why adding replicas in ``zones`` must not happen; empty when it may.

    ``replicas`` are the cluster's current replicas as gce_master_replica_info returns them;
    ``zones`` the zones asked for (a list, or a comma-separated string).
    """
    problems: list[str] = []
    wanted = _zones(zones)
    if not wanted:
        return ["no zone was given: set zone, for example zone=europe-west1-c (or several: zone=europe-west1-c,europe-west1-d)"]
    region = region or (replicas[0]["region"] if replicas else None)
    seen: set[str] = set()
    for zone in wanted:
        match = names.ZONE.match(zone)
        if not match:
            problems.append("zone '%s' is not a Compute Engine zone name such as europe-west1-c" % zone)
            continue
        if zone in seen:
            problems.append("zone %s is given twice; give each zone once" % zone)
        seen.add(zone)
        if region and match.group("region") != region:
            problems.append("zone %s is in region %s, but the cluster's masters are in region %s: every replica of a "
                            "cluster must be in one region; choose a zone of %s"
                            % (zone, match.group("region"), region, region))
        holders = [r["name"] for r in replicas if r.get("zone") == zone]
        if holders and not allow_same_zone:
            problems.append("zone %s already holds replica %s: a second replica there would fail with the first in a zone "
                            "outage; choose another zone of %s, or set allow_same_zone=true to do it anyway"
                            % (zone, ", ".join(sorted(holders)), region or match.group("region")))
    final = len(replicas) + len(wanted)
    if final % 2 == 0 and not allow_even:
        problems.append(
            "this would make %d replicas, an even number: etcd needs a majority (%d of %d), so %d replicas survive "
            "no more failures than %d do; add one more zone in the same run (for example zone=%s) to reach %d, "
            "or set allow_even=true to do it anyway"
            % (final, quorum(final), final, final, final - 1,
               ",".join(wanted + ["<another zone>"]), final + 1))
    return problems


def remove_problems(replicas: t.Sequence[t.Mapping[str, t.Any]], name: str | None = None,
                    zone: str | None = None, absent_ok: bool = False, unavailable: t.Sequence[str] = ()) -> list[str]:
    """Why removing the replica named ``name`` (or the one in ``zone``) must not happen; empty when it may.

    With ``absent_ok``, a target that does not exist is no problem: there is nothing to remove. When ``zone``
    is one of the ``unavailable`` zones (its replicas could not be listed), the target is found in etcd instead,
    and only the rule that a replica must stay applies here.
    """
    targets = [r for r in replicas if (name and r.get("name") == name) or (not name and zone and r.get("zone") == zone)]
    if not name and not zone:
        return ["say which replica to remove: set replica_name, or zone when the zone holds only one replica"]
    if not targets and zone in unavailable:
        if not replicas:
            return ["no replica of the cluster answers outside zone %s: nothing would stay to take the replica out "
                    "of etcd and the load balancer" % zone]
        return []
    if not targets and absent_ok:
        return []
    if not targets:
        where = "named %s" % name if name else "in zone %s" % zone
        existing = ", ".join("%s (%s)" % (r["name"], r.get("zone")) for r in replicas) or "none"
        return ["the cluster has no replica %s; its replicas: %s" % (where, existing)]
    if len(targets) > 1:
        return [_only_one_in_zone(targets, zone)[1]]
    if len(replicas) == 1:
        return ["%s is the cluster's last replica: removing it would remove the cluster's control plane and its data; "
                "it is never removed" % targets[0]["name"]]
    return []


def remove_targets(replicas: t.Sequence[t.Mapping[str, t.Any]], names: t.Any = None, zones: t.Any = None,
                   etcd: t.Mapping[str, t.Any] | None = None, unavailable: t.Sequence[str] = ()) -> list[dict[str, t.Any]]:
    """The replicas that one remove run takes out, in the order it takes them, each ``{name, zone, internal_ip,
    given, exists, failed}``: each of ``names`` (a list, or a comma-separated string) when given, or else the replica
    of each of ``zones``. Those lost already go first (removing a member that is down leaves as many healthy voters
    for a smaller quorum), the etcd leader's replica last, so that leadership moves once at most.

    A name that is not listed keeps the first zone given (a zone that does not answer is where it is looked for
    in etcd) or, with no zone given, the one zone that does not answer when the name is an etcd member's; the
    replica of a zone that does not answer is the one etcd member of no listed replica, when there is exactly one,
    or unnamed. ``exists`` says whether the replica is listed, or in a zone that does not answer and known to etcd;
    ``failed`` whether it is lost to the cluster already: its etcd member unhealthy, a learner or missing, or with
    nothing known of it from etcd, its VM not running or its zone not answering.
    """
    info = etcd or {}
    members = {m.get("name"): m for m in info.get("members") or [] if m.get("name")}
    unlisted = [m.get("name") for m in unlisted_members(info, replicas)] if info else []
    wanted_zones = _zones(zones)
    targets = []
    for name in _zones(names):
        found = [r for r in replicas if r.get("name") == name]
        zone = found[0].get("zone") if found else (wanted_zones or [""])[0]
        if not found and name in members and len(unavailable) == 1:
            zone = unavailable[0]  # a member of no listed replica, and one zone that does not answer: it is there
        targets.append({"name": name, "zone": zone, "given": "name"})
    if not targets:
        for zone in wanted_zones:
            found = [r for r in replicas if r.get("zone") == zone]
            name = found[0]["name"] if len(found) == 1 else ""
            if not found and zone in unavailable and len(unlisted) == 1:
                name = unlisted[0]
            targets.append({"name": name, "zone": zone, "given": "zone"})
    for target in targets:
        listed = [r for r in replicas if r.get("name") == target["name"]] if target["name"] else []
        # A learner that never started has no name yet: it is the member that peers on the replica's IP.
        target["internal_ip"] = listed[0].get("internal_ip") if listed else None
        member = next((m for m in info.get("members") or [] if _is(m, [target])), None) if target["name"] else None
        target["exists"] = bool(listed or (member and target["zone"] in unavailable))
        if member is not None:
            target["failed"] = not member.get("healthy") or bool(member.get("is_learner"))
        else:
            target["failed"] = target["zone"] in unavailable or bool(listed and listed[0].get("status") != "RUNNING") \
                or bool(info)  # etcd was read and has no member of it
    leader = ((info.get("leader") or {}).get("name")) or ""
    return sorted(targets, key=lambda target: (not target["failed"], bool(leader) and target["name"] == leader))


def _one_more(targets: t.Sequence[t.Mapping[str, t.Any]]) -> str:
    """The request with one more replica in it, as it was given: by name or by zone."""
    existing = [target for target in targets if target.get("exists")]
    if all(target.get("given") == "name" for target in targets):
        return "replica_name=%s" % ",".join([target["name"] for target in existing] + ["<another replica>"])
    return "zone=%s" % ",".join([target["zone"] for target in existing] + ["<another zone>"])


def remove_request_problems(replicas: t.Sequence[t.Mapping[str, t.Any]], targets: t.Sequence[t.Mapping[str, t.Any]],
                            etcd: t.Mapping[str, t.Any] | None = None, unavailable: t.Sequence[str] = (),
                            absent_ok: bool = False, allow_even: bool = False,
                            events: t.Mapping[str, t.Any] | None = None) -> list[str]:
    """Why a remove run of ``targets`` (as kubeha.gce.remove_targets returns them, in their order) must not start;
    empty when it may.

    Each target is checked as remove_problems checks one (given twice, ambiguous, missing unless ``absent_ok``; an
    etcd member whose VM is gone is recover's). Then the count: a running replica that answers stays, and the
    replicas that stay are not an even number, which survives no more failures than one fewer (unless
    ``allow_even``, or unless every replica removed is lost already: the cluster then lives with one fewer either
    way, and removing them is how it gets back). Then etcd (``etcd``, as kubeha.gce.etcd_member_info read it), step
    by step in the run's order, as each step is checked when it comes (see etcd_problems): every other member healthy
    and the healthy voters left a quorum; and the same of the events etcd (``events``) when the cluster runs one.
    """
    if not targets:
        return ["say which replicas to remove: set zone (one or more, comma-separated), or replica_name (one or more)"]
    info = etcd or {}
    problems = []
    seen: set[str] = set()
    for target in targets:
        key = target.get("name") or "zone %s" % target.get("zone")
        if key in seen:
            problems.append("%s is given twice; give each replica once" % key)
        seen.add(key)
        if not target.get("name") and target.get("zone") in unavailable:
            problems.append("zone %s does not answer Compute Engine, so its replicas cannot be listed, and etcd does "
                            "not say which of its members is there: set replica_name to say which replica to remove"
                            % target.get("zone"))
            continue
        orphan = not target.get("exists") and target.get("name") in [m.get("name") for m in info.get("members") or []]
        if orphan and target.get("zone") not in unavailable:
            problems.append("%s has no VM, but etcd still has its member: that is a failed replica, which recover makes "
                            "again (recover -e replica_name=%s); remove it once it runs" % (target["name"], target["name"]))
            continue
        problems += remove_problems(replicas, name=target.get("name") or None, zone=target.get("zone"),
                                    absent_ok=absent_ok, unavailable=unavailable)
    existing = [target for target in targets if target.get("exists")]
    staying = len(replicas) + len(unlisted_members(info, replicas)) - len(existing) if info else len(replicas) - len(existing)
    answering = [r for r in replicas if r.get("status") == "RUNNING" and not any(r.get("name") == t.get("name") for t in existing)]
    if existing and not answering:
        problems.append("this would leave no running replica that answers Compute Engine (%s would go): the last one is "
                        "never removed, and etcd is changed through one that stays"
                        % ", ".join(sorted(target["name"] for target in existing)))
    elif staying >= 2 and staying % 2 == 0 and not allow_even and not all(target.get("failed") for target in existing):
        problems.append(
            "this would leave %d replicas, an even number: etcd needs a majority (%d of %d), so %d replicas survive no "
            "more failures than %d do; remove one more in the same run (for example %s) to leave %d, or set "
            "allow_even=true to do it anyway"
            % (staying, quorum(staying), staying, staying, staying - 1, _one_more(targets), staying - 1))
    for label, read in (("", info), ("events etcd: ", events or {})):
        if not read or problems:
            continue
        members = list(read.get("members") or [])
        for target in existing:
            step = dict(read, members=members)
            problems += ["before %s is removed: %s%s" % (target["name"], label, problem)
                         for problem in etcd_problems(step, [target], removing=True)]
            if problems:
                break
            members = [m for m in members if not _is(m, [target])]
    return list(dict.fromkeys(problems))


def unlisted_members(info: t.Mapping[str, t.Any], replicas: t.Sequence[t.Mapping[str, t.Any]]) -> list[dict[str, t.Any]]:
    """The etcd members (as kubeha.gce.etcd_member_info returns them) of no replica in ``replicas``: in a zone
    outage, the members of the replicas that the zone's silence keeps from being listed."""
    return [dict(m) for m in info.get("members") or [] if not _is(m, list(replicas))]


def member_of(info: t.Mapping[str, t.Any], replica: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The etcd member (as kubeha.gce.etcd_member_info lists it in ``info``) of ``replica``: the one of its name, or
    else one that peers on its internal IP (a learner that never started has no name yet); {} when there is none."""
    members = list(info.get("members") or [])
    named = [m for m in members if replica.get("name") and m.get("name") == replica["name"]]
    if named:
        return dict(named[0])
    address = replica.get("internal_ip")
    peering = [m for m in members if address and any(urlsplit(u).hostname == address for u in m.get("peer_urls") or [])]
    return dict(peering[0]) if peering else {}


def _member_label(member: t.Mapping[str, t.Any]) -> str:
    urls = ", ".join(member.get("peer_urls") or [])
    return "%s (%s)" % (member.get("name") or "(not started)", urls) if urls else str(member.get("name"))


def _is(member: t.Mapping[str, t.Any], targets: t.Sequence[t.Any]) -> bool:
    """Whether ``member`` is one of ``targets`` (each a name, or a dict of name and/or peer URLs), compared exactly."""
    for target in targets:
        if isinstance(target, str):
            target = {"name": target}
        if target.get("name") and member.get("name") == target["name"]:
            return True
        if set(target.get("peer_urls") or []) & set(member.get("peer_urls") or []):
            return True
        # A replica (as gce_master_replica_info returns it): its member peers on its internal IP.
        if target.get("internal_ip") and any(urlsplit(u).hostname == target["internal_ip"] for u in member.get("peer_urls") or []):
            return True
    return False


def etcd_problems(info: t.Mapping[str, t.Any], targets: t.Sequence[t.Any] | None = None,
                  removing: bool = False) -> list[str]:
    """Why the etcd membership must not change now; empty when it may.

    ``info`` is what kubeha.gce.etcd_member_info returned. ``targets`` are the members this run
    acts on (each a name, a dict with ``name`` and/or ``peer_urls``, or a replica with its ``internal_ip``,
    which matches a member that peers on it even before it has a name): a learner or an unhealthy member among them
    is what the run is there to finish or replace, not a reason to stop. With ``removing``, the
    targets are to leave, and the healthy voters that stay must still make a quorum.
    """
    targets = list(targets or [])
    members = list(info.get("members") or [])
    voters = [m for m in members if not m.get("is_learner")]
    healthy = [m for m in voters if m.get("healthy")]
    problems = []
    if not info.get("has_quorum"):
        return ["etcd has no quorum: %d of %d voting members are healthy, and %d are needed; no membership change "
                "is safe now. Bring the failed members back (or restore etcd from a backup) first"
                % (len(healthy), len(voters), quorum(len(voters)) if voters else 1)]
    for member in members:
        if _is(member, targets):
            continue
        if member.get("is_learner"):
            problems.append("etcd member %s is a learner that was never promoted (a run stopped midway): run the same "
                            "replicate again to finish it, or remove it with remove -e replica_name=%s"
                            % (_member_label(member), member.get("name") or "NAME"))
        elif not member.get("healthy"):
            problems.append("etcd member %s is unhealthy (%s): membership changes wait until every other member is "
                            "healthy; recover it first (recover -e replica_name=%s)"
                            % (_member_label(member), member.get("error") or "no answer", member.get("name") or "NAME"))
    if removing:
        staying = [m for m in healthy if not _is(m, targets)]
        left = len([m for m in voters if not _is(m, targets)])
        if left and len(staying) < quorum(left):
            problems.append("after the removal %d voting members stay, of which %d are healthy, fewer than the %d "
                            "that a quorum needs; recover the unhealthy members first"
                            % (left, len(staying), quorum(left)))
    return problems


def recover_target(replicas: t.Sequence[t.Mapping[str, t.Any]], name: str | None = None, zone: str | None = None,
                   detached: t.Sequence[t.Mapping[str, t.Any]] = ()) -> str:
    """The name of the replica to recover: ``name``, or the one replica of ``zone``, or else (its VM is gone) the
    replica whose data disk no VM has attached in ``zone``, when there is one (``detached``, as
    gce_master_replica_info's detached_data_disks); empty when none or several."""
    if name:
        return name
    found = [r["name"] for r in replicas if r.get("zone") == zone] or [d["replica"] for d in detached if d.get("zone") == zone]
    return found[0] if len(found) == 1 else ""


def recover_plan(target: t.Mapping[str, t.Any], member: t.Mapping[str, t.Any] | None = None,
                 lb: t.Mapping[str, t.Any] | None = None, mode: str = "auto",
                 events: t.Mapping[str, t.Any] | None = None) -> dict[str, t.Any]:
    """Whether the replica ``target`` has failed, and why, and whether recover makes it again on its data disk with
    its etcd member (``reuse``) or as a new member. Failed: its VM is not running, its etcd ``member`` (as
    etcd_member_info lists it; empty when it has none) is unhealthy or only a learner, or the load balancer (``lb``, as
    ha_lb_info returns it) balances without it, as a recover or replicate stopped before its last steps leaves it.
    ``reuse``: mode reuse_disk, or auto while its member is still listed as a voter. ``events`` is its member of the
    events etcd when the cluster runs one (None when it does not), judged as ``member`` is."""
    members = {"etcd": member or {}}
    if events is not None:
        members["events etcd"] = events or {}
    lb = lb or {}
    why = []
    if target.get("status") != "RUNNING":
        why.append("its VM is %s" % ("gone" if not target.get("status") else target["status"]))
    for label, one in members.items():
        if one.get("is_learner"):
            why.append("its %s member is only a learner" % label)
        elif not one.get("healthy"):
            why.append("its %s member is %s" % (label, "unhealthy" if one else "missing"))
    if lb.get("state") == "balanced" and target.get("name") not in [m.get("name") for m in lb.get("members") or []]:
        why.append("the load balancer does not send it requests")
    reuse = mode == "reuse_disk" or (mode == "auto" and all(one and not one.get("is_learner") for one in members.values()))
    return {"failed": bool(why), "why": why, "reuse": reuse}


def recover_problems(replicas: t.Sequence[t.Mapping[str, t.Any]], name: str | None = None,
                     zone: str | None = None, detached: t.Sequence[t.Mapping[str, t.Any]] = ()) -> list[str]:
    """Why recovering the replica named ``name`` (or the one in ``zone``) cannot happen; empty when it may.

    A named replica whose VM is gone may be recovered (it is made again); a zone must hold exactly
    one replica, or with no VM, one data disk that no VM has attached (``detached``: a recover stopped after it
    deleted the VM). A cluster's only replica cannot be: there is no other member to change etcd through.
    """
    if not name and zone and not [r for r in replicas if r.get("zone") == zone]:
        name = recover_target(replicas, None, zone, detached) or None
    if not name and not zone:
        return ["say which replica to recover: set replica_name, or zone when the zone holds only one replica"]
    if name:
        others = [r for r in replicas if r.get("name") != name]
    else:
        target, problem = _only_one_in_zone(replicas, zone)
        if problem:
            return [problem]
        if target is None:
            existing = ", ".join("%s (%s)" % (r["name"], r.get("zone")) for r in replicas) or "none"
            return ["the cluster has no replica in zone %s; its replicas: %s. If the VM of the replica to recover is "
                    "gone, name it with replica_name" % (zone, existing)]
        others = [r for r in replicas if r is not target]
    if not others:
        return ["%s is the cluster's only replica: etcd membership is changed through another member, and there is "
                "none; restart or repair its VM (its data disk keeps etcd's data), or restore from a backup"
                % (name or [r["name"] for r in replicas if r.get("zone") == zone][0])]
    return []


def restore_target(replicas: t.Sequence[t.Mapping[str, t.Any]], name: str | None = None,
                   zone: str | None = None) -> dict[str, t.Any]:
    """The replica that ``name`` (or the only one in ``zone``) designates; ``{}`` when none or several do."""
    found = [r for r in replicas if r.get("name") == name][:1] if name else [_only_one_in_zone(replicas, zone)[0]]
    return dict(found[0]) if found and found[0] is not None else {}


def _only_one_in_zone(replicas: t.Sequence[t.Mapping[str, t.Any]],
                      zone: str | None) -> tuple[t.Mapping[str, t.Any] | None, str]:
    """The replica in ``zone`` (None when there is none), or why the zone does not say which one."""
    found = [r for r in replicas if r.get("zone") == zone]
    if len(found) > 1:
        return None, ("zone %s holds %d replicas (%s): set replica_name to say which one"
                      % (zone, len(found), ", ".join(sorted(r["name"] for r in found))))
    return (found[0] if found else None), ""


def restore_problems(replicas: t.Sequence[t.Mapping[str, t.Any]], name: str | None = None, zone: str | None = None,
                     unavailable: t.Sequence[str] = (), etcd: t.Mapping[str, t.Any] | None = None,
                     restored: bool = False, unread: t.Sequence[str] = (), pending: bool = False) -> list[str]:
    """Why restoring etcd from a snapshot on the replica named ``name`` (or the one in ``zone``) cannot happen.

    ``etcd`` is what etcd_member_info read through the cluster's running replicas (the answer with a quorum first);
    ``unread`` the running replicas whose etcd could not be read; ``restored`` whether the replica's etcd was made
    from a snapshot by an earlier restore, ``pending`` whether that restore was stopped halfway (the replica's own
    etcd is then down because of it). A restore throws away every write since the snapshot and every other
    member: it is refused while etcd has a quorum, and while a running replica could not be asked (it may hold
    one), except to finish a restore (the restored replica alone in its new cluster).
    """
    if not name and not zone:
        return ["say which replica to restore etcd on: set replica_name, or zone when the zone holds only one replica"]
    target = restore_target(replicas, name, zone)
    if not target:
        where = "named %s" % name if name else "in zone %s" % zone
        several = "" if name else _only_one_in_zone(replicas, zone)[1]
        if several:
            return [several]
        existing = ", ".join("%s (%s, %s)" % (r["name"], r.get("zone"), r.get("status")) for r in replicas) or "none"
        down = " (zones that do not answer: %s)" % ", ".join(unavailable) if unavailable else ""
        return ["the cluster has no replica %s in the zones that answer%s; its replicas: %s. etcd is restored on a "
                "running replica whose data disk holds the snapshot, or that a snapshot on the controller is copied "
                "to (snapshot_src)" % (where, down, existing)]
    problems = []
    if target.get("status") != "RUNNING":
        problems.append("%s is %s: etcd is restored on a running replica; start its VM (or recover it), or name "
                        "another" % (target["name"], target.get("status")))
    info = etcd or {}
    voters = int(info.get("voters") or 0)
    members = [m.get("name") for m in info.get("members") or [] if not m.get("is_learner")]
    finishing = restored and bool(info.get("has_quorum")) and members == [target["name"]]
    unread = [n for n in unread if not (pending and n == target["name"])]
    if unread and not finishing:
        problems.append(
            "etcd could not be read through the running replica(s) %s, which may still hold its quorum: a restore "
            "goes ahead only when every running replica is known to have lost it. Bring their etcd back, or stop "
            "the VMs of those that are lost (gcloud compute instances stop NAME --zone ZONE) and run again"
            % ", ".join(sorted(unread)))
    if info.get("has_quorum"):
        if not finishing:
            problems.append(
                "etcd has its quorum (%d of %d voting members healthy, %d needed): a restore is for a majority "
                "lost for good, and would throw away every write since the snapshot and every other member; "
                "recover a failed replica (recover) or remove it (remove) instead"
                % (int(info.get("healthy_voters") or 0), voters, quorum(voters) if voters else 1))
    return problems


def etcd_restartable(clusters: t.Sequence[t.Mapping[str, t.Any]], name: str) -> list[str]:
    """The etcd units (each entry of ``clusters`` is etcd_member_info's result read through the unit's member, with
    ``item.unit``) whose member ``name`` may restart now: its cluster can do without it for the seconds of the
    restart. That is when the member is not a healthy voter itself (a learner, an unhealthy member, none), when the
    other healthy voters keep a majority, or when the cluster has one or two voting members, all healthy (two lose
    their majority for those seconds, as when etcd's own settings change). A cluster that could not be read is not."""
    units = []
    for cluster in clusters or []:
        if not isinstance(cluster, t.Mapping) or "voters" not in cluster:
            continue
        own = next((m for m in cluster.get("members") or [] if m.get("name") == name), {})
        voters, healthy = int(cluster["voters"]), int(cluster["healthy_voters"])
        if (own.get("is_learner", True) or not own.get("healthy", False) or healthy - 1 >= int(cluster["quorum"])
                or (voters <= 2 and healthy == voters)):
            units.append(cluster["item"]["unit"])
    return units


def rolling_problems(replicas: t.Sequence[t.Mapping[str, t.Any]], action: str, unavailable: t.Sequence[str] = (),
                     reached: t.Sequence[str] | None = None, etcd: t.Mapping[str, t.Any] | None = None,
                     events: t.Mapping[str, t.Any] | None = None) -> list[str]:
    """Why a change rolled out one replica at a time (``action``) must not start now; empty when it may. Every zone
    of the region answers (a zone that does not may hold a replica that the change would miss), every replica runs
    and answers over SSH (``reached``: the names that did), and each etcd (``etcd``, and ``events`` when the cluster
    runs one) has its quorum, with every member a healthy voter and a member on every running replica: a replica
    restarts only while the others can do without it."""
    problems = ["zone %s does not answer Compute Engine, and a replica there would be left out: %s once it answers"
                % (zone, action) for zone in unavailable]
    for replica in replicas:
        if replica.get("status") != "RUNNING":
            problems.append("replica %s in zone %s is %s: recover it first (recover -e replica_name=%s)"
                            % (replica["name"], replica.get("zone"), replica.get("status"), replica["name"]))
        elif reached is not None and replica["name"] not in reached:
            problems.append("replica %s in zone %s does not answer over SSH: reach it, or recover it (recover -e "
                            "replica_name=%s)" % (replica["name"], replica.get("zone"), replica["name"]))
    for label, info in (("etcd", etcd), ("events etcd", events)):
        if info is None:
            continue
        members = list(info.get("members") or [])
        named = {m.get("name") for m in members}
        problems.extend("replica %s has no %s member (a replicate that stopped before it joined): run replicate again "
                        "to finish it, or remove it (remove -e replica_name=%s)" % (r["name"], label, r["name"])
                        for r in replicas if r.get("status") == "RUNNING" and r["name"] not in named)
        voters = [m for m in members if not m.get("is_learner")]
        healthy = [m for m in voters if m.get("healthy")]
        if not info.get("has_quorum"):
            problems.append("%s has no quorum (%d of %d voting members healthy)" % (label, len(healthy), len(voters)))
            continue
        for member in members:
            if member.get("is_learner"):
                problems.append("%s member %s is a learner that was never promoted: run replicate again to finish it, or "
                                "remove it (remove -e replica_name=%s)" % (label, _member_label(member),
                                                                           member.get("name") or "NAME"))
            elif not member.get("healthy"):
                problems.append("%s member %s is unhealthy (%s): recover it first (recover -e replica_name=%s)"
                                % (label, _member_label(member), member.get("error") or "no answer",
                                   member.get("name") or "NAME"))
    return problems


def _exec_flags(unit: str) -> dict[str, str]:
    """The ``--flag=value`` arguments of the ExecStart line of a systemd unit's text (its continuation lines too)."""
    command = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", unit or "", re.MULTILINE)
    flags = {}
    for word in (command.group(1).replace("\\\n", " ").split() if command else []):
        if word.startswith("--") and "=" in word:
            name, value = word[2:].split("=", 1)
            flags[name] = value
    return flags


#: The flags of a running replica that a run may not change, by unit: the setting that writes each, and why.
_FIXED_FLAGS = {
    ("kube-apiserver", "service-cluster-ip-range"): (
        "kubeha_service_cluster_ip_range (or kube-apiserver's extra flag service-cluster-ip-range)",
        "a running cluster cannot take that, as the kubernetes service and every Service's cluster IP were given from "
        "it (a new range means a new cluster)"),
    ("etcd", "data-dir"): (
        "kubeha_etcd_data_dir (or the etcd role's etcd_data_dir)",
        "the member's data is there, and a member that starts on another directory starts empty"),
    ("etcd", "listen-peer-urls"): (
        "kubeha_etcd_peer_port",
        "the other members reach it at the peer URL that the membership holds, which a changed unit does not change"),
    ("etcd-events", "data-dir"): (
        "kubeha_etcd_events_data_dir",
        "the member's data is there, and a member that starts on another directory starts empty"),
    ("etcd-events", "listen-peer-urls"): (
        "kubeha_etcd_events_peer_port",
        "the other members reach it at the peer URL that the membership holds, which a changed unit does not change"),
}


def _flag_value(flag: str, value: str) -> str:
    """What is compared of a flag: the port of a peer URL (its address is the replica's own), else the value."""
    return urlsplit(value).netloc.rsplit(":", 1)[-1] if flag == "listen-peer-urls" else value


def reconfigure_problems(reads: t.Sequence[t.Mapping[str, t.Any]], wanted: t.Mapping[str, t.Mapping[str, t.Any]]
                         ) -> list[str]:
    """Why the settings asked for cannot reach the running replicas. ``reads`` are the results of a
    kubeha.gce.replica_files_info loop over the replicas (``item.name``), each reading the units of kube-apiserver
    and etcd (``/etc/systemd/system/UNIT.service``); ``wanted`` maps a unit to the flags the run would write
    (``listen-peer-urls`` as a port). The service range cannot change under a running cluster, nor an etcd member's
    data directory or peer port. A unit that was not read, or a flag it has not, says nothing."""
    problems = []
    for read in reads or []:
        name = (read.get("item") or {}).get("name")
        for path, entry in sorted((read.get("files") or {}).items()):
            unit = path.rsplit("/", 1)[-1][:-len(".service")] if path.endswith(".service") else path
            flags = _exec_flags(entry.get("content") or "")
            for flag, value in sorted((wanted.get(unit) or {}).items()):
                now = flags.get(flag)
                if now is None or _flag_value(flag, now) == str(value):
                    continue
                setting, why = _FIXED_FLAGS.get((unit, flag), (flag, "it cannot change under a running cluster"))
                problems.append("%s on %s runs with --%s=%s, and %s would make it %s: %s; keep %s"
                                % (unit, name, flag, now, setting, value, why, _flag_value(flag, now)))
    return problems


class FilterModule:
    """Zone and quorum rules of kubeha.gce."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            "etcd_restartable": etcd_restartable,
            "rolling_problems": rolling_problems,
            "reconfigure_problems": reconfigure_problems,
            "zone_region": zone_region,
            "zone_name_problems": zone_name_problems,
            "zone_problems": zone_problems,
            "bootstrap_problems": bootstrap_problems,
            "etcd_problems": etcd_problems,
            "quorum": quorum,
            "fault_tolerance": fault_tolerance,
            "replicate_problems": replicate_problems,
            "replica_targets": replica_targets,
            "recover_problems": recover_problems,
            "recover_target": recover_target,
            "recover_plan": recover_plan,
            "restore_problems": restore_problems,
            "restore_target": restore_target,
            "remove_problems": remove_problems,
            "remove_targets": remove_targets,
            "remove_request_problems": remove_request_problems,
            "unlisted_members": unlisted_members,
            "member_of": member_of,
            "resource_names": names.resource_names,
        }
