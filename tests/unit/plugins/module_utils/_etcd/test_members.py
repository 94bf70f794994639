# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import EtcdError
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.cluster import Status
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

# What etcd 3.4's gateway answers to /v3/cluster/member/list with a learner that has not started:
# decimal string IDs, no name and no client URLs for the learner, isLearner only when true.
LISTED = {
    "header": {"cluster_id": "18066855362758263204", "member_id": "10470198324921494313", "raft_term": "2"},
    "members": [
        {"ID": "2664567742965172190", "name": "c", "peerURLs": ["https://10.0.0.3:2380"],
         "clientURLs": ["https://10.0.0.3:2379"]},
        {"ID": "10470198324921494313", "name": "a", "peerURLs": ["https://10.0.0.1:2380/"],
         "clientURLs": ["https://10.0.0.1:2379"]},
        {"ID": "17870286554510349986", "peerURLs": ["https://10.0.0.4:2380"], "isLearner": True},
    ],
}
MEMBERS = members_from_api(LISTED)


def test_members_are_read_from_the_gateway_json():
    c, a, learner = MEMBERS
    assert c == Member(2664567742965172190, "c", ["https://10.0.0.3:2380"], ["https://10.0.0.3:2379"], False)
    assert a.peer_urls == ["https://10.0.0.1:2380"]  # trailing slash dropped
    assert learner.is_learner and learner.name == "" and learner.client_urls == [] and not learner.started
    assert c.hex_id == "24fa723ea76747de" and c.to_dict()["id_decimal"] == "2664567742965172190"
    assert learner.label() == "unstarted member with peer URLs https://10.0.0.4:2380 (f80002f0c40756a2)"


def test_a_member_without_an_id_is_an_error():
    with pytest.raises(EtcdError, match="without a valid ID"):
        Member.from_api({"name": "x"})


@pytest.mark.parametrize("text, expected", [
    ("24fa723ea76747de", {0x24FA723EA76747DE}),
    ("0x24FA723EA76747DE", {0x24FA723EA76747DE}),
    # Decimal digits are valid hex too, but as hex this one is beyond 64 bits.
    ("2664567742965172190", {2664567742965172190}),
    ("10", {10, 16}),
])
def test_member_ids_are_read_as_hex_and_decimal(text, expected):
    assert id_candidates(text) == expected


@pytest.mark.parametrize("text", ["", "xyz", "0x", "-12", "0"])
def test_malformed_member_ids_are_refused(text):
    with pytest.raises(EtcdError, match="neither a hex"):
        id_candidates(text)


def test_ids_find_exactly_one_member():
    assert find_by_id(MEMBERS, "24fa723ea76747de").name == "c"
    assert find_by_id(MEMBERS, "2664567742965172190").name == "c"
    assert find_by_id(MEMBERS, "1234") is None
    # "10" is 10 as decimal and 16 as hex: ambiguous only when both exist.
    twins = [Member(10, "ten", [], [], False), Member(16, "sixteen", [], [], False)]
    with pytest.raises(EtcdError, match="read as hex and as decimal"):
        find_by_id(twins, "10")
    assert find_by_id(twins, "0x10").name == "sixteen"


def test_names_and_peer_urls_match_exactly_never_as_patterns():
    assert find_by_name(MEMBERS, "a").id == 10470198324921494313
    assert find_by_name(MEMBERS, "") is None  # an unstarted member's empty name matches nothing
    assert find_by_name(MEMBERS, "a*") is None
    assert find_by_peer_urls(MEMBERS, ["https://10.0.0.4:2380"]).is_learner
    assert find_by_peer_urls(MEMBERS, ["https://10.0.0.4:238"]) is None
    with pytest.raises(EtcdError, match="belong to several members"):
        find_by_peer_urls(MEMBERS, ["https://10.0.0.1:2380", "https://10.0.0.3:2380"])
    with pytest.raises(EtcdError, match="2 members are named"):
        find_by_name(MEMBERS + [MEMBERS[0]._replace(id=1)], "c")


def test_initial_cluster_names_the_joining_member():
    learner = MEMBERS[2]
    assert initial_cluster(MEMBERS, {learner.id: "d"}) == (
        "c=https://10.0.0.3:2380,a=https://10.0.0.1:2380,d=https://10.0.0.4:2380")
    assert initial_cluster(MEMBERS).endswith("f80002f0c40756a2=https://10.0.0.4:2380")
    two_urls = Member(5, "e", ["https://10.0.0.5:2380", "https://[fd00::5]:2380"], [], False)
    assert initial_cluster([two_urls]) == "e=https://10.0.0.5:2380,e=https://[fd00::5]:2380"


@pytest.mark.parametrize("voters, needed", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_quorum(voters, needed):
    assert quorum(voters) == needed


def test_status_is_read_from_the_gateway_json():
    status = Status.from_api({
        "header": {"cluster_id": "1", "member_id": "10470198324921494313", "revision": "1", "raft_term": "2"},
        "version": "3.4.23", "dbSize": "20480", "leader": "2664567742965172190", "raftIndex": "8", "raftTerm": "2",
        "raftAppliedIndex": "7", "dbSizeInUse": "16384", "errors": ["NOSPACE"],
    })
    assert status.member_id == 10470198324921494313 and status.leader == 2664567742965172190
    assert (status.raft_index, status.raft_applied_index, status.raft_term) == (8, 7, 2)
    assert status.db_size == 20480 and status.alarms == ["NOSPACE"] and not status.is_learner
