# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Machines: booted systemd-nspawn containers, one network namespace each.

A machine's record lives in ``machines/NAME/machine.json`` (what it runs
with, the nspawn PID and its start time, loop devices, state), its console in
``machines/NAME/console.log``. Its boot disk is mounted as an overlay at
``mnt/NAME``. States: ``starting``, ``running``, ``stopped`` (stop_machine),
``crashed`` (crash_machine), ``terminated`` (the machine went away by itself,
e.g. ``poweroff`` inside), ``absent`` (no record).

Stopping or losing a machine releases everything it held: its processes
(every process left in its network namespace is killed), overlay mount, loop
devices and network namespace. Disks keep their data.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from . import disks, netns
from .config import LabConfig, check_machine_name
from .run import HostError, file_lock, host_argv, host_path, mount_points, process_start_time, run, tail, wait_until, write_file

CGROUP_ROOT = Path("/sys/fs/cgroup")
BOOT_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
LIVE_STATES = ("starting", "running")


@dataclasses.dataclass
class MachineRecord:
    """What a machine runs with and what it holds while it runs."""

    name: str
    hostname: str
    internal_ip: str
    gateway: str
    boot_disk: str
    data_disks: dict[str, str]
    ns: str
    veth: str
    state: str = "stopped"
    pid: int = 0
    pid_start: int = 0
    loops: dict[str, str] = dataclasses.field(default_factory=dict)
    started_at: float = 0.0

    @classmethod
    def load(cls, path: Path) -> MachineRecord:
        """Read a machine.json."""
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def save(self, config: LabConfig) -> None:
        """Write machine.json."""
        write_file(machine_dir(config, self.name) / "machine.json", json.dumps(dataclasses.asdict(self), indent=2) + "\n")


def machine_dir(config: LabConfig, name: str) -> Path:
    """Directory of machine name."""
    return config.machines_dir / check_machine_name(name)


def console_log(config: LabConfig, name: str) -> Path:
    """Console log of machine name."""
    return machine_dir(config, name) / "console.log"


def root_mount(config: LabConfig, name: str) -> Path:
    """Where machine name's boot disk is mounted."""
    return config.mnt_dir / check_machine_name(name)


def load(config: LabConfig, name: str) -> MachineRecord | None:
    """The record of machine name, None if there is none."""
    path = machine_dir(config, name) / "machine.json"
    return MachineRecord.load(path) if path.exists() else None


def list_machines(config: LabConfig) -> list[str]:
    """Names of the machines with a record."""
    if not config.machines_dir.is_dir():
        return []
    return sorted(p.parent.name for p in config.machines_dir.glob("*/machine.json"))


def is_alive(record: MachineRecord) -> bool:
    """True while the machine's nspawn process runs."""
    return record.pid > 0 and process_start_time(record.pid) == record.pid_start


def ensure_shared_mnt(config: LabConfig) -> None:
    """Make mnt/ a shared mount, so unmounting an overlay also unmounts its copies in other mount namespaces."""
    mnt = config.mnt_dir
    mnt.mkdir(parents=True, exist_ok=True)
    if str(mnt.resolve()) not in mount_points():
        run(["mount", "--bind", str(mnt), str(mnt)])
        run(["mount", "--make-rshared", str(mnt)])


def nspawn_argv(config: LabConfig, record: MachineRecord) -> list[str]:
    """The systemd-nspawn command line of a machine."""
    argv = [
        "systemd-nspawn", "--quiet", f"--directory={root_mount(config, record.name)}", "--register=no", "--keep-unit",
        f"--network-namespace-path={netns.NETNS_DIR / record.ns}", f"--hostname={record.hostname.split('.', 1)[0]}",
        f"--uuid={disks.machine_id(Path(record.boot_disk))}", f"--machine={record.ns}",
        "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only",
    ]
    for device_name, loop in sorted(record.loops.items()):
        argv.append(f"--bind={loop}:/dev/disk/by-id/google-{device_name}")
    return argv + ["--boot"]


def cgroup_roots() -> list[Path]:
    """The cgroup hierarchies nspawn uses: name=systemd and cgroup2 (hybrid), or the single cgroup2 tree."""
    if host_path(CGROUP_ROOT / "systemd" / "cgroup.procs").exists():
        return [h for h in (CGROUP_ROOT / "systemd", CGROUP_ROOT / "unified") if host_path(h / "cgroup.procs").exists()]
    return [CGROUP_ROOT] if host_path(CGROUP_ROOT / "cgroup.procs").exists() else []


def lab_cgroups(config: LabConfig) -> list[Path]:
    """The lab's own cgroup in each hierarchy (machines get one below it)."""
    return [root / config.lab_ns for root in cgroup_roots()]


def machine_cgroups(config: LabConfig, record: MachineRecord) -> list[Path]:
    """The machine's cgroups: without its own, nspawn puts every container in the same 'payload' group."""
    return [lab / record.ns for lab in lab_cgroups(config)]


def remove_cgroups(paths: list[Path]) -> None:
    """Kill what is left in the cgroup trees at paths and remove them, deepest first."""
    for top in (host_path(p) for p in paths):
        if not top.is_dir():
            continue
        for directory, _subdirs, _files in sorted(os.walk(top), key=lambda entry: len(entry[0]), reverse=True):
            _kill_cgroup(Path(directory))
            try:
                os.rmdir(directory)
            except OSError:
                pass


def _kill_cgroup(path: Path) -> None:
    """SIGKILL the processes of one cgroup (and wait briefly for them to go)."""
    def members() -> list[int]:
        try:
            return [int(p) for p in (path / "cgroup.procs").read_text(encoding="utf-8").split()]
        except OSError:
            return []
    for pid in members():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not members(), 5.0, 0.05)


def _spawn(argv: list[str], log: Path, cgroups: list[Path]) -> int:
    """Start argv detached (own session, own cgroups) with output appended to log; return its PID."""
    for cgroup in cgroups:
        host_path(cgroup).mkdir(parents=True, exist_ok=True)
    script = (
        '( for cg in $KUBEHA_CGROUPS; do echo 0 > "$cg/cgroup.procs" || exit 1; done; exec "$@" )'
        ' </dev/null >>"$KUBEHA_CONSOLE" 2>&1 & echo $!'
    )
    env = dict(os.environ, KUBEHA_CONSOLE=str(log), KUBEHA_CGROUPS=" ".join(str(c) for c in cgroups))
    with subprocess.Popen(host_argv(["sh", "-c", script, "sh", *argv]), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                          start_new_session=True, text=True) as wrapper:
        output, _unused = wrapper.communicate(timeout=30)
    return int(output.strip())


HOSTS_MARK = "  # Added by kubeha-guest-agent"  # the guest agent keeps these lines up to date


def _write_hosts(boot: Path, hostname: str, internal_ip: str) -> None:
    """Put the machine's own name and the metadata server's into its /etc/hosts (other lines are kept).

    Written into the boot disk's upper layer before the overlay is mounted.
    """
    lower, upper, _work = disks.boot_disk_layers(boot)
    hosts = upper / "etc/hosts"
    source = hosts if hosts.is_file() and not hosts.is_symlink() else lower / "etc/hosts"
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = ["127.0.0.1 localhost"]
    short = hostname.split(".", 1)[0]
    names = hostname if short == hostname else f"{hostname} {short}"
    lines = [line for line in lines if not line.endswith(HOSTS_MARK)]
    lines += [f"{internal_ip} {names}{HOSTS_MARK}", f"169.254.169.254 metadata.google.internal metadata{HOSTS_MARK}"]
    if hosts.is_symlink() or (hosts.exists() and not hosts.is_file()):
        hosts.unlink()
    write_file(hosts, "\n".join(lines) + "\n")


def prepare(config: LabConfig, record: MachineRecord) -> None:
    """Network, overlay and loop devices of a machine about to start (call with the host lock held)."""
    ensure_shared_mnt(config)
    netns.connect_machine(config.lab_ns, record.ns, record.veth, record.internal_ip, record.gateway)
    root = root_mount(config, record.name)
    disks.unmount(root)
    if disks.overlay_users(Path(record.boot_disk)):
        raise HostError(f"boot disk {Path(record.boot_disk).name} is already in use by a running machine")
    _write_hosts(Path(record.boot_disk), record.hostname, record.internal_ip)
    disks.mount_overlay(Path(record.boot_disk), root)
    for device_name, path in sorted(record.data_disks.items()):
        record.loops[device_name] = disks.attach_loop(Path(path))
        record.save(config)


def spawn(config: LabConfig, record: MachineRecord) -> None:
    """Start the machine's nspawn process and record its PID."""
    log = console_log(config, record.name)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n==== kubeha-lab: starting {record.name} at {time.strftime('%Y-%m-%dT%H:%M:%S')} ====\n")
    remove_cgroups(machine_cgroups(config, record))
    record.pid = _spawn(nspawn_argv(config, record), log, machine_cgroups(config, record))
    record.pid_start = process_start_time(record.pid) or 0
    record.started_at = time.time()
    record.save(config)


def container_init_pid(record: MachineRecord) -> int | None:
    """Host PID of the machine's PID 1 (its systemd), None when it does not run."""
    for pid in netns.pids(record.ns):
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                        return pid
        except FileNotFoundError:
            continue
    return None


def sshd_listening(record: MachineRecord) -> bool:
    """True when something listens on TCP port 22 on the machine's address (or on any address)."""
    pid = container_init_pid(record)
    if pid is None:
        return False
    wanted = {"00000000", _hex_address(record.internal_ip)}
    try:
        with open(f"/proc/{pid}/net/tcp", encoding="utf-8") as handle:
            next(handle)
            for line in handle:
                local, state = line.split()[1], line.split()[3]
                address, port = local.split(":")
                if state == "0A" and port == "0016" and address in wanted:
                    return True
    except (FileNotFoundError, ProcessLookupError):
        return False
    return False


def _hex_address(address: str) -> str:
    """An IPv4 address as /proc/net/tcp shows it."""
    return "".join(f"{int(part):02X}" for part in reversed(address.split(".")))


def wait_ready(config: LabConfig, record: MachineRecord, timeout: float) -> None:
    """Wait until sshd listens in the machine; HostError with the console's tail if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(record):
            raise HostError(f"machine {record.name} exited while booting; console:\n{tail(console_log(config, record.name))}")
        if sshd_listening(record):
            return
        time.sleep(0.25)
    raise HostError(f"machine {record.name}: sshd not listening after {timeout:.0f}s; console:\n"
                    f"{tail(console_log(config, record.name))}")


def start_machine(config: LabConfig, name: str, hostname: str, internal_ip: str, gateway: str, boot_disk: Path,
                  data_disks: dict[str, Path] | None = None, timeout: float = BOOT_TIMEOUT) -> MachineRecord:
    """Boot machine name and wait until sshd listens; see Host.start_machine."""
    with file_lock(config.lock_file):
        old = load(config, name)
        if old is not None and old.state in LIVE_STATES and is_alive(old):
            raise HostError(f"machine {name} is already running")
        if old is not None:
            release(config, old)
        machine_dir(config, name).mkdir(parents=True, exist_ok=True)
        record = MachineRecord(
            name=name, hostname=hostname, internal_ip=internal_ip, gateway=gateway, boot_disk=str(Path(boot_disk).resolve()),
            data_disks={k: str(Path(v).resolve()) for k, v in (data_disks or {}).items()}, ns=config.machine_ns(name),
            veth=config.lab_veth(name), state="starting",
        )
        record.save(config)
        try:
            prepare(config, record)
            spawn(config, record)
        except BaseException:
            release(config, record, state="stopped")
            raise
    try:
        wait_ready(config, record, timeout)
    except BaseException:
        with file_lock(config.lock_file):
            signal_machine(record)
            release(config, record, state="stopped")
        raise
    with file_lock(config.lock_file):
        current = load(config, name)
        if current is None or current.pid != record.pid or current.state != "starting":
            raise HostError(f"machine {name} was stopped while it booted")
        record.state = "running"
        record.save(config)
    return record


def signal_machine(record: MachineRecord, sig: int = signal.SIGKILL) -> None:
    """Signal the nspawn process if it is still the one recorded."""
    if is_alive(record):
        try:
            os.kill(record.pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(record: MachineRecord, timeout: float) -> bool:
    """Wait until the nspawn process is gone."""
    return wait_until(lambda: not is_alive(record), timeout, 0.1)


def release(config: LabConfig, record: MachineRecord, state: str | None = None) -> None:
    """Free what a machine held (processes, overlay mount, loop devices, namespace); keep disks."""
    netns.kill_pids(record.ns)
    wait_until(lambda: not netns.pids(record.ns), 10.0, 0.1)
    remove_cgroups(machine_cgroups(config, record))
    disks.unmount(root_mount(config, record.name))
    for device_name in list(record.loops):
        disks.detach_loop(record.loops.pop(device_name), Path(record.data_disks[device_name]))
    netns.disconnect_machine(config.lab_ns, record.ns, record.veth)
    record.pid = record.pid_start = 0
    if state is not None:
        record.state = state
    if machine_dir(config, record.name).exists():
        record.save(config)


def stop_machine(config: LabConfig, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """Shut machine name down (its systemd halts; SIGKILL after timeout seconds) and release it."""
    record = _require(config, name)
    if is_alive(record):
        signal_machine(record, signal.SIGTERM)
        if not _wait_gone(record, timeout):
            signal_machine(record)
            _wait_gone(record, 10.0)
    with file_lock(config.lock_file):
        release(config, record, state="stopped")


def crash_machine(config: LabConfig, name: str) -> None:
    """Kill machine name at once (SIGKILL, nothing shuts down) and release it."""
    record = _require(config, name)
    init = container_init_pid(record)
    signal_machine(record)
    if init is not None:
        try:
            os.kill(init, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_gone(record, 10.0)
    with file_lock(config.lock_file):
        release(config, record, state="crashed")


def machine_status(config: LabConfig, name: str) -> str:
    """State of machine name; a machine found dead is released and reported 'terminated'."""
    record = load(config, name)
    if record is None:
        return "absent"
    if record.state in LIVE_STATES and not is_alive(record):
        with file_lock(config.lock_file):
            record = load(config, name) or record
            if record.state in LIVE_STATES and not is_alive(record):
                release(config, record, state="terminated")
    return record.state


def delete_machine(config: LabConfig, name: str, delete_disks: bool = False, timeout: float = STOP_TIMEOUT) -> None:
    """Stop machine name, forget it; delete its boot and data disks too when asked."""
    record = load(config, name)
    if record is None:
        return
    stop_machine(config, name, timeout)
    with file_lock(config.lock_file):
        disks.remove_tree(machine_dir(config, name))
        root = root_mount(config, name)
        if root.exists() and not disks.mounts_below(root):
            root.rmdir()
        if delete_disks:
            for path in [record.boot_disk, *record.data_disks.values()]:
                disk = Path(path)
                if disk.exists() and disk.parent == config.disks_dir.resolve():
                    disks.delete_disk(config, disk.name.rsplit(".", 1)[0])


def attach_disk(config: LabConfig, name: str, device_name: str, path: Path) -> None:
    """Attach a data disk to running machine name as /dev/disk/by-id/google-DEVICE_NAME."""
    with file_lock(config.lock_file):
        record = _require(config, name)
        if not is_alive(record):
            raise HostError(f"machine {name} is not running")
        if device_name in record.data_disks:
            raise HostError(f"machine {name} already has a disk with device name {device_name}")
        loop = disks.attach_loop(path)
        record.data_disks[device_name] = str(path.resolve())
        record.loops[device_name] = loop
        record.save(config)
        device = os.stat(host_path(Path(loop))).st_rdev
        node = f"/dev/disk/by-id/google-{device_name}"
        script = f"mkdir -p /dev/disk/by-id && mknod -m 600 {node} b {os.major(device)} {os.minor(device)}"
        run(exec_argv(config, name, ["sh", "-c", script]))


def detach_disk(config: LabConfig, name: str, device_name: str) -> None:
    """Detach data disk DEVICE_NAME from running machine name (the guest should have unmounted it)."""
    with file_lock(config.lock_file):
        record = _require(config, name)
        if device_name not in record.data_disks:
            raise HostError(f"machine {name} has no disk with device name {device_name}")
        if is_alive(record):
            run(exec_argv(config, name, ["rm", "-f", f"/dev/disk/by-id/google-{device_name}"]), check=False)
        path = Path(record.data_disks.pop(device_name))
        loop = record.loops.pop(device_name, None)
        if loop:
            disks.detach_loop(loop, path)
        record.save(config)


def exec_argv(config: LabConfig, name: str, argv: list[str]) -> list[str]:
    """argv run inside running machine name (all its namespaces, as root)."""
    record = _require(config, name)
    pid = container_init_pid(record)
    if pid is None or not is_alive(record):
        raise HostError(f"machine {name} is not running")
    return ["nsenter", f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd",
            "/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", *argv]


def _require(config: LabConfig, name: str) -> MachineRecord:
    """The record of machine name; HostError when there is none."""
    record = load(config, name)
    if record is None:
        raise HostError(f"machine {name} does not exist")
    return record
