# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Zone and quorum rules for the preflight checks of the lifecycle roles."""

from __future__ import annotations

import re
import typing as t

from ansible.errors import AnsibleFilterError

ZONE = re.compile(r"^(?P<region>[a-z]+-[a-z]+[0-9]+)-[a-z]$")


def zone_region(zone: str) -> str:
    """The region of a zone name."""
    match = ZONE.match(str(zone or ""))
    if not match:
        raise AnsibleFilterError("zone '%s' is not a Compute Engine zone name such as europe-west1-c" % zone)
    return match.group("region")


def quorum(voters: int) -> int:
    """How many voting etcd members a majority needs."""
    voters = int(voters)
    if voters < 1:
        raise AnsibleFilterError("a cluster has at least one voting member, not %d" % voters)
    return voters // 2 + 1


def fault_tolerance(voters: int) -> int:
    """How many voting members can fail while the rest keep a majority."""
    return int(voters) - quorum(voters)


def _zones(value: t.Any) -> list[str]:
    if isinstance(value, str):
        return [z.strip() for z in value.split(",") if z.strip()]
    return [str(z).strip() for z in value or [] if str(z).strip()]


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
        match = ZONE.match(zone)
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
                    zone: str | None = None) -> list[str]:
    """Why removing the replica named ``name`` (or the one in ``zone``) must not happen; empty when it may."""
    targets = [r for r in replicas if (name and r.get("name") == name) or (not name and zone and r.get("zone") == zone)]
    if not name and not zone:
        return ["say which replica to remove: set replica_name, or zone when the zone holds only one replica"]
    if not targets:
        where = "named %s" % name if name else "in zone %s" % zone
        existing = ", ".join("%s (%s)" % (r["name"], r.get("zone")) for r in replicas) or "none"
        return ["the cluster has no replica %s; its replicas: %s" % (where, existing)]
    if len(targets) > 1:
        return ["zone %s holds %d replicas (%s): set replica_name to say which one"
                % (zone, len(targets), ", ".join(sorted(r["name"] for r in targets)))]
    if len(replicas) == 1:
        return ["%s is the cluster's last replica: removing it would remove the cluster's control plane and its data; "
                "it is never removed" % targets[0]["name"]]
    return []


class FilterModule:
    """Zone and quorum rules of kubeha.gce."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            "zone_region": zone_region,
            "quorum": quorum,
            "fault_tolerance": fault_tolerance,
            "replicate_problems": replicate_problems,
            "remove_problems": remove_problems,
        }
