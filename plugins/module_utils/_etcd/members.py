# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: etcd members, their IDs, and the initial-cluster string."""

from __future__ import annotations

import re
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import EtcdError

MAX_ID = 2 ** 64 - 1
HEX_DIGITS = re.compile(r"^[0-9a-f]+$")
DECIMAL_DIGITS = re.compile(r"^[0-9]+$")


class Member(t.NamedTuple):
    """One member as etcd lists it. ``id`` is ``None`` only for a member predicted in check mode."""

    id: int | None
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool

    @classmethod
    def from_api(cls, item: dict[str, t.Any]) -> Member:
        """From the gateway's JSON: IDs are decimal strings; empty names and false flags are left out."""
        try:
            member_id = int(item["ID"])
        except (KeyError, TypeError, ValueError):
            raise EtcdError("etcd listed a member without a valid ID: %r" % (item,)) from None
        return cls(member_id, item.get("name") or "", [u.rstrip("/") for u in item.get("peerURLs") or []],
                   [u.rstrip("/") for u in item.get("clientURLs") or []], bool(item.get("isLearner")))

    @property
    def hex_id(self) -> str | None:
        """The ID as etcdctl prints it (lower-case hex, no padding)."""
        return None if self.id is None else "%x" % self.id

    @property
    def started(self) -> bool:
        """Whether etcd on the member has run and published its name and client URLs."""
        return bool(self.name)

    def label(self) -> str:
        """How messages name the member: ``name (id)``, or its peer URLs while it has no name."""
        who = self.name or "unstarted member with peer URLs %s" % ", ".join(self.peer_urls)
        return "%s (%s)" % (who, self.hex_id or "ID not yet assigned")

    def to_dict(self) -> dict[str, t.Any]:
        return {
            "id": self.hex_id,
            "id_decimal": None if self.id is None else str(self.id),
            "name": self.name,
            "peer_urls": list(self.peer_urls),
            "client_urls": list(self.client_urls),
            "is_learner": self.is_learner,
        }


def members_from_api(answer: dict[str, t.Any]) -> list[Member]:
    return [Member.from_api(item) for item in answer.get("members") or []]


def id_candidates(text: str) -> set[int]:
    """Every member ID that ``text`` can mean: etcdctl's hex, the gateway's decimal, or ``0x`` hex.

    A string of decimal digits is also valid hex; both readings are kept, and the
    member list decides (see :func:`find_by_id`).
    """
    value = text.strip().lower()
    found: set[int] = set()
    if value.startswith("0x"):
        digits = value[2:]
        if HEX_DIGITS.match(digits):
            found.add(int(digits, 16))
    else:
        if HEX_DIGITS.match(value):
            found.add(int(value, 16))
        if DECIMAL_DIGITS.match(value):
            found.add(int(value, 10))
    found = {i for i in found if 0 < i <= MAX_ID}
    if not found:
        raise EtcdError("member_id %r is neither a hex (as etcdctl prints it) nor a decimal etcd member ID" % text)
    return found


def find_by_id(members: t.Sequence[Member], text: str) -> Member | None:
    candidates = id_candidates(text)
    matches = [m for m in members if m.id in candidates]
    if len(matches) > 1:
        raise EtcdError("member_id %r matches %s read as hex and as decimal; write it as 0x%s or use the "
                        "other member's ID" % (text, " and ".join(m.label() for m in matches), text))
    return matches[0] if matches else None


def find_by_name(members: t.Sequence[Member], name: str) -> Member | None:
    matches = [m for m in members if m.name and m.name == name]
    if len(matches) > 1:
        raise EtcdError("%d members are named %r (%s); name the one to use by member_id"
                        % (len(matches), name, ", ".join(m.label() for m in matches)))
    return matches[0] if matches else None


def find_by_peer_urls(members: t.Sequence[Member], peer_urls: t.Sequence[str]) -> Member | None:
    """The member that has any of ``peer_urls`` (compared exactly); EtcdError if they belong to several."""
    wanted = set(peer_urls)
    matches = [m for m in members if wanted.intersection(m.peer_urls)]
    if len(matches) > 1:
        raise EtcdError("the peer URLs %s belong to several members: %s"
                        % (", ".join(peer_urls), ", ".join(m.label() for m in matches)))
    return matches[0] if matches else None


def initial_cluster(members: t.Sequence[Member], names: dict[int | None, str] | None = None) -> str:
    """The ``--initial-cluster`` value for a member joining ``members``: ``name=peerURL,...``.

    ``names`` gives names for members that have not started yet (etcd lists them
    without a name); any other unnamed member is shown by its hex ID.
    """
    names = names or {}
    parts = []
    for member in members:
        name = member.name or names.get(member.id) or member.hex_id or ""
        parts.extend("%s=%s" % (name, url) for url in member.peer_urls)
    return ",".join(parts)


def quorum(voters: int) -> int:
    """Votes needed for a majority of ``voters`` voting members."""
    return voters // 2 + 1
