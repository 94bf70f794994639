# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real machines of the host layer: boot, SSH through metadata keys, disks, firewall, NAT, load balancing, faults.

Needs root; run with ``pytest -m machines tests/test_host_machines.py`` from tests/lab.
The tests run in file order and share two machines (m1, m2).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest_host import LAB_DIR, REGION_GATEWAY, SSH_USER, LabForTests, leftovers, wait_for
from conftest_host import host_config, lab  # noqa: F401  pylint: disable=unused-import
from kubeha_lab.host import HostError, machines, netns

pytestmark = pytest.mark.machines

M1, M2 = "10.132.0.2", "10.132.0.3"
NAT1, NAT2 = "203.0.113.2", "203.0.113.3"
LB_IP = "203.0.113.100"
STARTUP = "#!/bin/sh\necho hello from the startup script\ntouch /run/startup-marker\n"
ALLOW_SSH = {"name": "allow-ssh", "network": "global/networks/default", "direction": "INGRESS", "priority": 1000,
             "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}
ETCD = {"name": "c-master-etcd", "network": "global/networks/default", "priority": 1000, "direction": "INGRESS",
        "sourceTags": ["c-master"], "targetTags": ["c-master"], "allowed": [{"IPProtocol": "tcp", "ports": ["2380-2381"]}]}
TIMES: dict[str, float] = {}


def network(*firewalls: dict[str, Any], rules: tuple[dict[str, Any], ...] = (), extra: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """Desired network: m1 and m2 (tagged c-master, with external IPs) and whatever else is given."""
    instances = [
        {"name": "m1", "internal_ip": M1, "nat_ip": NAT1, "tags": ["c-master"]},
        {"name": "m2", "internal_ip": M2, "nat_ip": NAT2, "tags": ["c-master"]},
        *extra,
    ]
    return {"instances": instances, "firewalls": [ALLOW_SSH, *firewalls], "forwarding_rules": list(rules)}


@pytest.fixture(scope="module")
def two(lab: LabForTests) -> Iterator[LabForTests]:  # noqa: F811  pylint: disable=redefined-outer-name
    """m1 and m2 running, with alice's key and a startup script in metadata, and SSH allowed."""
    lab.metadata.set_project({"ssh-keys": f"{SSH_USER}:{lab.public_key}"})
    lab.host.apply_network(network())
    attributes = {"startup-script": STARTUP}
    TIMES["boot m1"] = lab.boot("m1", M1, attributes=attributes)
    TIMES["boot m2"] = lab.boot("m2", M2, attributes=attributes)
    yield lab
    print("timings:", {k: round(v, 2) for k, v in TIMES.items()})


def test_two_machines_boot(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """Both run, each with its own hostname and machine-id, /etc/hosts naming itself."""
    ids = set()
    for name, ip in (("m1", M1), ("m2", M2)):
        assert two.host.machine_status(name) == "running"
        result = two.host.machine_exec(name, ["sh", "-c", "hostname; cat /etc/machine-id; getent hosts $(hostname) | head -1"])
        hostname, machine_id, hosts = result.stdout.splitlines()
        assert hostname == name
        assert hosts.split()[0] == ip
        ids.add(machine_id)
    assert len(ids) == 2
    assert TIMES["boot m1"] < 30


def test_ssh_with_a_key_from_metadata(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """The guest agent creates the user from ssh-keys; SSH and passwordless sudo work."""
    started = time.monotonic()
    assert wait_for(lambda: two.ssh(M1, "sudo -n id -u").stdout.strip() == "0", 30), two.ssh(M1, "sudo -n id -u")
    TIMES["ssh ready after boot"] = time.monotonic() - started
    mode = two.host.machine_exec("m1", ["stat", "-c", "%a %U", f"/home/{SSH_USER}/.ssh/authorized_keys"]).stdout.strip()
    assert mode == f"600 {SSH_USER}"
    assert "sudo" in two.ssh(M1, "id -nG").stdout.split()


def test_ssh_keys_follow_metadata(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """A key added to project metadata lets its user in; removing it locks the user out again."""
    two.metadata.set_project({"ssh-keys": f"{SSH_USER}:{two.public_key}\nbob:{two.public_key} bob@lab"})
    assert wait_for(lambda: two.ssh(M2, "whoami", user="bob").stdout.strip() == "bob", 30)
    two.metadata.set_project({"ssh-keys": f"{SSH_USER}:{two.public_key}"})
    assert wait_for(lambda: two.ssh(M2, "whoami", user="bob").returncode != 0, 30)
    assert two.ssh(M2, "whoami").stdout.strip() == SSH_USER


def test_startup_script_ran_once(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """The startup-script attribute ran at boot, logged to /var/log/kubeha-startup.log."""
    assert wait_for(lambda: two.host.machine_exec("m1", ["test", "-e", "/run/startup-marker"]).returncode == 0, 30)
    log = two.host.machine_exec("m1", ["cat", "/var/log/kubeha-startup.log"]).stdout
    assert "hello from the startup script" in log
    assert log.count("exit status 0") == 1


def test_firewall_between_machines(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """With only the SSH rule, m1 cannot reach m2:2380; a rule for the master tag opens it (source preserved)."""
    two.serve("m2", 2380)
    two.host.apply_network(network())
    assert two.probe_from("m1", M2, 2380, 1.5).startswith("ERROR")
    two.host.apply_network(network(ETCD))
    assert two.probe_from("m1", M2, 2380) == f"m2 {M1}"
    assert two.probe_from_lab(M2, 2380, 1.5).startswith("ERROR"), "the lab namespace is not tagged"


def test_firewall_priority_and_deny(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """At equal priority deny wins; a lower priority number wins over deny."""
    deny = {"name": "deny-etcd", "priority": 1000, "direction": "INGRESS", "sourceRanges": ["10.0.0.0/8"],
            "denied": [{"IPProtocol": "tcp", "ports": ["2380"]}]}
    two.host.apply_network(network(ETCD, deny))
    assert two.probe_from("m1", M2, 2380, 1.5).startswith("ERROR")
    two.host.apply_network(network(dict(ETCD, priority=900), deny))
    assert two.probe_from("m1", M2, 2380) == f"m2 {M1}"
    two.host.apply_network(network(ETCD, dict(deny, disabled=True)))
    assert two.probe_from("m1", M2, 2380) == f"m2 {M1}"


def test_external_nat(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """External IPs reach the instance from the lab namespace; instance-to-external traffic comes from the external IP."""
    public = {"name": "public-2380", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["2380"]}]}
    two.host.apply_network(network(ETCD))
    assert two.probe_from("m1", NAT2, 2380, 1.5).startswith("ERROR"), "source tags only match internal traffic"
    assert two.probe_from_lab(NAT2, 2380, 1.5).startswith("ERROR")
    two.host.apply_network(network(public))
    assert two.probe_from_lab(NAT2, 2380) == "m2 192.0.2.1"
    assert two.probe_from("m1", NAT2, 2380) == f"m2 {NAT1}"
    no_nat = {"name": "m1", "internal_ip": M1, "nat_ip": None, "tags": ["c-master"]}
    state = network(public)
    state["instances"][0] = no_nat
    two.host.apply_network(state)
    assert two.probe_from("m1", NAT2, 2380, 1.5).startswith("ERROR"), "no external IP, no way out"


def test_forwarding_rule_balances_healthy_backends(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """A passthrough forwarding rule spreads connections over its backends, keeps the client address, follows health."""
    for name in ("m1", "m2"):
        two.serve(name, 8080)
    public = {"name": "lb-8080", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["8080"]}]}
    rule = {"name": "c-master", "ip": LB_IP, "protocol": "TCP", "ports": ["8080"], "backends": [M1, M2]}
    two.host.apply_network(network(public, rules=(rule,)))
    answers = [two.probe_from_lab(LB_IP, 8080) for _n in range(16)]
    assert {a.split()[0] for a in answers} == {"m1", "m2"}, answers
    assert {a.split()[1] for a in answers} == {"192.0.2.1"}
    assert two.probe_from_lab(LB_IP, 2380, 1.5).startswith("ERROR"), "only the rule's ports"
    two.host.apply_network(network(public, rules=(dict(rule, backends=[M1]),)))
    assert {two.probe_from_lab(LB_IP, 8080).split()[0] for _n in range(8)} == {"m1"}
    assert two.probe_from("m2", LB_IP, 8080) == f"m1 {NAT2}"
    two.host.apply_network(network(public, rules=(dict(rule, backends=[]),)))
    assert two.probe_from_lab(LB_IP, 8080, 1.5).startswith("ERROR")


def test_health_checks_come_from_google_ranges(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """The lab's health-check addresses need a rule for 35.191.0.0/16 and 130.211.0.0/22, as on Compute Engine."""
    health = {"name": "hc", "sourceRanges": ["35.191.0.0/16", "130.211.0.0/22"], "allowed": [{"IPProtocol": "tcp"}]}
    two.host.apply_network(network())
    assert two.probe_from_lab(M1, 8080, 1.5, source="35.191.0.1").startswith("ERROR")
    two.host.apply_network(network(health))
    assert two.probe_from_lab(M1, 8080, source="35.191.0.1") == "m1 35.191.0.1"
    assert two.probe_from_lab(M1, 8080, source="130.211.0.1") == "m1 130.211.0.1"
    assert two.probe_from_lab(M1, 8080, 1.5).startswith("ERROR")


def test_cut_and_restore(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """A cut instance is unreachable and reaches nothing but the metadata server; restore undoes it."""
    two.host.apply_network(network(ETCD))
    two.host.cut("m2")
    assert two.host.cuts() == ["m2"]
    assert two.probe_from("m1", M2, 2380, 1.5).startswith("ERROR")
    assert not two.port_open_from_lab(M2, 22)
    assert two.host.machine_exec("m2", ["curl", "-sf", "-H", "Metadata-Flavor: Google", "-m", "3",
                                        "http://169.254.169.254/computeMetadata/v1/instance/hostname"]).returncode == 0
    two.host.restore("m2")
    assert two.probe_from("m1", M2, 2380) == f"m2 {M1}"


def test_data_disk_survives_its_machine(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """A data disk is /dev/disk/by-id/google-master-pd; its files outlive the machine and show up on the next one."""
    disk = two.host.create_disk("d-pd", 1)
    two.boot("d1", "10.132.0.10", {"master-pd": disk})
    script = ("mkfs.ext4 -q -F /dev/disk/by-id/google-master-pd && mkdir -p /mnt/pd && "
              "mount /dev/disk/by-id/google-master-pd /mnt/pd && echo kept > /mnt/pd/data && "
              "echo '/dev/disk/by-id/google-master-pd /mnt/pd ext4 defaults 0 2' >> /etc/fstab")
    result = two.host.machine_exec("d1", ["sh", "-c", script])
    assert result.returncode == 0, result.stderr
    with pytest.raises(HostError):
        two.host.delete_disk("d-pd")
    two.host.stop_machine("d1")
    assert two.host.machine_status("d1") == "stopped"
    two.boot("d1", "10.132.0.10", {"master-pd": disk})
    assert two.host.machine_exec("d1", ["cat", "/mnt/pd/data"]).stdout.strip() == "kept", "mounted from /etc/fstab at boot"
    two.host.delete_machine("d1", delete_disks=False)
    assert two.host.machine_status("d1") == "absent"
    two.boot("d2", "10.132.0.11", {"master-pd": disk})
    read = "mkdir -p /mnt/pd && mount /dev/disk/by-id/google-master-pd /mnt/pd && cat /mnt/pd/data"
    assert two.host.machine_exec("d2", ["sh", "-c", read]).stdout.strip() == "kept"
    two.host.delete_machine("d2", delete_disks=True)
    assert two.host.disk_path("d-pd") is None and two.host.disk_path("d2-boot") is None


def test_attach_and_detach_a_disk_while_running(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """A disk attached to a running machine appears under its device name and can be formatted; detach removes it."""
    extra = two.host.create_disk("extra", 1)
    two.host.attach_disk("m1", "extra", extra)
    result = two.host.machine_exec("m1", ["mkfs.ext4", "-q", "-F", "/dev/disk/by-id/google-extra"])
    assert result.returncode == 0, result.stderr
    with pytest.raises(HostError):
        two.host.attach_disk("m2", "extra", extra)
    two.host.detach_disk("m1", "extra")
    assert two.host.machine_exec("m1", ["test", "-e", "/dev/disk/by-id/google-extra"]).returncode != 0
    two.host.delete_disk("extra")


def test_crash_machine_leaves_no_process(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """crash_machine kills the container at once; nothing of it keeps running; it boots again from its disk."""
    record = machines.load(two.host.config, "m2")
    assert record is not None
    two.host.machine_exec("m2", ["sh", "-c", "echo before-crash > /root/mark"])
    two.host.crash_machine("m2")
    assert two.host.machine_status("m2") == "crashed"
    assert not machines.is_alive(record)
    assert not netns.exists(record.ns) and not netns.pids(record.ns)
    assert not any(c.exists() for c in machines.machine_cgroups(two.host.config, record))
    TIMES["boot m2 again"] = two.boot("m2", M2)
    assert two.host.machine_exec("m2", ["cat", "/root/mark"]).stdout.strip() == "before-crash"


def test_poweroff_inside_terminates(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """A machine that powers itself off is reported terminated and releases what it held."""
    two.host.machine_exec("m2", ["systemctl", "poweroff"])
    assert wait_for(lambda: two.host.machine_status("m2") == "terminated", 30)
    record = machines.load(two.host.config, "m2")
    assert record is not None and not record.loops and not netns.exists(record.ns)


def test_down_after_the_controller_was_killed(two: LabForTests) -> None:  # pylint: disable=redefined-outer-name
    """A controller in the lab namespace (as the simulator runs) starts a machine and is killed with SIGKILL.

    down() from outside still removes everything, twice.
    """
    config = two.host.config
    two.host.create_boot_disk("orphan-boot")
    code = (
        "from kubeha_lab.host import Host\n"
        "host = Host()\n"
        f"host.start_machine('orphan', 'orphan', '10.132.0.20', '{REGION_GATEWAY}', host.disk_path('orphan-boot'),"
        f" {{'pd': host.create_disk('orphan-pd', 1)}})\n"
        "print('ready', flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(LAB_DIR), KUBEHA_LAB_STATE=str(config.state_dir), KUBEHA_LAB_NS=config.lab_ns,
               KUBEHA_CACHE=str(config.cache_dir))
    with subprocess.Popen(two.host.lab_argv([sys.executable, "-c", code]), env=env, stdout=subprocess.PIPE, text=True) as controller:
        assert controller.stdout is not None
        assert controller.stdout.readline().strip() == "ready"
        os.kill(controller.pid, signal.SIGKILL)
    assert two.host.machine_status("orphan") == "running"
    started = time.monotonic()
    two.host.down()
    TIMES["down"] = time.monotonic() - started
    assert leftovers(config) == []
    two.host.down()
    assert leftovers(config) == []
    assert {two.host.machine_status(n) for n in ("m1", "orphan")} == {"stopped"}
