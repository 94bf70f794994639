# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The machine backend: real machines, disks and network behind the simulator's instances.

Instances become booted machines of the host layer, disks become loop-backed
files and overlay boot disks, and the network view (addresses, firewall rules,
forwarding rules with the members that pass their health check) becomes the
lab's nftables ruleset. Health checks are probed for real, from GCE's
health-check source range, as GCE probes them.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import typing as t

from kubeha_lab.host import HEALTH_CHECK_IPS, Host, HostError
from kubeha_lab.sim import catalog
from kubeha_lab.sim.backend import Backend
from kubeha_lab.sim.errors import ApiError
from kubeha_lab.sim.state import short

# Probe settings of a forwarding rule whose pool has no health check: GCE then treats every
# running member as healthy.
NO_CHECK: dict[str, t.Any] = {}


# The TLS settings of an HTTPS health check: GCE's health checkers do not verify certificates. One context for every
# probe; one of its own per probe would load the system's CA store each time.
_PROBE_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_PROBE_TLS.check_hostname = False
_PROBE_TLS.verify_mode = ssl.CERT_NONE


def key(resource: t.Mapping[str, t.Any]) -> str:
    """The host layer's name for a zonal resource: ``ZONE.NAME``."""
    return "%s.%s" % (short(resource.get("zone")), resource["name"])


def probe(check: t.Mapping[str, t.Any], address: str, source: str) -> bool:
    """One health probe of ``address`` as ``check`` describes it, sent from ``source``."""
    timeout = float(check.get("timeoutSec", 5))
    if "port" in check and "type" not in check:  # legacy HTTP health check (target pools)
        kind, details = "HTTP", {"port": check.get("port", 80), "requestPath": check.get("requestPath", "/")}
    else:
        kind = check.get("type", "TCP")
        details = check.get({"TCP": "tcpHealthCheck", "HTTP": "httpHealthCheck", "HTTPS": "httpsHealthCheck",
                             "SSL": "sslHealthCheck", "HTTP2": "http2HealthCheck"}.get(kind, ""), {})
    port = int(details.get("port", 443 if kind in ("HTTPS", "SSL", "HTTP2") else 80))
    try:
        if kind in ("TCP", "SSL"):
            with socket.create_connection((address, port), timeout=timeout, source_address=(source, 0)):
                return True
        connection: http.client.HTTPConnection
        if kind in ("HTTPS", "HTTP2"):
            connection = http.client.HTTPSConnection(address, port, timeout=timeout, source_address=(source, 0),
                                                     context=_PROBE_TLS)
        else:
            connection = http.client.HTTPConnection(address, port, timeout=timeout, source_address=(source, 0))
        try:
            connection.request("GET", details.get("requestPath", "/"), headers={"User-Agent": "GoogleHC/1.0"})
            return connection.getresponse().status == 200
        finally:
            connection.close()
    except (OSError, http.client.HTTPException):
        return False


class MachineBackend(Backend):
    def __init__(self, host: Host | None = None, health_source: str = HEALTH_CHECK_IPS[0]) -> None:
        super().__init__()
        self.host = host or Host()
        self.health_source = health_source
        self.view: t.Callable[[], dict[str, t.Any]] = lambda: {}
        self.lock = threading.Lock()
        self.network_lock = threading.RLock()
        # (check link, instance link) -> {"healthy": bool, "streak": int, "next": float}
        self.health: dict[tuple[str, str], dict[str, t.Any]] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._check_health, name="health-checks", daemon=True)

    def start(self, view: t.Callable[[], dict[str, t.Any]]) -> None:
        self.view = view
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    # -- disks -------------------------------------------------------------------------------------
    def disk_created(self, disk: t.Mapping[str, t.Any]) -> None:
        try:
            if disk.get("sourceImage"):
                self.host.create_boot_disk(key(disk))
            else:
                self.host.create_disk(key(disk), int(disk.get("sizeGb") or 10))
        except HostError as exc:
            raise ApiError(500, "backendError", "The lab could not create disk %s: %s" % (disk["name"], exc)) from None

    def disk_deleted(self, disk: t.Mapping[str, t.Any]) -> None:
        if self.host.disk_path(key(disk)) is not None:
            self.host.delete_disk(key(disk))

    def _disk_paths(self, disks: t.Mapping[str, t.Mapping[str, t.Any]]) -> tuple[t.Any, dict[str, t.Any]]:
        boot = None
        data = {}
        for device, disk in disks.items():
            path = self.host.disk_path(key(disk))
            if path is None:
                raise ApiError(500, "backendError", "The lab has no disk %s" % disk["name"])
            if disk.get("boot"):
                boot = path
            else:
                data[device] = path
        return boot, data

    def disk_attached(self, instance: t.Mapping[str, t.Any], device: str, disk: t.Mapping[str, t.Any]) -> None:
        if self.host.machine_status(key(instance)) in ("running", "starting"):
            path = self.host.disk_path(key(disk))
            if path is not None:
                self.host.attach_disk(key(instance), device, path)

    def disk_detached(self, instance: t.Mapping[str, t.Any], device: str) -> None:
        if self.host.machine_status(key(instance)) in ("running", "starting"):
            self.host.detach_disk(key(instance), device)

    # -- machines ----------------------------------------------------------------------------------
    def instance_started(self, instance: t.Mapping[str, t.Any], disks: t.Mapping[str, t.Mapping[str, t.Any]]) -> None:
        super().instance_started(instance, disks)
        name = key(instance)
        if self.host.machine_status(name) in ("running", "starting"):
            return
        zone = short(instance.get("zone"))
        region = catalog.region_of_zone(zone) or ""
        boot, data = self._disk_paths(disks)
        nic = (instance.get("networkInterfaces") or [{}])[0]
        try:
            self.host.start_machine(name, instance["name"], nic["networkIP"], catalog.gateway(region), boot, data)
        except HostError as exc:
            raise ApiError(500, "backendError", "The machine of instance %s did not boot: %s" % (instance["name"], exc)) from None

    def instance_stopped(self, instance: t.Mapping[str, t.Any]) -> None:
        super().instance_stopped(instance)
        if self.host.machine_status(key(instance)) not in ("absent", "stopped"):
            self.host.stop_machine(key(instance))

    def instance_deleted(self, instance: t.Mapping[str, t.Any]) -> None:
        if self.host.machine_status(key(instance)) != "absent":
            self.host.delete_machine(key(instance))

    def crash(self, instance: t.Mapping[str, t.Any]) -> None:
        super().crash(instance)
        if self.host.machine_status(key(instance)) in ("running", "starting"):
            self.host.crash_machine(key(instance))

    def set_cut(self, instance: t.Mapping[str, t.Any], cut: bool) -> None:
        super().set_cut(instance, cut)
        (self.host.cut if cut else self.host.restore)(key(instance))

    def reconcile(self, instances: list[tuple[dict[str, t.Any], dict[str, dict[str, t.Any]]]]) -> None:
        """After a restart of the lab: boot the machines of RUNNING instances that have none."""
        for instance, disks in instances:
            if instance.get("status") == "RUNNING" and self.host.machine_status(key(instance)) not in ("running", "starting"):
                threading.Thread(target=self._boot_quietly, args=(instance, disks), daemon=True).start()

    def _boot_quietly(self, instance: dict[str, t.Any], disks: dict[str, dict[str, t.Any]]) -> None:
        try:
            self.instance_started(instance, disks)
        except ApiError:
            pass  # the instance stays without a machine, as a crashed one would

    # -- network and health --------------------------------------------------------------------------
    def network_changed(self, network: dict[str, t.Any]) -> None:
        # One render and apply at a time, so that none applies a health older than the one before it.
        with self.network_lock:
            super().network_changed(network)
            self.host.apply_network(self._desired(network))

    def _desired(self, network: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        instances = []
        for item in network.get("instances") or []:
            instances.append({"name": "%s.%s" % (item["zone"], item["name"]), "internal_ip": item["internal_ip"],
                              "nat_ip": item.get("nat_ip"), "tags": item.get("tags") or [],
                              "service_accounts": item.get("service_accounts") or [],
                              "network": item.get("network") or "default",
                              "running": item.get("status") in ("STAGING", "RUNNING")})
        rules = []
        for rule in network.get("forwarding_rules") or []:
            ports = list(rule.get("ports") or [])
            if not ports and rule.get("port_range") and rule["port_range"] != "1-65535":
                ports = [rule["port_range"]]
            members = rule.get("members") or []
            backends = [m["internal_ip"] for m in members if self._healthy(rule.get("check") or {}, m)]
            if not backends:
                # GCE: "When all backend VMs are unhealthy, the load balancer distributes new connections
                # among all backends as a last resort" (target pools without a failover ratio alike).
                backends = [m["internal_ip"] for m in members]
            rules.append({"name": rule["name"], "ip": rule["ip"], "protocol": rule.get("protocol") or "TCP",
                          "ports": ports, "backends": backends})
        return {"instances": instances, "firewalls": network.get("firewalls") or [], "forwarding_rules": rules}

    def _healthy(self, check: t.Mapping[str, t.Any], member: t.Mapping[str, t.Any], field: str = "healthy") -> bool:
        """With a health check, what its probes found (as on GCE, a crash shows only once probes fail);
        without one, every member whose machine runs. ``field`` "reported" is what the API says: it follows
        "healthy" once the forwarding rules have been changed for it."""
        link = member["selfLink"]
        if not check:
            return link not in self.dead and link not in self.cut
        with self.lock:
            state = self.health.get((check.get("selfLink", ""), link))
        return bool(state and state[field])

    def healthy(self, instance: t.Mapping[str, t.Any], check: t.Mapping[str, t.Any]) -> bool:
        return instance.get("status") == "RUNNING" and self._healthy(check, instance, "reported")

    def _check_health(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                network = self.view()
            except Exception:  # pylint: disable=broad-exception-caught
                continue
            now = time.monotonic()
            seen = set()
            for rule in network.get("forwarding_rules") or []:
                check = rule.get("check") or {}
                if not check:
                    continue
                for member in rule.get("members") or []:
                    pair = (check["selfLink"], member["selfLink"])
                    seen.add(pair)
                    with self.lock:
                        state = self.health.setdefault(pair, {"healthy": False, "reported": False, "streak": 0,
                                                              "next": now})
                        if state["next"] > now:
                            continue
                        state["next"] = now + float(check.get("checkIntervalSec", 5))
                    passed = probe(check, member["internal_ip"], self.health_source)
                    with self.network_lock:
                        with self.lock:
                            if passed == state["healthy"]:
                                state["streak"] = 0
                                continue
                            state["streak"] += 1
                            needed = int(check.get("healthyThreshold" if passed else "unhealthyThreshold", 2))
                            flipped = state["streak"] >= needed
                            if flipped:
                                state.update(healthy=passed, streak=0)
                        if flipped:
                            # At once, not after the other members' probes: a dead member's probe takes its
                            # timeout. From the last view the simulator gave (never from a fresh one here: that
                            # would wait for the simulator's lock while holding this one). The API reports the
                            # new state only once the forwarding rules follow it, so a client that was told a
                            # member is UNHEALTHY sends it no more connections.
                            try:
                                self.network_changed(self.network)
                            except Exception:  # pylint: disable=broad-exception-caught
                                # Not applied: take the flip back, so that the next probes flip it again.
                                with self.lock:
                                    state.update(healthy=not passed, streak=0)
                                continue
                            with self.lock:
                                state["reported"] = passed
            with self.lock:
                for pair in [p for p in self.health if p not in seen]:
                    self.health.pop(pair)
