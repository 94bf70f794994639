# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: one run at a time per cluster, as labels on its reserved address.

The lock is a set of labels on the regional address ``{cluster}-master-ip``, which exists from the first
step of bootstrap until the cluster is gone and never moves. Compute Engine changes labels only through
``setLabels`` with the ``labelFingerprint`` of the labels it has, and refuses a stale fingerprint (412
conditionNotMet): taking the lock is a compare-and-swap, and two runs that try at once cannot both win.

A lock carries who holds it (user and host, or the AWX job), what for (the playbook), since when and
until when (a lease: a run that dies leaves a lock that expires), and the process of the run on its
controller, so that a run on the same controller sees at once that the holder's process is gone.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
import secrets
import socket
import time
import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._clock import CLOCK, Clock
from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import ComputeApi, Deadline, GceError
from ansible_collections.kubeha.gce.plugins.module_utils._gce.names import (
    InvalidInput,
    address_name,
    has_owner_marker,
    is_master_of,
)

#: The labels of a lock on the address; every label of the address whose key starts with LOCK_LABEL is the lock's.
LOCK_LABEL = "kubeha-lock"
LABELS = {"id": LOCK_LABEL, "holder": "kubeha-lock-by", "purpose": "kubeha-lock-for", "since": "kubeha-lock-since",
          "expires": "kubeha-lock-until", "process": "kubeha-lock-proc"}
RUN_ID = re.compile(r"^[a-z0-9]{6,32}$")
STATES = ("present", "renewed", "absent")
#: Seconds between two reads of the address while another run holds the lock.
POLL_INTERVAL = 5.0


def wall_clock() -> float:
    """Seconds since the epoch: the lock's times are compared across controllers."""
    return time.time()


def label_value(text: str) -> str:
    """``text`` as a label value: lowercase letters, digits, ``_`` and ``-``, at most 63 characters."""
    value = re.sub(r"[^a-z0-9_-]+", "-", (text or "").lower()).strip("-")
    return value[:63]


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), or ``None`` when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; field 22 is the start time.
    return stat.rsplit(")", 1)[-1].split()[19]


def _cmdline(pid: int) -> list[str]:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return [arg.decode("utf-8", "replace") for arg in handle.read().split(b"\0") if arg]
    except OSError:
        return []


def _parent(pid: int) -> int:
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return int(handle.read().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _machine() -> str | None:
    """This kernel's boot and this process's PID namespace: processes are comparable only within both."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as handle:
            boot = handle.read().strip().replace("-", "")[:12]
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    digits = re.sub(r"[^0-9]", "", namespace)
    return "%s-%s" % (boot, digits) if boot and digits else None


def run_process() -> str:
    """``BOOT-PIDNS-PID-START`` of the ansible-playbook (or ansible-runner) process this module runs under;
    empty when it cannot be told (no /proc, or no such process among the ancestors)."""
    machine = _machine()
    if machine is None:
        return ""
    pid, found = os.getppid(), 0
    while pid > 1:
        args = " ".join(os.path.basename(a) for a in _cmdline(pid)[:3])
        if "ansible-playbook" in args or "ansible-runner" in args:
            found = pid  # the outermost one: a worker of ansible-playbook is a fork with the same command line
        pid = _parent(pid)
    start = _proc_start(found) if found else None
    return "%s-%d-%s" % (machine, found, start) if start else ""


def process_gone(process: str) -> bool:
    """Whether the run process ``process`` (see :func:`run_process`) is known to have ended: it ran on this
    machine, in this PID namespace, since this boot, and no process with its PID and start time exists."""
    machine = _machine()
    parts = (process or "").split("-")
    if machine is None or len(parts) != 4 or "-".join(parts[:2]) != machine or not parts[2].isdigit():
        return False
    return _proc_start(int(parts[2])) != parts[3]


@dataclasses.dataclass(frozen=True)
class Holder:
    """A lock as its labels hold it."""

    id: str
    holder: str = ""
    purpose: str = ""
    since: int = 0
    expires: int = 0
    process: str = ""

    @classmethod
    def from_labels(cls, labels: t.Mapping[str, str] | None) -> Holder | None:
        labels = labels or {}
        if not labels.get(LOCK_LABEL):
            return None

        def number(key: str) -> int:
            value = labels.get(LABELS[key], "")
            return int(value) if value.isdigit() else 0

        return cls(id=labels[LOCK_LABEL], holder=labels.get(LABELS["holder"], ""),
                   purpose=labels.get(LABELS["purpose"], ""), since=number("since"), expires=number("expires"),
                   process=labels.get(LABELS["process"], ""))

    def labels(self) -> dict[str, str]:
        values = {"id": self.id, "holder": self.holder, "purpose": self.purpose, "since": str(self.since),
                  "expires": str(self.expires), "process": self.process}
        return {LABELS[key]: label_value(value) for key, value in values.items()}

    def view(self) -> dict[str, t.Any]:
        return {"id": self.id, "holder": self.holder, "purpose": self.purpose, "since": iso(self.since),
                "expires": iso(self.expires)}

    def describe(self, now: float) -> str:
        left = self.expires - now
        expiry = "expires in %d s" % left if left > 0 else "expired %d s ago" % -left
        return "run %s (%s, %s, since %s; %s at %s)" % (self.id, self.holder or "holder unknown",
                                                        self.purpose or "purpose unknown", iso(self.since),
                                                        expiry, iso(self.expires))


def without_lock(labels: t.Mapping[str, str] | None) -> dict[str, str]:
    return {key: value for key, value in (labels or {}).items() if not key.startswith(LOCK_LABEL)}


@dataclasses.dataclass(frozen=True)
class Spec:
    cluster: str
    region: str
    state: str
    run_id: str
    holder: str
    purpose: str
    ttl: int
    timeout: int
    break_lock: str
    wait_timeout: int

    @property
    def address(self) -> str:
        return address_name(self.cluster)


def default_holder() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "uid%d" % os.getuid()
    return "%s at %s" % (user, socket.gethostname())


def spec_from_params(params: t.Mapping[str, t.Any]) -> Spec:
    run_id = params.get("run_id") or ""
    if run_id and not RUN_ID.match(run_id):
        raise InvalidInput("run_id '%s' is not a lock's id: 6 to 32 lowercase letters and digits" % run_id)
    if params["state"] != "present" and not run_id:
        raise InvalidInput("state=%s is about the lock of one run: give its run_id (the lock.id that "
                           "state=present returned)" % params["state"])
    for option in ("ttl", "timeout"):
        if params[option] < 0 or (option == "ttl" and params[option] == 0):
            raise InvalidInput("%s=%d: give a positive number of seconds" % (option, params[option]))
    return Spec(cluster=params["cluster_name"], region=params["region"], state=params["state"],
                run_id=run_id, holder=params.get("holder") or default_holder(), purpose=params.get("purpose") or "",
                ttl=params["ttl"], timeout=params["timeout"], break_lock=params.get("break_lock") or "",
                wait_timeout=params["wait_timeout"])


class ClusterLock:
    """Takes, renews or releases the lock of one run on the cluster's reserved address."""

    def __init__(self, api: ComputeApi, spec: Spec, check_mode: bool = False,
                 warn: t.Callable[[str], None] = lambda msg: None, clock: Clock | None = None) -> None:
        self.api = api
        self.spec = spec
        self.check_mode = check_mode
        self.warn = warn
        self.clock = clock or api.retry.clock or CLOCK

    def _read(self) -> dict[str, t.Any] | None:
        return self.api.get("addresses", region=self.spec.region, address=self.spec.address)

    def _label(self) -> str:
        return "address '%s' (%s)" % (self.spec.address, self.spec.region)

    def _not_lockable(self, address: t.Mapping[str, t.Any] | None) -> str:
        """Why the cluster cannot be locked (no address yet, or not the cluster's); empty when it can."""
        spec = self.spec
        if address is None:
            return ("%s does not exist: cluster '%s' has no reserved address yet, so there is nothing to lock"
                    % (self._label(), spec.cluster))
        if not is_master_of(address, spec.cluster) and not has_owner_marker(address, spec.cluster):
            return ("%s is not the reserved address of cluster '%s' (neither its labels nor its description say "
                    "so); it is not locked" % (self._label(), spec.cluster))
        return ""

    def _set(self, address: t.Mapping[str, t.Any], labels: dict[str, str], what: str) -> bool:
        """setLabels with the fingerprint read; False when another change came first (a stale fingerprint)."""
        body = {"labels": labels, "labelFingerprint": address.get("labelFingerprint")}
        try:
            operation = self.api.call("addresses", "setLabels", region=self.spec.region, resource=self.spec.address,
                                      body=body)
            self.api.wait(operation, self.spec.wait_timeout, "%s on %s" % (what, self._label()))
        except GceError as exc:
            if exc.status == 412 or (exc.reason or "").lower().replace("_", "") == "conditionnotmet":
                return False
            raise
        return True

    # -- taking and renewing ---------------------------------------------------------------------------------
    def acquire(self) -> dict[str, t.Any]:
        spec = self.spec
        run_id = spec.run_id or secrets.token_hex(6)
        deadline = Deadline(spec.timeout, self.clock)
        waited_for: Holder | None = None
        started = self.clock.now()
        while True:
            address = self._read()
            why = self._not_lockable(address)
            if why or address is None:
                return {"changed": False, "locked": False, "reason": why, "lock": None, "previous": None,
                        "waited": round(self.clock.now() - started, 1), "waited_for": None}
            now = int(wall_clock())
            current = Holder.from_labels(address.get("labels"))
            taken_over = ""
            if spec.state == "renewed" and (current is None or current.id != run_id):
                raise GceError(
                    "cluster '%s' is no longer locked by run %s: %s. Its lease ended (it was not renewed within its "
                    "ttl of %d s) or the lock was broken; stopping before another step, as another run may be "
                    "changing the cluster. Run again once no other run is"
                    % (spec.cluster, run_id, "it is locked by %s" % current.describe(now) if current else "it is not "
                       "locked", spec.ttl), status=409, reason="lockLost")
            if current is not None and current.id != run_id:
                if spec.break_lock and current.id == spec.break_lock:
                    taken_over = "broken on request (break_lock)"
                elif current.expires <= now:
                    taken_over = "expired at %s" % iso(current.expires)
                elif process_gone(current.process):
                    taken_over = "its run's process on this controller has ended"
                else:
                    if self.check_mode:
                        self.warn("cluster '%s' is locked by %s; a real run would wait for it"
                                  % (spec.cluster, current.describe(now)))
                        return {"changed": False, "locked": False, "reason": "locked by another run", "lock": None,
                                "previous": current.view(), "waited": 0.0, "waited_for": None}
                    if spec.break_lock and waited_for is None:
                        self.warn("break_lock=%s: no such lock is held; cluster '%s' is locked by %s"
                                  % (spec.break_lock, spec.cluster, current.describe(now)))
                    waited_for = current
                    if deadline.expired():
                        raise GceError(
                            "cluster '%s' is locked by %s: another run is changing it; waited %d s (timeout). Run "
                            "again once it has finished; if that run is dead (killed, or its controller gone), its "
                            "lock expires by itself at %s, or break it now with break_lock=%s (the playbooks: "
                            "-e kubeha_lock_break=%s)"
                            % (spec.cluster, current.describe(now), spec.timeout, iso(current.expires), current.id,
                               current.id), status=409, reason="locked")
                    self.clock.sleep(max(0.0, min(POLL_INTERVAL, deadline.remaining())))
                    continue
            renewal = current is not None and current.id == run_id
            since = current.since if renewal else now
            purpose = spec.purpose or (current.purpose if renewal else "")
            mine = Holder(id=run_id, holder=label_value(spec.holder), purpose=label_value(purpose), since=since,
                          expires=now + spec.ttl, process=run_process())
            result = {"changed": bool(taken_over), "locked": True, "reason": taken_over, "lock": mine.view(),
                      "previous": current.view() if taken_over and current else None,
                      "waited": round(self.clock.now() - started, 1),
                      "waited_for": waited_for.view() if waited_for else None,
                      "diff": {"before": {"lock": current.view() if current else None}, "after": {"lock": mine.view()}}}
            if self.check_mode:
                if taken_over and current is not None:
                    self.warn("a real run would take over the lock of cluster '%s' from %s: %s"
                              % (spec.cluster, current.describe(now), taken_over))
                result.update(locked=False, reason="check mode: the lock is not taken")
                return result
            labels = dict(without_lock(address.get("labels")), **mine.labels())
            if not self._set(address, labels, "taking the lock of cluster %s" % spec.cluster):
                continue
            # Read back: the lock is ours only if our id is what the address carries now.
            fresh = self._read()
            if fresh is not None and (fresh.get("labels") or {}).get(LOCK_LABEL) == run_id:
                if taken_over and current is not None:
                    self.warn("took over the lock of cluster '%s' from %s: %s"
                              % (spec.cluster, current.describe(now), taken_over))
                return result

    # -- releasing -----------------------------------------------------------------------------------------
    def release(self) -> dict[str, t.Any]:
        spec = self.spec
        while True:
            address = self._read()
            current = Holder.from_labels((address or {}).get("labels"))
            base = {"changed": False, "locked": False, "lock": None, "previous": current.view() if current else None,
                    "waited": 0.0, "waited_for": None}
            if address is None or current is None:
                return dict(base, reason="not locked")
            if current.id != spec.run_id:
                self.warn("cluster '%s' is locked by %s, not by this run (%s): that lock is left as it is"
                          % (spec.cluster, current.describe(wall_clock()), spec.run_id))
                return dict(base, reason="held by another run")
            if self.check_mode:
                return dict(base, reason="check mode: the lock is not released")
            if self._set(address, without_lock(address.get("labels")), "releasing the lock of cluster %s" % spec.cluster):
                return dict(base, reason="released")

    def run(self) -> dict[str, t.Any]:
        result = self.release() if self.spec.state == "absent" else self.acquire()
        result.setdefault("diff", {"before": {"lock": result.get("previous")}, "after": {"lock": result.get("lock")}})
        return result


__all__ = ["ClusterLock", "Holder", "Spec", "spec_from_params", "STATES", "LOCK_LABEL", "label_value"]
