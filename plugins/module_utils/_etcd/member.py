# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: one etcd member, added as a learner, promoted, updated or removed.

Every change is guarded: it is refused while any other member is unhealthy or
the cluster has no quorum, and the refusal names the members and what is wrong.
"""

from __future__ import annotations

import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import (
    LEARNER_NOT_READY,
    NOT_LEARNER,
    EtcdClient,
    EtcdError,
    check_url,
)
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.cluster import ClusterView, Status, read_cluster
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.members import (
    Member,
    find_by_id,
    find_by_name,
    find_by_peer_urls,
    id_candidates,
    initial_cluster,
    members_from_api,
    quorum,
)


class Request(t.NamedTuple):
    """What the task asks for, checked before any call."""

    state: str
    name: str | None
    peer_urls: list[str]
    member_id: str | None
    learner: bool
    force: bool
    promote_timeout: float


def request_from_params(params: dict[str, t.Any]) -> Request:
    peer_urls = [check_url(u, "peer URL") for u in params.get("peer_urls") or []]
    if len(set(peer_urls)) != len(peer_urls):
        raise EtcdError("peer_urls lists a URL twice: %s" % ", ".join(peer_urls))
    member_id = params.get("member_id")
    if member_id is not None:
        id_candidates(member_id)  # fails early on a malformed ID
    name = params.get("name") or None
    if not (member_id or name or peer_urls):
        raise EtcdError("name the member by member_id, name or peer_urls")
    if params["promote_timeout"] < 0:
        raise EtcdError("promote_timeout must not be negative")
    return Request(params["state"], name, peer_urls, member_id, bool(params["learner"]), bool(params["force"]),
                   float(params["promote_timeout"]))


def _urls(urls: t.Sequence[str]) -> str:
    return ", ".join(urls) or "none"


class EtcdMember:
    """The member named by a :class:`Request`, brought to its state by the smallest change."""

    def __init__(self, client: EtcdClient, request: Request, check_mode: bool = False,
                 warn: t.Callable[[str], None] | None = None) -> None:
        self.client = client
        self.request = request
        self.check_mode = check_mode
        self.warn = warn or (lambda message: None)
        self.actions: list[str] = []
        self.new_leader: int | None = None

    # -- finding the member -----------------------------------------------------------------
    def _matches(self, members: t.Sequence[Member]) -> dict[str, Member | None]:
        req = self.request
        found: dict[str, Member | None] = {}
        if req.member_id:
            found["member_id %s" % req.member_id] = find_by_id(members, req.member_id)
        if req.peer_urls:
            found["peer URLs %s" % _urls(req.peer_urls)] = find_by_peer_urls(members, req.peer_urls)
        if req.name:
            found["name %s" % req.name] = find_by_name(members, req.name)
        return found

    def find_present(self, members: t.Sequence[Member]) -> Member | None:
        """The member this task is about, by ID, else peer URL, else name; the others must not disagree.

        A name or ID that matches while the peer URLs match nothing is a member
        whose peer URLs are to be updated.
        """
        found = self._matches(members)
        hits = {what: m for what, m in found.items() if m is not None}
        ids = {m.id for m in hits.values()}
        if len(ids) > 1:
            raise EtcdError("the task names different members: %s"
                            % "; ".join("%s is %s" % (what, m.label()) for what, m in hits.items()))
        if self.request.member_id and found["member_id %s" % self.request.member_id] is None:
            raise EtcdError("there is no member with ID %s (members: %s); a new member is added by its "
                            "peer_urls, and gets its ID from etcd"
                            % (self.request.member_id, ", ".join(m.label() for m in members)))
        return next(iter(hits.values()), None)

    def find_absent(self, members: t.Sequence[Member]) -> Member | None:
        """The member to remove: every identifier given must name the same member, exactly."""
        found = self._matches(members)
        hits = {what: m for what, m in found.items() if m is not None}
        if not hits:
            return None
        if len({m.id for m in hits.values()}) > 1 or len(hits) != len(found):
            raise EtcdError("the task does not name one member, so nothing is removed: %s"
                            % "; ".join("%s is %s" % (what, m.label() if m else "no member")
                                        for what, m in found.items()))
        return next(iter(hits.values()))

    # -- guards ---------------------------------------------------------------------------
    @staticmethod
    def _health_problem(view: ClusterView, target: Member | None = None) -> str | None:
        """Why no change can be made now: another member than ``target`` is unhealthy, or quorum is lost."""
        if not view.has_quorum:
            return ("the cluster has no quorum (%d of %d voting members healthy, %d needed), so etcd could not "
                    "commit it; unhealthy: %s"
                    % (len(view.healthy_voters()), len(view.voters()), view.quorum,
                       "; ".join("%s: %s" % (m.label(), view.problem(m)) for m in view.unhealthy())))
        others = view.unhealthy(without=target.id if target else None)
        if not others:
            return None
        return ("%s unhealthy: %s. Bring %s back, or remove a dead member first (state=absent with force=true "
                "removes exactly that member)"
                % ("a member is" if len(others) == 1 else "%d members are" % len(others),
                   "; ".join("%s: %s" % (m.label(), view.problem(m)) for m in others),
                   "it" if len(others) == 1 else "them"))

    def _refuse_unhealthy(self, view: ClusterView, what: str, target: Member | None = None) -> None:
        """Refuse ``what`` while any member other than ``target`` is unhealthy or quorum is lost."""
        problem = self._health_problem(view, target)
        if problem:
            raise EtcdError("refusing to %s: %s" % (what, problem))

    def _refuse_dead_target(self, view: ClusterView, what: str, target: Member) -> None:
        """A voting member that is itself unhealthy is changed only with ``force``."""
        if target.is_learner or view.healthy(target) or self.request.force:
            return
        raise EtcdError(
            "refusing to %s: %s is itself unhealthy (%s). If it is dead and will not come back as it was, "
            "re-run with force=true; force applies to that member only" % (what, target.label(), view.problem(target)))

    # -- state=present --------------------------------------------------------------------
    def present(self) -> dict[str, t.Any]:
        req = self.request
        view = read_cluster(self.client)
        before = view.members
        target = self.find_present(before)
        if target is None:
            target = self._add(view)
        else:
            if req.name and target.name and target.name != req.name:
                raise EtcdError("%s matches %s, whose name is %r, not %r; a member's name is set by etcd on that "
                                "member and cannot be changed here"
                                % ("peer URLs %s" % _urls(req.peer_urls) if req.peer_urls else "member_id %s" % req.member_id,
                                   target.label(), target.name, req.name))
            if req.peer_urls and sorted(target.peer_urls) != sorted(req.peer_urls):
                target = self._update(view, target)
            if target.is_learner and not req.learner:
                target = self._promote(view, target)
        after = self._members_after(view, before, target)
        target = next((m for m in after if m.id == target.id and target.id is not None), target)
        return self._result(view, before, after, target)

    def _add(self, view: ClusterView) -> Member:
        req = self.request
        if not req.peer_urls:
            raise EtcdError("there is no member named %s; a new member is added by its peer_urls" % req.name)
        if not req.learner:
            raise EtcdError("no member has the peer URLs %s. A new member joins as a learner first: add it with "
                            "learner=true, start etcd on it with the returned initial_cluster and "
                            "initial-cluster-state=existing, then promote it with learner=false" % _urls(req.peer_urls))
        if not req.name:
            raise EtcdError("name is required to add a member: its etcd must start with that --name, and "
                            "initial_cluster is built with it")
        problems = []
        pending = view.learners()
        if pending:
            problems.append("learner %s is still pending: promote it (state=present, learner=false) or remove "
                            "it first" % " and ".join(m.label() for m in pending))
        health = self._health_problem(view)
        if health and not (pending and not view.unhealthy(without=pending[0].id) and view.has_quorum):
            problems.append(health)
        if problems:
            raise EtcdError("refusing to add %s %s: %s" % ("a second learner" if pending else "learner", req.name,
                                                           "; and ".join(problems)))
        self.actions.append("add learner %s with peer URLs %s" % (req.name, _urls(req.peer_urls)))
        if self.check_mode:
            return Member(None, "", list(req.peer_urls), [], True)
        answer = self.client.member_add(view.urls(), list(req.peer_urls), True)
        return Member.from_api(answer.get("member") or {})

    def _update(self, view: ClusterView, target: Member) -> Member:
        req = self.request
        what = "change the peer URLs of %s" % target.label()
        self._refuse_unhealthy(view, what, target)
        self._refuse_dead_target(view, what, target)
        self.actions.append("update peer URLs of %s from %s to %s"
                            % (target.label(), _urls(target.peer_urls), _urls(req.peer_urls)))
        if not self.check_mode:
            self.client.member_update(view.urls(avoid=target.id), target.id, list(req.peer_urls))
        return target._replace(peer_urls=list(req.peer_urls))

    def _promote(self, view: ClusterView, target: Member) -> Member:
        self._refuse_unhealthy(view, "promote %s" % target.label(), target)
        self.actions.append("promote learner %s" % target.label())
        if self.check_mode:
            return target._replace(is_learner=False)
        clock = self.client.clock
        end = clock.now() + self.request.promote_timeout
        while True:
            try:
                self.client.member_promote(view.urls(avoid=target.id), target.id)
                return target._replace(is_learner=False)
            except EtcdError as exc:
                if LEARNER_NOT_READY not in exc.message:
                    if NOT_LEARNER in exc.message and self._is_voter_now(view, target):
                        return target._replace(is_learner=False)
                    raise
                refusal = exc
            if clock.now() + 1.0 > end:
                raise EtcdError(self._not_in_sync(view, target, refusal), code=refusal.code, status=refusal.status,
                                url=refusal.url)
            clock.sleep(1.0)

    def _is_voter_now(self, view: ClusterView, target: Member) -> bool:
        members = members_from_api(self.client.member_list(view.urls())[1])
        return any(m.id == target.id and not m.is_learner for m in members)

    def _not_in_sync(self, view: ClusterView, target: Member, refusal: EtcdError) -> str:
        """Why the learner cannot be promoted, with how far behind the leader it is."""
        leader = view.member(view.leader)
        leader_index = None
        if leader is not None and view.health.get(leader.id) and view.health[leader.id].url:
            try:
                leader_index = Status.from_api(self.client.status(view.health[leader.id].url)).raft_index
            except EtcdError:
                leader_index = None
        learner_index = None
        learner_error = "it has no client URL: etcd on it has not started or cannot reach the cluster"
        fresh = members_from_api(self.client.member_list(view.urls())[1])
        current = next((m for m in fresh if m.id == target.id), target)
        for url in current.client_urls:
            try:
                learner_index = Status.from_api(self.client.status(url)).raft_applied_index
                break
            except EtcdError as exc:
                learner_error = "it does not answer: %s" % exc
        leader_text = ("the leader %s is at raft index %d" % (leader.label(), leader_index)
                       if leader is not None and leader_index is not None else "the leader's raft index is unknown")
        if learner_index is not None and leader_index is not None:
            progress = "its raft applied index is %d and %s, %d entries behind" % (
                learner_index, leader_text, max(0, leader_index - learner_index))
        elif learner_index is not None:
            progress = "its raft applied index is %d and %s" % (learner_index, leader_text)
        else:
            progress = "%s, and %s" % (learner_error, leader_text)
        return ("learner %s did not catch up with the leader within %.0f seconds, so etcd refuses to promote it "
                "(%s): %s" % (current.label(), self.request.promote_timeout, refusal.message.split(" (HTTP")[0],
                              progress))

    # -- state=absent ---------------------------------------------------------------------
    def absent(self) -> dict[str, t.Any]:
        view = read_cluster(self.client)
        before = view.members
        target = self.find_absent(before)
        if target is None:
            return self._result(view, before, before, None)
        what = "remove %s" % target.label()
        if len(before) == 1:
            raise EtcdError("refusing to remove %s: it is the last member of the cluster" % target.label())
        if not target.is_learner:
            voters = len(view.voters())
            left = view.healthy_voters(without=target.id)
            if len(left) < quorum(voters - 1):
                raise EtcdError(
                    "refusing to %s: it would leave %d healthy voting member%s (%s) of %d, fewer than the quorum of %d"
                    % (what, len(left), "" if len(left) == 1 else "s", ", ".join(m.label() for m in left) or "none",
                       voters - 1, quorum(voters - 1)))
        self._refuse_unhealthy(view, what, target)
        self._refuse_dead_target(view, what, target)
        survivors = view.urls(avoid=target.id)
        if view.leader == target.id:
            if not view.healthy(target):
                raise EtcdError("refusing to %s: the other members still see it as their leader although it is "
                                "unhealthy (%s); etcd has not elected another leader yet: re-run in a few seconds"
                                % (what, view.problem(target)))
            survivors = self._move_leadership(view, target)
        if self.check_mode:
            self.actions.append("remove %s" % target.label())
            after = [m for m in before if m.id != target.id]
            return self._result(view, before, after, None)
        # Read the members again right before the change and remove exactly that member.
        current = self.find_absent(members_from_api(self.client.member_list(survivors)[1]))
        if current is None or current.id != target.id:
            raise EtcdError("the cluster changed while this task ran: %s is now %s; nothing was removed"
                            % (target.label(), current.label() if current else "gone"))
        self.actions.append("remove %s" % target.label())
        self.client.member_remove(survivors, target.id)
        after = members_from_api(self.client.member_list(survivors)[1])
        return self._result(view, before, after, None)

    def _move_leadership(self, view: ClusterView, target: Member) -> list[str]:
        """Hand leadership from ``target`` to the most advanced healthy voter; the URLs of the survivors."""
        candidates = view.healthy_voters(without=target.id)
        if not candidates:
            raise EtcdError("refusing to remove the leader %s: no other healthy voting member can take over"
                            % target.label())
        heir = max(candidates, key=lambda m: (view.health[m.id].status.raft_applied_index, -(m.id or 0)))
        self.actions.append("move leadership from %s to %s" % (target.label(), heir.label()))
        if self.check_mode:
            self.new_leader = heir.id
            return view.urls(avoid=target.id)
        self.client.move_leader(view.health[target.id].url, heir.id)
        clock = self.client.clock
        end = clock.now() + self.client.connection.timeout
        heir_url = view.health[heir.id].url
        while True:
            try:
                status = Status.from_api(self.client.status(heir_url))
                if status.leader and status.leader != target.id:
                    self.new_leader = status.leader
                    return [heir_url] + [u for u in view.urls(avoid=target.id) if u != heir_url]
            except EtcdError:
                pass
            if clock.now() + 0.2 > end:
                raise EtcdError("leadership did not move from %s to %s within %.0f seconds; nothing was removed"
                                % (target.label(), heir.label(), self.client.connection.timeout))
            clock.sleep(0.2)

    # -- results --------------------------------------------------------------------------
    def _members_after(self, view: ClusterView, before: list[Member], target: Member) -> list[Member]:
        if not self.actions:
            return before
        if self.check_mode:
            if target.id is None:
                return before + [target]
            return [target if m.id == target.id else m for m in before]
        return members_from_api(self.client.member_list(view.urls())[1])

    def _result(self, view: ClusterView, before: list[Member], after: list[Member],
                target: Member | None) -> dict[str, t.Any]:
        names: dict[int | None, str] = {}
        if target is not None and not target.name and self.request.name:
            names[target.id] = self.request.name
        leader = self.new_leader or view.leader
        leader_member = next((m for m in after if m.id == leader), None)
        return {
            "changed": bool(self.actions),
            "actions": list(self.actions),
            "member": target.to_dict() if target is not None else {},
            "members": [m.to_dict() for m in after],
            "leader": None if leader is None else {
                "id": "%x" % leader, "id_decimal": str(leader), "name": leader_member.name if leader_member else None},
            "initial_cluster": initial_cluster(after, names),
            "diff": {"before": {"members": [m.to_dict() for m in before]},
                     "after": {"members": [m.to_dict() for m in after]}},
        }
