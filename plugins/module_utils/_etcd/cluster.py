# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: one read of an etcd cluster with the health of every member."""

from __future__ import annotations

import typing as t
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import EtcdClient, EtcdError
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.members import (
    Member,
    initial_cluster,
    members_from_api,
    quorum,
)

MAX_PROBES = 8


def _int(value: t.Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


class Status(t.NamedTuple):
    """What one member says about itself (``/v3/maintenance/status``)."""

    member_id: int
    leader: int
    version: str
    db_size: int
    db_size_in_use: int
    raft_index: int
    raft_applied_index: int
    raft_term: int
    is_learner: bool
    alarms: list[str]

    @classmethod
    def from_api(cls, answer: dict[str, t.Any]) -> Status:
        header = answer.get("header") or {}
        return cls(_int(header.get("member_id")), _int(answer.get("leader")), str(answer.get("version") or ""),
                   _int(answer.get("dbSize")), _int(answer.get("dbSizeInUse")), _int(answer.get("raftIndex")),
                   _int(answer.get("raftAppliedIndex")), _int(answer.get("raftTerm")), bool(answer.get("isLearner")),
                   [str(e) for e in answer.get("errors") or []])


class Health(t.NamedTuple):
    """Whether a member answered at one of its client URLs, and whether it is healthy."""

    reachable: bool
    healthy: bool
    url: str | None
    status: Status | None
    error: str | None


class ClusterView:
    """The member list read from one endpoint, and the health of every member read from itself."""

    def __init__(self, members: list[Member], health: dict[int | None, Health], owners: dict[str, int],
                 cluster_id: int) -> None:
        self.members = members
        self.health = health
        self.owners = owners  # configured endpoint -> the member that answered there
        self.cluster_id = cluster_id

    # -- membership ----------------------------------------------------------------------
    def member(self, member_id: int | None) -> Member | None:
        for member in self.members:
            if member.id == member_id:
                return member
        return None

    def voters(self) -> list[Member]:
        return [m for m in self.members if not m.is_learner]

    def learners(self) -> list[Member]:
        return [m for m in self.members if m.is_learner]

    def healthy(self, member: Member) -> bool:
        health = self.health.get(member.id)
        return bool(health and health.healthy)

    def healthy_voters(self, without: int | None = None) -> list[Member]:
        return [m for m in self.voters() if m.id != without and self.healthy(m)]

    @property
    def quorum(self) -> int:
        return quorum(len(self.voters()))

    @property
    def has_quorum(self) -> bool:
        return len(self.healthy_voters()) >= self.quorum

    def unhealthy(self, without: int | None = None) -> list[Member]:
        return [m for m in self.members if m.id != without and not self.healthy(m)]

    def problem(self, member: Member) -> str:
        health = self.health.get(member.id)
        return (health.error if health else None) or "not checked"

    # -- leadership ----------------------------------------------------------------------
    @property
    def leader(self) -> int | None:
        """The leader that the reachable member with the newest raft term reports."""
        statuses = [h.status for h in self.health.values() if h.status is not None and h.status.leader]
        if not statuses:
            return None
        return max(statuses, key=lambda s: s.raft_term).leader

    def leader_dict(self) -> dict[str, t.Any] | None:
        leader = self.leader
        if leader is None:
            return None
        member = self.member(leader)
        return {"id": "%x" % leader, "id_decimal": str(leader), "name": member.name if member else None}

    # -- where to send a call ------------------------------------------------------------
    def urls(self, avoid: int | None = None) -> list[str]:
        """Client URLs to send cluster calls to: the configured endpoints first, then the
        healthy members' own; never one of the member ``avoid`` (the member being changed)."""
        found: list[str] = []
        for url, owner in self.owners.items():
            if owner != avoid:
                found.append(url)
        for member in self.members:
            health = self.health.get(member.id)
            if member.id != avoid and health and health.healthy and health.url:
                found.append(health.url)
                found.extend(member.client_urls)
        return list(dict.fromkeys(found))

    # -- results -------------------------------------------------------------------------
    def member_info(self, member: Member) -> dict[str, t.Any]:
        health = self.health.get(member.id) or Health(False, False, None, None, "not checked")
        status = health.status
        info = member.to_dict()
        info.update({
            "healthy": health.healthy,
            "reachable": health.reachable,
            "endpoint": health.url,
            "error": health.error,
            "is_leader": member.id == self.leader,
            "version": status.version if status else None,
            "db_size": status.db_size if status else None,
            "db_size_in_use": status.db_size_in_use if status else None,
            "raft_index": status.raft_index if status else None,
            "raft_applied_index": status.raft_applied_index if status else None,
            "raft_term": status.raft_term if status else None,
            "alarms": list(status.alarms) if status else [],
        })
        return info

    def info(self) -> dict[str, t.Any]:
        return {
            "cluster_id": "%x" % self.cluster_id if self.cluster_id else None,
            "members": [self.member_info(m) for m in self.members],
            "leader": self.leader_dict(),
            "learners": [m.to_dict() for m in self.learners()],
            "voters": len(self.voters()),
            "healthy_voters": len(self.healthy_voters()),
            "quorum": self.quorum,
            "has_quorum": self.has_quorum,
            "healthy": not self.unhealthy(),
            "initial_cluster": initial_cluster(self.members),
        }


def _probe(client: EtcdClient, member: Member, known: dict[str, dict[str, t.Any]]) -> Health:
    """Read the member's status at the first of its URLs that answers, and judge its health."""
    urls = [u for u, answer in known.items() if _int((answer.get("header") or {}).get("member_id")) == member.id]
    urls = list(dict.fromkeys(urls + member.client_urls))
    if not urls:
        return Health(False, False, None, None, "it has no client URL yet: etcd has not started on it "
                      "or has not reached the cluster")
    failures = []
    for url in urls:
        refused = None if url in known else client.connect_error(url)
        if refused:
            failures.append("cannot reach etcd at %s: %s" % (url, refused))
            continue
        try:
            status = Status.from_api(known[url] if url in known else client.status(url))
        except EtcdError as exc:
            failures.append(str(exc))
            continue
        if status.member_id != member.id:
            failures.append("%s answers as member %x, not %x" % (url, status.member_id, member.id or 0))
            continue
        problems = []
        if not status.leader:
            problems.append("it has no leader")
        if status.alarms:
            problems.append("alarms raised: %s" % ", ".join(status.alarms))
        if not member.is_learner and not problems:
            try:
                client.linearizable_read(url)
            except EtcdError as exc:
                problems.append("a quorum read through it failed: %s" % exc)
        return Health(True, not problems, url, status, "; ".join(problems) or None)
    return Health(False, False, None, None, "; ".join(failures))


def read_cluster(client: EtcdClient) -> ClusterView:
    """The member list (from the first configured endpoint that answers) and every member's health."""
    known: dict[str, dict[str, t.Any]] = {}
    for url in client.connection.endpoints:
        try:
            known[url] = client.status(url)
        except EtcdError:
            continue
    answered = [u for u in client.connection.endpoints if u in known]
    others = [u for u in client.connection.endpoints if u not in known]
    answer = client.member_list(answered + others)[1]
    members = members_from_api(answer)
    cluster_id = _int((answer.get("header") or {}).get("cluster_id"))
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PROBES, len(members)))) as pool:
        results = list(pool.map(lambda m: _probe(client, m, known), members))
    health: dict[int | None, Health] = {m.id: h for m, h in zip(members, results)}
    owners = {u: _int((known[u].get("header") or {}).get("member_id")) for u in answered}
    return ClusterView(members, health, owners, cluster_id)
