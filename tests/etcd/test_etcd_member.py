# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeha.gce.etcd_member and etcd_member_info against real etcd 3.4 clusters with peer and client TLS."""

from __future__ import annotations

import signal
import ssl
import threading
import time
import typing as t
import urllib.error

import pytest

from conftest import REPORT, connection, run_module
from etcd_cluster import Cluster, post, tls_context


def ok(result: dict[str, t.Any]) -> dict[str, t.Any]:
    assert not result.get("failed"), result.get("msg")
    return result


def refused(result: dict[str, t.Any], *phrases: str) -> str:
    assert result.get("failed"), "expected a refusal, got %r" % (result,)
    for phrase in phrases:
        assert phrase in result["msg"], "%r not in %r" % (phrase, result["msg"])
    return result["msg"]


def member(cluster: Cluster, name: str, **args: t.Any) -> dict[str, t.Any]:
    """Arguments of an etcd_member task for member ``name``, through the running members."""
    return dict(connection(cluster), name=name, **args)


def listed(cluster: Cluster, via: str) -> dict[str, tuple[str, bool]]:
    """name (or peer URL while unnamed) -> (peer URL, is learner), as etcd lists them."""
    return {m.get("name") or m["peerURLs"][0]: (m["peerURLs"][0], bool(m.get("isLearner")))
            for m in cluster.member_list(via)}


def test_info_reports_members_health_leader_and_quorum(three):
    result = ok(run_module("etcd_member_info", connection(three, "a")))
    assert result["changed"] is False
    assert sorted(m["name"] for m in result["members"]) == ["a", "b", "c"]
    assert all(m["healthy"] and m["reachable"] and not m["is_learner"] for m in result["members"])
    assert result["voters"] == 3 and result["healthy_voters"] == 3 and result["quorum"] == 2
    assert result["has_quorum"] is True and result["healthy"] is True and result["learners"] == []
    assert result["leader"]["name"] == three.leader_name("a")
    assert [m["name"] for m in result["members"] if m["is_leader"]] == [result["leader"]["name"]]
    for item in result["members"]:
        assert item["version"] == "3.4.23"
        assert item["raft_index"] >= item["raft_applied_index"] > 0 and item["db_size"] > 0
        assert int(item["id"], 16) == int(item["id_decimal"])
        assert item["endpoint"] == three.members[item["name"]].client_url
    assert result["initial_cluster"].count("=") == 3
    # An unreachable first endpoint is skipped; check mode reads the same.
    dead_first = dict(connection(three, "b"), endpoints=["https://127.0.0.1:1", three.members["b"].client_url])
    again = ok(run_module("etcd_member_info", dead_first, check_mode=True))
    assert again["changed"] is False and again["healthy"] is True and again["cluster_id"] == result["cluster_id"]


def test_clients_without_a_certificate_of_the_cluster_ca_are_refused(three):
    url = three.members["a"].client_url
    status = "/v3/maintenance/status"
    assert post(url, status, {}, tls_context(three.pki))["version"] == "3.4.23"
    for cert in (None, "other"):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            post(url, status, {}, tls_context(three.pki, cert))
    for cert in ("none", "other"):
        result = run_module("etcd_member_info", connection(three, "a", cert=cert))
        refused(result, "no etcd endpoint answered", "cannot reach etcd at %s" % url)
        REPORT.append("client cert %-5s -> refused: %s" % (cert, result["msg"]))
    # The members' own CA is what the module checks the servers against.
    result = run_module("etcd_member_info", dict(connection(three, "a"), ca_cert=three.pki.other_ca))
    refused(result, "CERTIFICATE_VERIFY_FAILED")


def test_learner_is_added_started_with_initial_cluster_and_promoted(three):
    new = three.member("d")
    add = member(three, "d", peer_urls=[new.peer_url], learner=True)

    planned = ok(run_module("etcd_member", add, check_mode=True))
    assert planned["changed"] is True and planned["actions"] == ["add learner d with peer URLs %s" % new.peer_url]
    assert planned["member"]["id"] is None and planned["member"]["is_learner"] is True
    assert "d=%s" % new.peer_url in planned["initial_cluster"]
    assert len(planned["diff"]["after"]["members"]) == 4 and len(planned["diff"]["before"]["members"]) == 3
    assert len(three.member_list("a")) == 3, "check mode added a member"

    added = ok(run_module("etcd_member", add))
    assert added["changed"] is True and added["member"]["is_learner"] is True
    assert int(added["member"]["id"], 16) == int(added["member"]["id_decimal"])
    assert listed(three, "a")[new.peer_url] == (new.peer_url, True)
    assert ok(run_module("etcd_member", add))["changed"] is False

    # One learner at a time.
    other = three.member("e")
    second = run_module("etcd_member", member(three, "e", peer_urls=[other.peer_url], learner=True))
    refused(second, "refusing to add a second learner", "still pending")

    # It never catches up while etcd on it does not run: the error says so, with the leader's index.
    early = run_module("etcd_member", member(three, "d", peer_urls=[new.peer_url], promote_timeout=2))
    msg = refused(early, "did not catch up with the leader within 2 seconds",
                  "can only promote a learner member which is in sync with leader", "has no client URL",
                  "raft index")
    REPORT.append("promote before the learner runs -> %s" % msg)

    three.start("d", added["initial_cluster"], "existing")
    three.wait_ready("d")
    assert listed(three, "a")["d"] == (new.peer_url, True)

    promote = member(three, "d", peer_urls=[new.peer_url])
    planned = ok(run_module("etcd_member", promote, check_mode=True))
    assert planned["changed"] is True and planned["member"]["is_learner"] is False
    assert listed(three, "a")["d"][1] is True, "check mode promoted the learner"

    started = time.monotonic()
    promoted = ok(run_module("etcd_member", promote))
    REPORT.append("learner promoted in %.1fs" % (time.monotonic() - started))
    assert promoted["changed"] is True and promoted["actions"] == ["promote learner d (%s)" % added["member"]["id"]]
    assert promoted["member"]["is_learner"] is False and promoted["member"]["name"] == "d"
    assert listed(three, "a")["d"] == (new.peer_url, False)
    assert ok(run_module("etcd_member", promote))["changed"] is False
    assert ok(run_module("etcd_member", add))["changed"] is False  # already a voter: still nothing to do

    info = ok(run_module("etcd_member_info", connection(three)))
    assert info["voters"] == 4 and info["healthy_voters"] == 4 and info["learners"] == [] and info["quorum"] == 3


def test_members_are_removed_down_to_the_last_which_stays(three):
    # A learner whose etcd never started is taken out again by ID and peer URL, without force.
    stray = three.member("d")
    added = ok(run_module("etcd_member", member(three, "d", peer_urls=[stray.peer_url], learner=True)))
    rescue = dict(connection(three), member_id=added["member"]["id"], peer_urls=[stray.peer_url], state="absent")
    assert ok(run_module("etcd_member", rescue))["actions"] == ["remove unstarted member with peer URLs %s (%s)"
                                                                % (stray.peer_url, added["member"]["id"])]
    assert sorted(listed(three, "a")) == ["a", "b", "c"]

    ids = {m["name"]: int(m["ID"]) for m in three.member_list("a")}
    by_hex = dict(connection(three), member_id="%x" % ids["c"], state="absent")

    planned = ok(run_module("etcd_member", by_hex, check_mode=True))
    assert planned["changed"] is True and planned["actions"][-1] == "remove c (%x)" % ids["c"]
    assert sorted(m["name"] for m in planned["members"]) == ["a", "b"]
    assert sorted(listed(three, "a")) == ["a", "b", "c"], "check mode removed a member"

    removed = ok(run_module("etcd_member", by_hex))
    assert removed["changed"] is True and sorted(m["name"] for m in removed["members"]) == ["a", "b"]
    assert sorted(listed(three, "a")) == ["a", "b"]
    three.members["c"].process.wait(timeout=30)  # a removed member stops by itself
    assert ok(run_module("etcd_member", dict(connection(three), member_id=str(ids["c"]), state="absent")))["changed"] is False

    # By peer URL, through whichever member is left.
    by_url = dict(connection(three), peer_urls=[three.members["b"].peer_url], state="absent")
    assert ok(run_module("etcd_member", by_url))["changed"] is True
    assert sorted(listed(three, "a")) == ["a"]

    for force in (False, True):
        last = run_module("etcd_member", member(three, "a", state="absent", force=force))
        refused(last, "it is the last member of the cluster")
    assert sorted(listed(three, "a")) == ["a"]

    # An identifier that names another member than the others is never guessed at.
    mixed = run_module("etcd_member", dict(connection(three), name="a", member_id="%x" % ids["b"], state="absent"))
    refused(mixed, "does not name one member")


def test_a_dead_member_blocks_every_change_until_force_removes_exactly_it(three):
    # A fourth member, a learner that runs, so that there is something to promote.
    new = three.member("d")
    added = ok(run_module("etcd_member", member(three, "d", peer_urls=[new.peer_url], learner=True)))
    three.start("d", added["initial_cluster"], "existing")
    three.wait_ready("d")
    before = {m["name"]: m["ID"] for m in three.member_list("a")}

    three.kill("c")
    three.wait_new_leader("c", via="a")
    info = ok(run_module("etcd_member_info", connection(three)))
    health = {m["name"]: m["healthy"] for m in info["members"]}
    assert health == {"a": True, "b": True, "c": False, "d": True}
    assert info["has_quorum"] is True and info["healthy"] is False and info["healthy_voters"] == 2

    guards = {
        "promote the learner": (member(three, "d", peer_urls=[new.peer_url]), ("refusing to promote", "c (")),
        "add another learner": (member(three, "e", peer_urls=[three.member("e").peer_url], learner=True),
                                ("refusing to add", "unhealthy")),
        "remove a healthy learner": (member(three, "d", state="absent"), ("refusing to remove d", "unhealthy: c (")),
        "remove a healthy voter": (member(three, "a", state="absent"),
                                   ("would leave 1 healthy voting member (b", "fewer than the quorum of 2")),
        "remove a healthy voter with force": (member(three, "a", state="absent", force=True),
                                              ("fewer than the quorum of 2",)),
        "remove the dead member": (member(three, "c", state="absent"), ("is itself unhealthy", "force=true")),
        "move the dead member": (member(three, "c", peer_urls=["https://127.0.0.1:9"]),
                                 ("is itself unhealthy", "force=true")),
    }
    for what, (args, phrases) in guards.items():
        msg = refused(run_module("etcd_member", args), *phrases)
        REPORT.append("dead member c, %s -> refused: %s" % (what, msg[:150]))
    assert {m["name"]: m["ID"] for m in three.member_list("a")} == before, "a refused change changed the cluster"

    force = member(three, "c", state="absent", force=True)
    planned = ok(run_module("etcd_member", force, check_mode=True))
    assert planned["changed"] is True and sorted(m["name"] for m in planned["members"]) == ["a", "b", "d"]
    assert len(three.member_list("a")) == 4, "check mode removed a member"
    removed = ok(run_module("etcd_member", force))
    assert removed["actions"] == ["remove c (%x)" % int(before["c"])]
    assert {m["name"]: m["ID"] for m in three.member_list("a")} == {n: before[n] for n in ("a", "b", "d")}
    assert ok(run_module("etcd_member", force))["changed"] is False

    # Healthy again: the learner can be promoted now.
    assert ok(run_module("etcd_member", member(three, "d", peer_urls=[new.peer_url])))["changed"] is True
    info = ok(run_module("etcd_member_info", connection(three)))
    assert info["healthy"] is True and info["voters"] == 3


def test_a_member_back_on_a_new_peer_url_keeps_its_identity(three):
    ids = {m["name"]: m["ID"] for m in three.member_list("a")}
    three.kill("c", signal.SIGTERM)
    three.wait_new_leader("c", via="a")
    moved = three.restart_with_new_peer_port("c")
    update = member(three, "c", peer_urls=[moved.peer_url])
    refused(run_module("etcd_member", update), "is itself unhealthy", "force=true")

    update["force"] = True
    planned = ok(run_module("etcd_member", update, check_mode=True))
    assert planned["changed"] is True and planned["member"]["peer_urls"] == [moved.peer_url]
    assert listed(three, "a")["c"][0] != moved.peer_url, "check mode changed the peer URL"
    updated = ok(run_module("etcd_member", update))
    assert updated["actions"][0].startswith("update peer URLs of c (%x) from " % int(ids["c"]))
    assert listed(three, "a")["c"] == (moved.peer_url, False)
    assert ok(run_module("etcd_member", update))["changed"] is False

    # Its data directory is still there: etcd rejoins as the same member on the new peer URL.
    three.start("c", ",".join("%s=%s" % (n, three.members[n].peer_url) for n in ("a", "b", "c")), "existing")
    three.wait_ready("c")
    info = ok(run_module("etcd_member_info", connection(three)))
    assert info["healthy"] is True
    assert {m["name"]: m["id_decimal"] for m in info["members"]} == ids


class Writer(threading.Thread):
    """Writes a key every 10 ms through the v3 gateway's kv/put on one member.

    Every write is recorded as (started, ended, error or None), so that a write that hangs
    until its timeout counts in the longest time without a successful write.
    """

    def __init__(self, cluster: Cluster, name: str, timeout: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.name = name
        self.url = cluster.members[name].client_url
        self.context = cluster.context()
        self.timeout = timeout
        self.stop = threading.Event()
        self.writes: list[tuple[float, float, str | None]] = []
        self.started = self.stopped = 0.0

    def run(self) -> None:
        self.started = time.monotonic()
        while not self.stop.is_set():
            begun = time.monotonic()
            try:
                post(self.url, "/v3/kv/put", {"key": "d3JpdGVy", "value": "dmFsdWU="}, self.context, timeout=self.timeout)
                error = None
            except (OSError, urllib.error.URLError, ValueError) as exc:
                error = str(exc)[:80]
            self.writes.append((begun, time.monotonic(), error))
            time.sleep(0.01)
        self.stopped = time.monotonic()

    @property
    def ok(self) -> list[float]:
        return [ended for begun, ended, error in self.writes if error is None]

    @property
    def failed(self) -> list[tuple[float, str]]:
        return [(begun, error) for begun, ended, error in self.writes if error]

    def longest_gap(self) -> float:
        """The longest time in the whole run without a successful write."""
        marks = [self.started] + self.ok + [self.stopped]
        return max(b - a for a, b in zip(marks, marks[1:]))


def under_writes(cluster: Cluster, names: list[str], action: t.Callable[[], t.Any]) -> tuple[t.Any, str, float]:
    """Run ``action`` while one writer per member of ``names`` writes; its result, a summary, the longest gap."""
    writers = [Writer(cluster, name) for name in names]
    for writer in writers:
        writer.start()
    try:
        time.sleep(1.0)
        started = time.monotonic()
        result = action()
        took = time.monotonic() - started
        time.sleep(1.0)
    finally:
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.join(timeout=10)
    failures = [(begun - started, w.name, error) for w in writers for begun, error in w.failed]
    gap = max(w.longest_gap() for w in writers)
    summary = ("took %.2fs; writers (kv/put every 10 ms to %s for %.1fs): %d writes ok, %d failed, longest time "
               "without a successful write %.3fs%s"
               % (took, " and ".join(names), max(w.stopped - w.started for w in writers),
                  sum(len(w.ok) for w in writers), len(failures), gap,
                  "".join("; a write to %s started %+.3fs after the call began failed: %s" % (n, at, e)
                          for at, n, e in failures)))
    return result, summary, gap


def test_leader_is_removed_after_leadership_moved_while_writes_continue(three):
    three.settle()  # so that the time measured is the module's, not etcd's start-up hold-off
    leader = three.leader_name("a")
    others = [n for n in ("a", "b", "c") if n != leader]
    leader_id = int(next(m["ID"] for m in three.member_list(others[0]) if m["name"] == leader))
    remove = dict(connection(three, *others), name=leader, state="absent")

    result, summary, gap = under_writes(three, others, lambda: ok(run_module("etcd_member", remove)))
    assert result["actions"][0].startswith("move leadership from %s (%x) to " % (leader, leader_id))
    assert result["actions"][1] == "remove %s (%x)" % (leader, leader_id)
    assert result["leader"]["name"] in others and sorted(m["name"] for m in result["members"]) == others
    assert three.leader_name(others[0]) == result["leader"]["name"]
    REPORT.append("etcd_member removed the leader %s after moving leadership to %s: %s"
                  % (leader, result["leader"]["name"], summary))
    assert gap < 3.0 + 2.0  # at most one write hangs until its client timeout, plus 2 s for a loaded host
    assert ok(run_module("etcd_member", remove))["changed"] is False
