# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure parts of the host layer: names, apt sources, the guest agent's parsing, the metadata stub."""
from __future__ import annotations

import datetime
import importlib.machinery
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

from kubeha_lab.host import LabConfig, image, machines, metadata_stub
from kubeha_lab.host.config import check_machine_name, short_id

AGENT = Path(image.GUEST_DIR) / "kubeha_guest_agent.py"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly"


def load_agent() -> ModuleType:
    """The guest agent script as a module."""
    loader = importlib.machinery.SourceFileLoader("kubeha_guest_agent", str(AGENT))
    spec = importlib.util.spec_from_loader("kubeha_guest_agent", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_config_from_environment() -> None:
    """Defaults, overrides and names that fit the kernel's limits."""
    default = LabConfig.from_env({})
    assert (str(default.state_dir), str(default.cache_dir), default.lab_ns) == (
        "/var/lib/kubeha-lab", "/var/cache/kubeha-gce", "kubeha-lab")
    custom = LabConfig.from_env({"KUBEHA_LAB_STATE": "/s", "KUBEHA_CACHE": "/c", "KUBEHA_LAB_NS": "lab2"})
    assert custom.image_dir == Path("/c/lab-image") and custom.mnt_dir == Path("/s/mnt")
    assert custom.machine_ns("europe-west1-b.m1") == "lab2-" + short_id("europe-west1-b.m1")
    assert len(custom.lab_veth("a-very-long-machine-name-" * 3)) <= 15
    with pytest.raises(ValueError):
        LabConfig.from_env({"KUBEHA_LAB_NS": "Bad Name"})
    with pytest.raises(ValueError):
        check_machine_name("../etc")


def test_mirror_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    """The bookworm mirror is taken from either format; disabled and foreign files are ignored."""
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    assert image.mirror_from_sources(tmp_path) == image.DEFAULT_MIRROR
    (parts / "other.list.disabled-by-farm").write_text("deb https://elsewhere.example/apt x main\n", encoding="utf-8")
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n",
        encoding="utf-8")
    assert image.mirror_from_sources(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://first.example/debian bookworm main\n", encoding="utf-8")
    assert image.mirror_from_sources(tmp_path) == "http://first.example/debian"


def test_image_hash_follows_the_guest_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing a guest file makes a new image (and keeps the debootstrap base)."""
    before, base = image.image_hash(), image.base_hash()
    copy = tmp_path / "guest"
    copy.mkdir()
    for entry in image.GUEST_FILES:
        (copy / entry[1]).write_bytes((image.GUEST_DIR / entry[1]).read_bytes())
    monkeypatch.setattr(image, "GUEST_DIR", copy)
    assert image.image_hash() == before
    (copy / "kubeha_guest_agent.py").write_text("changed", encoding="utf-8")
    assert image.image_hash() != before and image.base_hash() == base


def test_agent_parses_ssh_keys() -> None:
    """USER:KEY lines; bad users, root, junk and expired keys are skipped; duplicates merged."""
    agent = load_agent()
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    text = "\n".join([
        f"alice:{KEY} alice@host",
        f"alice:{KEY} alice@host",
        f"bob:{KEY} google-ssh {json.dumps({'userName': 'bob', 'expireOn': past})}",
        f"carol:{KEY} google-ssh {json.dumps({'userName': 'carol', 'expireOn': future})}",
        f"root:{KEY}",
        f"Bad User:{KEY}",
        "dave:not-a-key",
        "# comment",
        "",
    ])
    users = agent.parse_ssh_keys(text)
    assert sorted(users) == ["alice", "carol"]
    assert users["alice"] == [f"{KEY} alice@host"]


def test_agent_merges_instance_and_project_keys() -> None:
    """Project keys count unless the instance blocks them."""
    agent = load_agent()
    state = {"instance": {"ssh-keys": f"alice:{KEY}"}, "project": {"ssh-keys": f"bob:{KEY}"}, "hostname": "", "ip": ""}
    assert sorted(agent.desired_users(state)) == ["alice", "bob"]
    state["instance"]["block-project-ssh-keys"] = "TRUE"
    assert sorted(agent.desired_users(state)) == ["alice"]


def test_agent_keeps_hosts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's /etc/hosts lines are replaced, the others kept."""
    agent = load_agent()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.1 old old  # Added by kubeha-guest-agent\n192.0.2.9 mine\n", encoding="utf-8")
    monkeypatch.setattr(agent, "HOSTS", str(hosts))
    agent.apply_hosts("m1.z.c.p.internal", "10.132.0.2")
    lines = hosts.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["127.0.0.1 localhost", "192.0.2.9 mine"]
    assert lines[2].startswith("10.132.0.2 m1.z.c.p.internal m1 ")
    assert lines[3].startswith("169.254.169.254 metadata.google.internal")
    mtime = os.stat(hosts).st_mtime_ns
    agent.apply_hosts("m1.z.c.p.internal", "10.132.0.2")
    assert os.stat(hosts).st_mtime_ns == mtime, "unchanged content is not rewritten"


def test_metadata_stub_lookup() -> None:
    """The stub answers per client address."""
    document = {"project": {"attributes": {"ssh-keys": "p"}},
                "instances": {"10.0.0.2": {"hostname": "h", "attributes": {"startup-script": "s"}}}}
    assert metadata_stub.lookup(document, "10.0.0.2", "instance/attributes/startup-script") == "s"
    assert metadata_stub.lookup(document, "10.0.0.2", "instance/network-interfaces/0/ip") == "10.0.0.2"
    assert metadata_stub.lookup(document, "10.0.0.2", "project/attributes/") == {"ssh-keys": "p"}
    assert metadata_stub.lookup(document, "10.0.0.3", "instance/hostname") is None


def test_machine_helpers(tmp_path: Path) -> None:
    """Address encoding of /proc/net/tcp, process identity, the nspawn command line."""
    assert machines._hex_address("10.132.0.2") == "0200840A"  # pylint: disable=protected-access
    assert machines.process_start_time(os.getpid()) is not None
    assert machines.process_start_time(2 ** 22 + 1) is None
    boot = tmp_path / "b.boot"
    (boot / "upper/etc").mkdir(parents=True)
    (boot / "upper/etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n", encoding="utf-8")
    config = LabConfig(tmp_path / "state", tmp_path / "cache", "lab")
    record = machines.MachineRecord(name="m1", hostname="m1.z.c.p.internal", internal_ip="10.132.0.2", gateway="10.132.0.1",
                                    boot_disk=str(boot), data_disks={}, ns="lab-x", veth="vmx", loops={"master-pd": "/dev/loop3"})
    argv = machines.nspawn_argv(config, record)
    assert "--bind=/dev/loop3:/dev/disk/by-id/google-master-pd" in argv
    assert "--hostname=m1" in argv and "--register=no" in argv and "--keep-unit" in argv and argv[-1] == "--boot"
    assert "--uuid=0123456789abcdef0123456789abcdef" in argv


def test_hosts_file_keeps_the_guests_own_lines(tmp_path: Path) -> None:
    """At start the machine's /etc/hosts gets its name and the metadata server's; lines the guest added stay."""
    lower = tmp_path / "image"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/hosts").write_text("127.0.0.1 localhost\n", encoding="utf-8")
    boot = tmp_path / "m1.boot"
    (boot / "upper").mkdir(parents=True)
    (boot / "lower").write_text(f"{lower}\n", encoding="utf-8")
    machines._write_hosts(boot, "m1.z.c.p.internal", "10.132.0.2")  # pylint: disable=protected-access
    hosts = boot / "upper/etc/hosts"
    first = hosts.read_text(encoding="utf-8").splitlines()
    assert first[0] == "127.0.0.1 localhost" and first[1].startswith("10.132.0.2 m1.z.c.p.internal m1 ")
    hosts.write_text(hosts.read_text(encoding="utf-8") + "10.132.0.3 peer\n", encoding="utf-8")
    machines._write_hosts(boot, "m1.z.c.p.internal", "10.132.0.7")  # pylint: disable=protected-access
    lines = hosts.read_text(encoding="utf-8").splitlines()
    assert "10.132.0.3 peer" in lines and lines[-2].startswith("10.132.0.7 ") and not any(" 10.132.0.2 " in f" {x}" for x in lines)
    assert (lower / "etc/hosts").read_text(encoding="utf-8") == "127.0.0.1 localhost\n"
