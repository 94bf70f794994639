# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: a CA rotated with a trust overlap, one replica at a time.

A CA is in one of four states on a replica, by what its files hold (``cert`` the bundle others trust, ``key`` the
signing key, ``next_key`` the new CA's key while it is only trusted):

0. the old CA alone (``cert`` = old, ``key`` = old): nothing rotated yet, or nothing to rotate;
1. trust: ``cert`` = old + new, ``key`` = old, ``next_key`` = new. Every certificate is still signed by the old CA,
   and what verifies accepts the new one too;
2. sign: ``cert`` = new + old, ``key`` = new. Certificates are issued again by the new CA, and the old ones are still
   accepted;
3. retired: ``cert`` = new, ``key`` = new.

A rotation moves every replica to 1, then every replica to 2, then every replica to 3, each as far as the run's phase
asks, so that at any moment every certificate in use is signed by a CA every replica trusts. A stopped rotation is taken up where the
replicas are: the cluster's two CA certificates tell the old one (issued first) from the new one.
"""

from __future__ import annotations

import datetime
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._pki.material import (
    PkiError,
    cert_pem,
    describe,
    issued_on,
    key_pem,
    load_certs,
    load_key,
    new_authority,
    _same_public_key,
)
from ansible_collections.kubeha.gce.plugins.module_utils._pki.replica import AUTHORITIES

#: The passes of a rotation, in order, by the state they move replicas to.
PASSES = ("trust", "sign", "retire")
#: How far a run takes a CA: a pass, or all three in one run (a CA without clients outside the masters: etcd).
PHASES = PASSES + ("all",)
#: The CAs that clients outside the masters trust: who they are.
OUTSIDE_CLIENTS = {
    "cluster": "the nodes' kubelets, the kubeconfigs and the pods' service-account ca.crt",
    "front_proxy": "aggregated API servers (through kube-system/extension-apiserver-authentication)",
}
STATE_NAMES = ("old CA alone", "trusts both, the old CA signs", "trusts both, the new CA signs", "new CA alone")


class CaView(t.NamedTuple):
    """One CA as one replica holds it."""

    certs: list[t.Any]
    key: t.Any
    next_key: t.Any


def _fingerprint(cert: t.Any) -> bytes:
    return cert.tbs_certificate_bytes


def _view(replica: str, name: str, material: t.Mapping[str, t.Any] | None) -> CaView:
    material = material or {}
    if not material.get("cert") or not material.get("key"):
        raise PkiError("%s holds no whole %s CA (certificate and key)" % (replica, name))
    what = "%s's %s CA" % (replica, name)
    next_key = load_key(material["next_key"], what + " next key") if material.get("next_key") else None
    return CaView(load_certs(material["cert"], what), load_key(material["key"], what + " key"), next_key)


def _state(replica: str, name: str, view: CaView, old: t.Any, new: t.Any | None) -> int:
    ids = [_fingerprint(c) for c in view.certs]
    signs_old = _same_public_key(view.key, old)
    if new is None:
        if ids == [_fingerprint(old)] and signs_old:
            return 0
    else:
        signs_new = _same_public_key(view.key, new)
        if ids == [_fingerprint(old)] and signs_old:
            return 0
        if sorted(ids) == sorted([_fingerprint(old), _fingerprint(new)]) and (signs_old or signs_new):
            return 1 if signs_old else 2
        if ids == [_fingerprint(new)] and signs_new:
            return 3
    raise PkiError("%s's %s CA is in no state of a rotation (its files hold %d certificate(s), its key matches %s): "
                   "restore them from another replica or a backup" % (
                       replica, name, len(ids), "the old CA" if signs_old else "no CA the cluster knows"))


def _old_and_new(name: str, seen: list[t.Any], views: list[CaView]) -> tuple[t.Any, t.Any | None]:
    """The cluster's old and new certificate of a CA: the new one is the one a replica keeps the next key of (the
    first pass), or else the one issued last, or else (issued in the same second) the one every replica signs with."""
    if len(seen) == 1:
        return seen[0], None
    for view in views:
        for cert in seen:
            if view.next_key is not None and _same_public_key(view.next_key, cert):
                return next(c for c in seen if c is not cert), cert
    first, last = sorted(seen, key=lambda c: c.not_valid_before_utc)
    if first.not_valid_before_utc != last.not_valid_before_utc:
        return first, last
    signing = {id(c): c for view in views for c in seen if _same_public_key(view.key, c)}
    if len(signing) == 1:
        new = next(iter(signing.values()))
        return next(c for c in seen if c is not new), new
    raise PkiError("the replicas hold two %s CA certificates issued at the same time; which one is new cannot be told"
                   % name)


def material_for(state: int, old: t.Any, new: t.Any, old_key_pem: str, new_key_pem: str) -> dict[str, str]:
    """The files of a CA in ``state`` (1 to 3): the signing certificate first in the bundle."""
    old_pem, new_pem = cert_pem(old), cert_pem(new)
    if state == 1:
        return {"cert": old_pem + new_pem, "key": old_key_pem, "next_key": new_key_pem}
    if state == 2:
        return {"cert": new_pem + old_pem, "key": new_key_pem}
    return {"cert": new_pem, "key": new_key_pem}


def plan(replicas: t.Mapping[str, t.Mapping[str, t.Any]], rotate: t.Iterable[str], phase: str,
         issued_before: datetime.datetime, key_type: str, days: int, rsa_size: int,
         check_mode: bool) -> dict[str, t.Any]:
    """What a rotation of the CAs ``rotate`` up to ``phase`` (one of PHASES) does to the replicas (name -> CA material
    as read, ``next_key`` where a replica has one): per CA, the old and new certificates and each replica's state;
    and the passes, each the CA material every replica gets in it (None for a replica the pass leaves alone), each
    pass starting from what the passes before it wrote. A replica is never moved back: a CA that a replica has taken
    further than ``phase`` is taken there on every replica.

    A new CA is made only by the phases trust and all, and only when the CA's certificate was issued before
    ``issued_before``, so that the same run asked again changes nothing; the phases sign and retire take up a
    rotation under way, and find nothing to do otherwise (a CA never rotated and one whose rotation is done look
    alike). A CA that clients outside the masters trust (OUTSIDE_CLIENTS) moves one pass per run, and not with
    all: those clients must be given the new CA before it signs, and their certificates issued again before the old
    one goes."""
    if not replicas:
        raise PkiError("replicas must name at least one replica with its CA material")
    rotate = list(rotate)
    unknown = [n for n in rotate if n not in AUTHORITIES]
    if unknown:
        raise PkiError("authorities names %s; the CAs are %s" % (", ".join(unknown), ", ".join(AUTHORITIES)))
    if phase not in PHASES:
        raise PkiError("phase must be one of %s, not %s" % (", ".join(PHASES), phase))
    wanted = min(PHASES.index(phase) + 1, len(PASSES))
    outside = sorted(set(rotate) & set(OUTSIDE_CLIENTS))
    if phase == "all" and outside:
        raise PkiError("ca_phase=all takes a CA through trust, sign and retire in one run, which only the etcd CA may: "
                       "%s moves one phase per run, as %s must be given the new one in between" % (
                           ", ".join(outside), " and ".join(OUTSIDE_CLIENTS[n] for n in outside)))
    names = sorted(replicas)
    authorities: dict[str, dict[str, t.Any]] = {}
    targets: dict[str, dict[str, t.Any]] = {}
    for ca in AUTHORITIES:
        views = {r: _view(r, ca, (replicas[r] or {}).get(ca)) for r in names}
        seen: dict[bytes, t.Any] = {}
        for view in views.values():
            for cert in view.certs:
                seen.setdefault(_fingerprint(cert), cert)
        if len(seen) > 2:
            raise PkiError("the replicas hold %d different %s CA certificates between them, where a rotation has two "
                           "at most: restore the CA files from one replica or a backup" % (len(seen), ca))
        old, new = _old_and_new(ca, list(seen.values()), list(views.values()))
        new_key_pem = None
        if new is not None:
            for view in views.values():
                for key in (view.key, view.next_key):
                    if key is not None and _same_public_key(key, new):
                        new_key_pem = key_pem(key)
            if new_key_pem is None:
                raise PkiError("no replica holds the key of the new %s CA (%s); restore the CA files from a backup"
                               % (ca, describe(new)["serial"]))
        created = False
        if ca in rotate and new is None and issued_on(old) < issued_before and phase in ("trust", "all"):
            created = True
            if not check_mode:
                made = new_authority(ca, AUTHORITIES[ca], key_type, days, rsa_size)
                new, new_key_pem = made.cert, made.key_pem
        states = {r: _state(r, ca, views[r], old, new if not created else None) for r in names}
        if max(states.values()) - min(states.values()) > 1:
            apart = _by_state({r: STATE_NAMES[v] for r, v in states.items()})
            raise PkiError("the replicas' %s CA files are more than one pass apart (%s), which no rotation leaves: "
                           "restore them from one replica or a backup" % (ca, apart))
        old_key_pem = next((key_pem(v.key) for v in views.values() if _same_public_key(v.key, old)), None)
        if ca in rotate and (new is not None or created):
            goal = max(wanted, *states.values())
            if ca in OUTSIDE_CLIENTS and goal - min(states.values()) > 1:
                raise PkiError("the %s CA moves one phase per run, as %s must follow it: its replicas are at %s; run "
                               "-e ca_phase=%s first" % (ca, OUTSIDE_CLIENTS[ca], _by_state(
                                   {r: STATE_NAMES[v] for r, v in states.items()}), PASSES[min(states.values())]))
        else:
            goal = None
        authorities[ca] = {
            "old": describe(old), "new": describe(new) if new is not None else None, "created": created,
            "states": {r: STATE_NAMES[s] for r, s in states.items()}, "levels": dict(states),
            "goal": STATE_NAMES[goal] if goal is not None else None,
            "rotating": new is not None and not created and goal is None and set(states.values()) != {0},
        }
        targets[ca] = {"states": states, "goal": goal, "old": old, "new": new, "old_key": old_key_pem,
                       "new_key": new_key_pem}
    passes = []
    current = {r: {k: dict(v) for k, v in (replicas[r] or {}).items()} for r in names}
    for number, pass_name in enumerate(PASSES, start=1):
        moving = {ca: info for ca, info in targets.items()
                  if info["goal"] is not None and info["goal"] >= number
                  and any(s < number for s in info["states"].values())}
        if not moving:
            continue
        material: dict[str, t.Any] = {}
        for replica in names:
            changes = {ca for ca, info in moving.items() if info["states"][replica] < number}
            if not changes:
                material[replica] = None
                continue
            if check_mode and any(targets[ca]["new"] is None for ca in changes):
                material[replica] = {}
                continue
            # From what the passes before wrote, so that a CA this pass does not move stays where they took it.
            whole = {k: dict(v) for k, v in current[replica].items()}
            for ca in changes:
                info = targets[ca]
                whole[ca] = material_for(number, info["old"], info["new"], info["old_key"], info["new_key"])
            material[replica] = whole
            current[replica] = whole
        passes.append({"name": pass_name, "authorities": sorted(moving), "material": material})
    return {"authorities": authorities, "passes": passes, "plan": plan_lines(authorities, passes, rotate, phase),
            "summary": summary_lines(authorities, rotate),
            "changed": bool(passes) or any(a["created"] for a in authorities.values())}


def _ca_text(side: t.Mapping[str, t.Any] | None) -> str:
    if not side:
        return "a new CA"
    return "serial %s, until %s" % (side["serial"], side["not_after"])


def _by_state(states: t.Mapping[str, str]) -> str:
    groups: dict[str, list[str]] = {}
    for replica, state in sorted(states.items()):
        groups.setdefault(state, []).append(replica)
    return "; ".join("%s: %s" % (", ".join(replicas), state) for state, replicas in groups.items())


def plan_lines(authorities: t.Mapping[str, t.Mapping[str, t.Any]], passes: t.Sequence[t.Mapping[str, t.Any]],
               rotate: t.Sequence[str], phase: str) -> list[str]:
    """One line per CA: where each replica stands, and what this run does to it."""
    lines = []
    for name, info in authorities.items():
        moving = [p["name"] for p in passes if name in p["authorities"]]
        if name not in rotate:
            does = ("in the middle of a rotation, left as it is: name it in authorities to take the rotation up"
                    if info["rotating"] else "left as it is")
        elif moving:
            does = "%s%s, to: %s" % ("a new CA is made; " if info["created"] else "", " then ".join(moving), info["goal"])
        elif info["new"] is not None:
            does = "nothing to do, every replica is at: %s" % info["goal"]
        elif phase in ("trust", "all"):
            does = "issued at or after the time the rotation began: nothing to do"
        else:
            does = "no rotation under way, nothing to do (a rotation starts with ca_phase=trust)"
        lines.append("%s CA (%s): %s. This run: %s" % (name, _ca_text(info["old"]), _by_state(info["states"]), does))
    return lines


def summary_lines(authorities: t.Mapping[str, t.Mapping[str, t.Any]], rotate: t.Sequence[str]) -> list[str]:
    """One line per CA rotated: what every replica trusts once the run is done, and what is left to do."""
    lines = []
    for name in rotate:
        info = authorities[name]
        if info["goal"] is None:
            continue
        old, new = _ca_text(info["old"]), _ca_text(info["new"])
        outside = " once %s trust the new one too" % OUTSIDE_CLIENTS[name] if name in OUTSIDE_CLIENTS else ""
        if info["goal"] == STATE_NAMES[1]:
            lines.append("%s CA: every replica trusts the old CA (%s) and the new one (%s); the old one still signs. Next,%s: "
                         "-e authorities=%s -e ca_phase=sign" % (name, old, new, outside, name))
        elif info["goal"] == STATE_NAMES[2]:
            lines.append("%s CA: every replica trusts the old CA (%s) and the new one (%s), and the new one signs. Next, once "
                         "nothing outside the masters uses a certificate of the old one: -e authorities=%s -e ca_phase=retire"
                         % (name, old, new, name))
        else:
            lines.append("%s CA: every replica trusts the new CA alone (%s); the old one (%s) is retired." % (name, new, old))
    return lines
