# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a change rolled out one replica at a time did on each replica."""

from __future__ import annotations

import typing as t


def rolling_report(names: t.Sequence[str], issued_again: t.Mapping[str, t.Sequence[str]] | None = None,
                   refreshed: t.Sequence[t.Mapping[str, t.Any]] | None = None) -> list[str]:
    """One line per replica of ``names``, in that order: the certificates issued again there (``issued_again``, as the
    pki role notes them), why it was converged again and what was restarted, and how long it took (``refreshed``, as
    kubeha.gce.kubeha's refresh and reconverge note it; the last record of a replica counts)."""
    issued_again = issued_again or {}
    records = {record["name"]: record for record in refreshed or []}
    lines = []
    for name in names:
        parts = []
        if name in issued_again:
            leaves = list(issued_again[name])
            parts.append("issued again %s" % ", ".join(leaves) if leaves else "no certificate issued again")
        record = records.get(name)
        if record and record.get("current"):
            lines.append("%s: as it was converged, left as it is" % name)
            continue
        if record and "why" in record:
            parts.append("converged again (%s)" % "; ".join(record["why"]) if record["why"] else "converged again")
        if record and record.get("restarted"):
            took = "ready after %.1f s" % record["ready_after"]
            if record.get("drained"):
                took = "out of the load balancer: %s, back after %.1f s" % (took, record["back_after"])
            elif "kube-apiserver" in record["restarted"]:
                # One replica, or none other healthy: what the API was down for, at most.
                took += ", the API down meanwhile: no other replica served it"
            parts.append("restarted %s (%s)" % (", ".join(record["restarted"]), took))
        else:
            parts.append("nothing restarted")
        if record and record.get("left"):
            parts.append("still runs with older files: %s (its cluster could not do without it)" % ", ".join(record["left"]))
        lines.append("%s: %s" % (name, "; ".join(parts)))
    return lines


def restarted_units(after: t.Mapping[str, t.Mapping[str, t.Any]], before: t.Mapping[str, t.Mapping[str, t.Any]]) -> list[str]:
    """The services that run now with another main process than before (started anew, or started at all), as
    kubeha.gce.replica_units_info's ``units`` says them, in the order of ``after``. The main PID tells it: the start
    time is computed from two clocks, and two readings of one process may differ by microseconds."""
    return [unit for unit, now in after.items()
            if now.get("active") and now.get("pid") != (before.get(unit) or {}).get("pid")]


def rolling_order(replicas: t.Sequence[t.Mapping[str, t.Any]], leader: str | None = None,
                  first: t.Sequence[str] = ()) -> list[t.Mapping[str, t.Any]]:
    """The order a change rolls out in: the replicas named in ``first`` (unhealthy ones, which the change may put
    right), then the others, and the etcd ``leader`` last unless it is among ``first`` (the cluster elects a new
    leader once, not at every replica). The order given is kept within each group."""
    early = [r for r in replicas if r["name"] in first]
    late = [r for r in replicas if r["name"] == leader and r["name"] not in first]
    return early + [r for r in replicas if r not in early and r not in late] + late


class FilterModule:
    """Reports of kubeha.gce's rolling changes."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"rolling_report": rolling_report, "restarted_units": restarted_units, "rolling_order": rolling_order}
