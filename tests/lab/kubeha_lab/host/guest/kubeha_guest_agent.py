# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guest agent of the lab's instances, modelled on Google's guest environment.

  kubeha-guest-agent daemon    keep users, SSH keys and /etc/hosts in line with metadata
  kubeha-guest-agent sync      one pass of the above
  kubeha-guest-agent startup   run the instance's startup-script (once per boot)

Metadata comes from http://169.254.169.254/computeMetadata/v1/ (header
Metadata-Flavor: Google), read every 2 seconds:
instance/attributes/?recursive=true, project/attributes/?recursive=true,
instance/hostname and instance/network-interfaces/0/ip.

Each ``ssh-keys`` line ``USER:KEYTYPE KEY [COMMENT]`` (instance attribute, and
the project attribute unless the instance sets block-project-ssh-keys=true)
makes USER a user with a home directory, member of group sudo, with password-
less sudo (/etc/sudoers.d/kubeha-guest) and those keys in
~USER/.ssh/authorized_keys (0600). Keys whose ``google-ssh {"expireOn": ...}``
comment lies in the past are left out. Users whose keys disappear from
metadata lose their keys and sudo, not their accounts.
"""
from __future__ import annotations

import datetime
import grp
import hashlib
import json
import os
import pwd
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

METADATA_URL = os.environ.get("KUBEHA_METADATA_URL", "http://169.254.169.254/computeMetadata/v1/")
POLL_SECONDS = 2.0
REQUEST_TIMEOUT = 5.0
STATE_DIR = "/var/lib/kubeha-guest"
RUN_DIR = "/run/kubeha-guest"
SUDOERS = "/etc/sudoers.d/kubeha-guest"
HOSTS = "/etc/hosts"
STARTUP_LOG = "/var/log/kubeha-startup.log"
MARK = "# Added by kubeha-guest-agent"
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
KEY_RE = re.compile(r"^(ssh-|ecdsa-|sk-)\S+\s+\S+")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(message: str) -> None:
    """One line to stdout (the journal)."""
    print(message, flush=True)


class MetadataError(Exception):
    """The metadata server did not answer as expected."""


def fetch(path: str) -> str | None:
    """Text at path below the metadata root, None when it does not exist."""
    request = urllib.request.Request(METADATA_URL + path, headers={"Metadata-Flavor": "Google"})
    try:
        with OPENER.open(request, timeout=REQUEST_TIMEOUT) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise MetadataError(f"{path}: HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise MetadataError(f"{path}: {exc}") from exc


def fetch_attributes(scope: str) -> dict[str, str]:
    """All attributes of instance or project as a dict."""
    text = fetch(f"{scope}/attributes/?recursive=true")
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MetadataError(f"{scope}/attributes: not JSON") from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def fetch_state() -> dict[str, object]:
    """Everything the agent acts on, in one dict."""
    instance = fetch_attributes("instance")
    project = fetch_attributes("project")
    return {
        "instance": instance,
        "project": project,
        "hostname": (fetch("instance/hostname") or "").strip(),
        "ip": (fetch("instance/network-interfaces/0/ip") or "").strip(),
    }


def key_expired(key: str, now: datetime.datetime) -> bool:
    """True for a key whose google-ssh comment says it expired."""
    match = re.search(r"google-ssh\s+(\{.*\})\s*$", key)
    if not match:
        return False
    try:
        expire = json.loads(match.group(1)).get("expireOn", "")
        when = datetime.datetime.strptime(expire, "%Y-%m-%dT%H:%M:%S%z")
    except (ValueError, AttributeError):
        return False
    return when < now


def parse_ssh_keys(text: str) -> dict[str, list[str]]:
    """{user: [keys]} from ssh-keys lines USER:KEYTYPE KEY [COMMENT]."""
    now = datetime.datetime.now(datetime.timezone.utc)
    users: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        user, key = line.split(":", 1)
        user, key = user.strip(), key.strip()
        if user == "root" or not USER_RE.match(user) or not KEY_RE.match(key) or key_expired(key, now):
            continue
        if key not in users.setdefault(user, []):
            users[user].append(key)
    return users


def desired_users(state: dict[str, object]) -> dict[str, list[str]]:
    """Users and keys from instance and (unless blocked) project metadata."""
    instance = state["instance"]
    project = state["project"]
    lines = [instance.get("ssh-keys", ""), instance.get("sshKeys", "")]
    if instance.get("block-project-ssh-keys", "").lower() != "true":
        lines += [project.get("ssh-keys", ""), project.get("sshKeys", "")]
    merged: dict[str, list[str]] = {}
    for user, keys in parse_ssh_keys("\n".join(lines)).items():
        for key in keys:
            if key not in merged.setdefault(user, []):
                merged[user].append(key)
    return merged


def write_atomic(path: str, text: str, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Write path atomically with owner and mode."""
    tmp = f"{path}.kubeha-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chown(tmp, uid, gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_user(user: str) -> pwd.struct_passwd | None:
    """The account of user, created (home, shell, group sudo) when missing; None if not ours to manage."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", user], check=True)
        log(f"created user {user}")
        return pwd.getpwnam(user)
    if entry.pw_uid < 1000:
        log(f"not managing system account {user}")
        return None
    if user not in grp.getgrnam("sudo").gr_mem:
        subprocess.run(["usermod", "--append", "--groups", "sudo", user], check=True)
    return entry


def write_keys(entry: pwd.struct_passwd, keys: list[str]) -> None:
    """~/.ssh/authorized_keys of the user: 0700 directory, 0600 file, owned by the user."""
    ssh_dir = os.path.join(entry.pw_dir, ".ssh")
    if not os.path.isdir(ssh_dir):
        os.makedirs(ssh_dir, mode=0o700)
    os.chown(ssh_dir, entry.pw_uid, entry.pw_gid)
    os.chmod(ssh_dir, 0o700)
    text = "".join(f"{key}\n" for key in keys)
    write_atomic(os.path.join(ssh_dir, "authorized_keys"), text, 0o600, entry.pw_uid, entry.pw_gid)


def write_sudoers(users: list[str]) -> None:
    """Passwordless sudo for users, checked with visudo before it is installed."""
    text = f"{MARK}\n" + "".join(f"{user} ALL=(ALL:ALL) NOPASSWD:ALL\n" for user in sorted(users))
    try:
        with open(SUDOERS, encoding="utf-8") as handle:
            if handle.read() == text:
                return
    except FileNotFoundError:
        pass
    tmp = f"{RUN_DIR}/sudoers.check"
    write_atomic(tmp, text, 0o440)
    if subprocess.run(["visudo", "-cqf", tmp], check=False).returncode != 0:
        log("refusing a sudoers file that visudo rejects")
        return
    write_atomic(SUDOERS, text, 0o440)


def load_managed() -> list[str]:
    """Users this agent manages (from earlier passes)."""
    try:
        with open(f"{STATE_DIR}/users.json", encoding="utf-8") as handle:
            return list(json.load(handle))
    except (FileNotFoundError, ValueError):
        return []


def apply_users(users: dict[str, list[str]]) -> None:
    """Create users, install their keys; strip keys and sudo from users no longer listed."""
    managed = []
    for user, keys in sorted(users.items()):
        entry = ensure_user(user)
        if entry is not None:
            write_keys(entry, keys)
            managed.append(user)
    for gone in set(load_managed()) - set(managed):
        try:
            write_keys(pwd.getpwnam(gone), [])
            log(f"removed the keys of {gone}")
        except KeyError:
            pass
    write_sudoers(managed)
    write_atomic(f"{STATE_DIR}/users.json", json.dumps(sorted(managed)), 0o600)


def apply_hosts(hostname: str, address: str) -> None:
    """Keep the instance's own name and the metadata server's in /etc/hosts."""
    wanted = [f"169.254.169.254 metadata.google.internal metadata  {MARK}"]
    if hostname and address:
        short = hostname.split(".", 1)[0]
        names = hostname if short == hostname else f"{hostname} {short}"
        wanted.insert(0, f"{address} {names}  {MARK}")
    try:
        with open(HOSTS, encoding="utf-8") as handle:
            current = handle.read().splitlines()
    except FileNotFoundError:
        current = ["127.0.0.1 localhost"]
    kept = [line for line in current if not line.endswith(MARK)]
    lines = kept + wanted
    if lines != current:
        write_atomic(HOSTS, "\n".join(lines) + "\n", 0o644)


def sync_once(state: dict[str, object]) -> None:
    """Apply one metadata state."""
    apply_users(desired_users(state))
    apply_hosts(str(state["hostname"]), str(state["ip"]))


def daemon() -> int:
    """Poll metadata and apply it whenever it changes (and at start)."""
    applied = None
    failing = False
    while True:
        try:
            state = fetch_state()
            digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
            if digest != applied:
                sync_once(state)
                applied = digest
                log("applied metadata")
            failing = False
        except (MetadataError, OSError, subprocess.CalledProcessError) as exc:
            if not failing:
                log(f"metadata sync failed, retrying: {exc}")
            failing = True
        time.sleep(POLL_SECONDS)


def sync() -> int:
    """One pass."""
    sync_once(fetch_state())
    return 0


def wait_for_attributes(seconds: float) -> dict[str, str]:
    """Instance attributes, retried until the metadata server answers or seconds pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fetch_attributes("instance")
        except MetadataError as exc:
            if time.monotonic() > deadline:
                raise
            log(f"waiting for the metadata server: {exc}")
            time.sleep(1)


def startup() -> int:
    """Run the startup-script attribute once per boot, logging to the journal and STARTUP_LOG."""
    done = f"{RUN_DIR}/startup-script.done"
    if os.path.exists(done):
        log("startup-script already ran in this boot")
        return 0
    try:
        script = wait_for_attributes(300).get("startup-script", "")
    except MetadataError as exc:
        log(f"no startup-script: the metadata server did not answer: {exc}")
        return 1
    if not script.strip():
        log("no startup-script in metadata")
        write_atomic(done, "none\n", 0o644)
        return 0
    path = f"{RUN_DIR}/startup-script"
    write_atomic(path, script, 0o700)
    argv = [path] if script.startswith("#!") else ["/bin/bash", path]
    with open(STARTUP_LOG, "a", encoding="utf-8") as out:
        def emit(line: str) -> None:
            stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
            out.write(f"{stamp} startup-script: {line}\n")
            out.flush()
            log(f"startup-script: {line}")
        emit("starting")
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd="/", text=True, errors="replace") as proc:
            for line in proc.stdout:
                emit(line.rstrip("\n"))
            status = proc.wait()
        emit(f"exit status {status}")
    write_atomic(done, f"{status}\n", 0o644)
    return 0


def main(argv: list[str]) -> int:
    """Dispatch the subcommand."""
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
    commands = {"daemon": daemon, "sync": sync, "startup": startup}
    if len(argv) != 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
