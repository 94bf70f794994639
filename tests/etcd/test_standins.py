# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's control-plane stand-ins (tests/lab/standins) against a real etcd 3.4 with TLS, used by the real kubectl.

Certificates and kubeconfigs come from the collection's replica_pki module, as
the roles make them. Every process started here is killed by PID at the end.
"""

from __future__ import annotations

import ast
import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import time
import typing as t

import jinja2
import pytest

from conftest import KUBECTL, REPO, REPORT, run_module
from etcd_cluster import HOST, Cluster, free_port, post

STANDINS = os.path.join(REPO, "tests", "lab", "standins")
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
VERSION = "v1.36.0-kubeha-lab-standin"
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"


# -- certificates and kubeconfigs from replica_pki ---------------------------------------------

class ControlPlanePki(t.NamedTuple):
    directory: str
    ca: dict[str, t.Any]
    leaves: dict[str, dict[str, t.Any]]
    files: dict[str, str]


def _write(path: str, data: str, mode: int = 0o600) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def _replica_pki(args: dict[str, t.Any]) -> dict[str, t.Any]:
    result = run_module("replica_pki", dict(args, replica={"name": "standin-master", "internal_ip": HOST}), diff=False)
    assert not result.get("failed"), result.get("msg")
    return result


@pytest.fixture(scope="module", name="cp")
def control_plane_pki(tmp_path_factory: t.Any) -> ControlPlanePki:
    """The cluster CA, front-proxy CA, service-account keys and a replica's control-plane certificates."""
    directory = str(tmp_path_factory.mktemp("control-plane-pki"))
    result = _replica_pki({"create_ca": True, "leaves": [
        "apiserver", "apiserver-kubelet-client", "front-proxy-client", "controller-manager", "scheduler",
        "cloud-controller-manager"]})
    ca, leaves = result["ca"], result["leaves"]
    files = {
        "ca": _write(os.path.join(directory, "ca.crt"), ca["cluster"]["cert"], 0o644),
        "ca-key": _write(os.path.join(directory, "ca.key"), ca["cluster"]["key"]),
        "front-proxy-ca": _write(os.path.join(directory, "front-proxy-ca.crt"), ca["front_proxy"]["cert"], 0o644),
        "sa-key": _write(os.path.join(directory, "sa.key"), ca["service_account"]["key"]),
        "sa-pub": _write(os.path.join(directory, "sa.pub"), ca["service_account"]["public"], 0o644),
    }
    for leaf in leaves:
        files[leaf + ".crt"] = _write(os.path.join(directory, leaf + ".crt"), leaves[leaf]["cert"], 0o644)
        files[leaf + ".key"] = _write(os.path.join(directory, leaf + ".key"), leaves[leaf]["key"])
    return ControlPlanePki(directory, ca, leaves, files)


def kubeconfigs(cp: ControlPlanePki, directory: str, port: int) -> dict[str, str]:
    """The kubeconfigs replica_pki writes (embedded data) for the controller-manager, the scheduler and the
    cloud-controller-manager, as files."""
    current = {name: {"cert": leaf["cert"], "key": leaf["key"]} for name, leaf in cp.leaves.items()}
    result = _replica_pki({"ca": cp.ca, "current": current,
                           "leaves": ["controller-manager", "scheduler", "cloud-controller-manager"],
                           "apiserver_url": "https://%s:%d" % (HOST, port)})
    assert result["changed_leaves"] == []
    return {name: _write(os.path.join(directory, "%s-%d.kubeconfig" % (name, port)), text)
            for name, text in result["kubeconfigs"].items()}


def admin_kubeconfig(cp: ControlPlanePki, directory: str, port: int) -> str:
    """A kubeconfig with file paths (the other form kubectl reads), for a system:masters client certificate."""
    return _write(os.path.join(directory, "admin-%d.kubeconfig" % port), "\n".join([
        "apiVersion: v1", "kind: Config", "preferences: {}", "clusters:", "- cluster:",
        "    certificate-authority: %s" % cp.files["ca"], "    server: https://%s:%d" % (HOST, port),
        "  name: lab", "contexts:", "- context:", "    cluster: lab", "    user: admin  # a comment",
        "  name: admin@lab", "current-context: admin@lab", "users:", "- name: admin", "  user:",
        "    client-certificate: %s" % cp.files["apiserver-kubelet-client.crt"],
        "    client-key: '%s'" % cp.files["apiserver-kubelet-client.key"], ""]))


# -- processes ---------------------------------------------------------------------------------

class Processes:
    """Stand-ins started by a test; all killed by PID at teardown."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.started: list[tuple[subprocess.Popen[bytes], str]] = []

    def start(self, binary: str, args: list[str], name: str = "") -> subprocess.Popen[bytes]:
        log = os.path.join(self.directory, "%s-%d.log" % (name or binary, len(self.started)))
        with open(log, "wb") as handle:
            process = subprocess.Popen([os.path.join(STANDINS, binary)] + args,  # pylint: disable=consider-using-with
                                       stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.started.append((process, log))
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        for candidate, path in self.started:
            if candidate is process:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    return handle.read()
        raise KeyError(process.pid)

    def close(self) -> None:
        for process, _log in self.started:
            if process.poll() is None:
                process.kill()
        for process, _log in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(name="procs")
def processes_fixture(tmp_path: t.Any, request: t.Any) -> t.Iterator[Processes]:
    processes = Processes(str(tmp_path))
    try:
        yield processes
    finally:
        processes.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for process, path in processes.started:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    lines = handle.readlines()[-40:]
                print("---- %s (pid %d) ----\n%s" % (os.path.basename(path), process.pid, "".join(lines)))


def run(binary: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a stand-in; its stderr with klog's quoting undone (err="... \\"x\\" ..." reads ... "x" ...)."""
    answer = subprocess.run([os.path.join(STANDINS, binary)] + list(args), capture_output=True, text=True,
                            timeout=timeout, check=False)
    answer.stderr = answer.stderr.replace('\\"', '"')
    return answer


def wait_for(condition: t.Callable[[], t.Any], timeout: float, what: str, interval: float = 0.1) -> t.Any:
    deadline = time.monotonic() + timeout
    last: t.Any = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
            last = value
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError("%s not within %ss (last: %r)" % (what, timeout, last))


# -- HTTPS -------------------------------------------------------------------------------------

class Answer(t.NamedTuple):
    status: int
    body: bytes
    peer: bytes

    def json(self) -> t.Any:
        return json.loads(self.body)


def https(port: int, path: str, cp: ControlPlanePki | None = None, cert: str | None = None,
          method: str = "GET", body: t.Any = None, headers: dict[str, str] | None = None) -> Answer:
    """One request on a new connection; the CA is the cluster's (or none: no verification)."""
    if cp is not None:
        context = ssl.create_default_context(cafile=cp.files["ca"])
        if cert:
            context.load_cert_chain(cp.files[cert + ".crt"], cp.files[cert + ".key"])
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(HOST, port, context=context, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data,
                           headers=dict({"Content-Type": "application/json"}, **(headers or {})))
        answer = connection.getresponse()
        peer = connection.sock.getpeercert(binary_form=True)
        return Answer(answer.status, answer.read(), peer)
    finally:
        connection.close()


# -- the API server ----------------------------------------------------------------------------

def apiserver_args(cp: ControlPlanePki, cluster: Cluster, port: int, *extra: str) -> list[str]:
    """Every flag the control_plane role gives kube-apiserver, in both --flag=value and --flag value forms."""
    pki = cluster.pki
    servers = ",".join(m.client_url for m in cluster.members.values())
    files = cp.files
    return [
        "--advertise-address=%s" % HOST, "--bind-address", HOST, "--secure-port=%d" % port,
        "--etcd-servers", servers, "--etcd-servers-overrides=/events#%s" % servers.replace(",", ";"),
        "--etcd-cafile=%s" % pki.ca, "--etcd-certfile=%s" % pki.client_cert, "--etcd-keyfile", pki.client_key,
        "--tls-cert-file=%s" % files["apiserver.crt"], "--tls-private-key-file", files["apiserver.key"],
        "--client-ca-file=%s" % files["ca"],
        "--service-account-key-file=%s" % files["sa-pub"],
        "--service-account-signing-key-file", files["sa-key"],
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--kubelet-client-certificate=%s" % files["apiserver-kubelet-client.crt"],
        "--kubelet-client-key=%s" % files["apiserver-kubelet-client.key"],
        "--requestheader-client-ca-file=%s" % files["front-proxy-ca"],
        "--proxy-client-cert-file=%s" % files["front-proxy-client.crt"],
        "--proxy-client-key-file=%s" % files["front-proxy-client.key"],
        "--requestheader-allowed-names=front-proxy-client", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group", "--requestheader-username-headers=X-Remote-User",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,NodeRestriction,ResourceQuota",
        "--allow-privileged=true", "--endpoint-reconciler-type=lease", "--storage-backend=etcd3", "--v=2",
        "--profiling=false", "--anonymous-auth",
        # Known to kube-apiserver, not implemented by the stand-in: accepted and ignored.
        "--audit-log-maxage=30", "--feature-gates=kube:AllAlpha=false", "--event-ttl", "1h",
    ] + list(extra)


def start_apiserver(procs: Processes, cp: ControlPlanePki, cluster: Cluster, *extra: str,
                    port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = port or free_port()
    process = procs.start("kube-apiserver", apiserver_args(cp, cluster, port, *extra))

    def serving() -> bool:
        assert process.poll() is None, "kube-apiserver exited %s:\n%s" % (process.returncode, procs.log(process))
        return https(port, "/livez", cp, "apiserver-kubelet-client").status == 200

    wait_for(serving, 20, "kube-apiserver serving /livez")
    # Ready once it has made the system namespaces and the cluster-admin binding, as kube-apiserver's hooks.
    wait_for(lambda: https(port, "/readyz/poststarthook/rbac/bootstrap-roles", cp, "apiserver-kubelet-client").status
             == 200, 20, "kube-apiserver's system objects")
    return process, port


def lease(name: str, holder: str = "someone") -> dict[str, t.Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}}


# -- tests -------------------------------------------------------------------------------------

def test_scripts_are_marked_standins_and_report_the_version():
    for binary in BINARIES:
        path = os.path.join(STANDINS, binary)
        assert os.access(path, os.X_OK), path
        with open(path, encoding="utf-8") as handle:
            docstring = ast.get_docstring(ast.parse(handle.read())) or ""
        first = docstring.splitlines()[0]
        assert "kubeha.gce lab stand-in" in first and "NOT Kubernetes" in first, first
        answer = run(binary, "--version")
        assert answer.returncode == 0 and answer.stdout == "Kubernetes %s\n" % VERSION, answer


def test_command_lines_are_checked_as_the_real_binaries_check_them(cp, tmp_path):
    answer = run("kube-apiserver", "--etcd-servers=https://127.0.0.1:2379", "--no-such-flag=1")
    assert answer.returncode == 1 and "Error: unknown flag: --no-such-flag" in answer.stderr, answer
    # A typo in a unit file fails in the lab as it does for real.
    answer = run("kube-scheduler", "--kubeconfig=/x", "--leader-elect-lease-duraton=15s")
    assert answer.returncode == 1 and "Error: unknown flag: --leader-elect-lease-duraton" in answer.stderr
    answer = run("kube-controller-manager", "-x")
    assert answer.returncode == 1 and "Error: unknown shorthand flag: 'x' in -x" in answer.stderr
    # Values are typed as pflag types them; a bool flag takes no separate argument.
    answer = run("kube-apiserver", "--secure-port=abc")
    assert answer.returncode == 1 and 'invalid argument "abc" for "--secure-port" flag' in answer.stderr
    answer = run("kube-scheduler", "--leader-elect-lease-duration=15")
    assert answer.returncode == 1 and 'time: missing unit in duration "15"' in answer.stderr
    answer = run("kube-scheduler", "--kubeconfig=/x", "--leader-elect", "false")
    assert answer.returncode == 1 and '"kube-scheduler" does not take any arguments, got ["false"]' in answer.stderr
    # Required flags and files, named in the error.
    answer = run("kube-apiserver", "--secure-port=6443")
    assert answer.returncode == 1
    for phrase in ("--etcd-servers must be specified", "service-account-issuer is a required flag",
                   "--tls-cert-file is required", "--service-cluster-ip-range is required"):
        assert phrase in answer.stderr, answer.stderr
    missing = str(tmp_path / "nowhere" / "apiserver.crt")
    answer = run("kube-apiserver", *[a.replace(cp.files["apiserver.crt"], missing) for a in [
        "--etcd-servers=https://127.0.0.1:1", "--tls-cert-file=%s" % cp.files["apiserver.crt"],
        "--tls-private-key-file=%s" % cp.files["apiserver.key"], "--client-ca-file=%s" % cp.files["ca"],
        "--service-account-key-file=%s" % cp.files["sa-pub"],
        "--service-account-signing-key-file=%s" % cp.files["sa-key"], "--service-account-issuer=https://k",
        "--service-cluster-ip-range=10.0.0.0/24"]])
    assert answer.returncode == 1 and "--tls-cert-file: open %s: no such file or directory" % missing in answer.stderr
    # The serving key must match the serving certificate.
    answer = run("kube-apiserver", "--etcd-servers=https://127.0.0.1:1", "--tls-cert-file=%s" % cp.files["apiserver.crt"],
                 "--tls-private-key-file=%s" % cp.files["scheduler.key"], "--client-ca-file=%s" % cp.files["ca"],
                 "--service-account-key-file=%s" % cp.files["sa-pub"],
                 "--service-account-signing-key-file=%s" % cp.files["sa-key"], "--service-account-issuer=https://k",
                 "--service-cluster-ip-range=10.0.0.0/24")
    assert answer.returncode == 1 and "unable to load the key pair" in answer.stderr, answer.stderr
    answer = run("kube-apiserver", "--etcd-servers=https://127.0.0.1:1", "--enable-admission-plugins=PersistentVolumeLabel")
    assert answer.returncode == 1 and 'enable-admission-plugins plugin "PersistentVolumeLabel" is unknown' in answer.stderr
    answer = run("kube-scheduler", "--leader-elect=true")
    assert answer.returncode == 1 and "--kubeconfig is required" in answer.stderr
    answer = run("kube-controller-manager", "--kubeconfig=%s" % cp.files["ca"], "--cloud-provider=gce")
    assert answer.returncode == 1 and "built-in cloud providers are disabled" in answer.stderr
    answer = run("kube-controller-manager", "--kubeconfig=%s" % missing)
    assert answer.returncode == 1 and "--kubeconfig: open %s" % missing in answer.stderr
    answer = run("kube-scheduler", "--kubeconfig=%s" % cp.files["ca"], "--leader-elect-renew-deadline=20s")
    assert answer.returncode == 1 and "leaseDuration must be greater than renewDeadline" in answer.stderr


def test_apiserver_health_follows_etcd(etcd, cp, procs):
    cluster = etcd.new(["a"])
    process, port = start_apiserver(procs, cp, cluster)
    live = https(port, "/livez", cp)
    assert (live.status, live.body) == (200, b"ok")
    ready = https(port, "/readyz?verbose", cp)
    assert ready.status == 200, ready
    text = ready.body.decode()
    assert text.startswith("[+]ping ok\n") and "[+]etcd ok\n" in text and text.endswith("readyz check passed\n")
    version = https(port, "/version", cp).json()
    assert version["gitVersion"] == VERSION and version["major"] == "1" and version["minor"] == "36"

    cluster.kill("a")
    down = https(port, "/readyz?verbose", cp)
    assert down.status == 500 and "[-]etcd failed: reason withheld\n" in down.body.decode(), down
    assert down.body.decode().endswith("readyz check failed\n")
    assert https(port, "/readyz", cp).status == 500 and https(port, "/healthz", cp).status == 500
    assert https(port, "/readyz?exclude=etcd&exclude=etcd-readiness", cp).status == 200
    live = https(port, "/livez?verbose", cp)
    assert live.status == 200 and live.body.decode().endswith("livez check passed\n"), live
    assert "etcd endpoint health check failed" in procs.log(process)

    member = cluster.members["a"]
    cluster.start("a", "a=%s" % member.peer_url, "new")
    cluster.wait_ready("a")
    started = time.monotonic()
    wait_for(lambda: https(port, "/readyz", cp).status == 200, 20, "/readyz 200 after etcd came back")
    REPORT.append("kube-apiserver stand-in: /readyz ok %.1fs after etcd answered again" % (time.monotonic() - started))
    assert "etcd endpoint is healthy" in procs.log(process)
    assert process.poll() is None


def test_apiserver_stores_objects_in_etcd_with_optimistic_concurrency(etcd, cp, procs):
    cluster = etcd.new(["a"])
    port = start_apiserver(procs, cp, cluster)[1]
    path = LEASE_PATH + "/demo"

    # Anonymous users may read the health endpoints only; a wrong credential is refused outright.
    anonymous = https(port, path, cp)
    assert anonymous.status == 403 and anonymous.json()["reason"] == "Forbidden", anonymous
    assert 'User "system:anonymous" cannot get resource "leases"' in anonymous.json()["message"]
    assert https(port, path, cp, headers={"Authorization": "Bearer nope"}).json() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
        "reason": "Unauthorized", "code": 401}

    admin = "apiserver-kubelet-client"  # O=system:masters
    created = https(port, LEASE_PATH, cp, admin, "POST", lease("demo"))
    assert created.status == 201, created
    obj = created.json()
    meta = obj["metadata"]
    assert meta["name"] == "demo" and meta["namespace"] == "kube-system" and meta["uid"] and meta["creationTimestamp"]
    first_version = meta["resourceVersion"]
    again = https(port, LEASE_PATH, cp, admin, "POST", lease("demo"))
    assert again.status == 409 and again.json()["reason"] == "AlreadyExists", again
    assert again.json()["message"] == 'leases.coordination.k8s.io "demo" already exists'

    got = https(port, path, cp, "scheduler")
    assert got.status == 200 and got.json() == obj
    # It is in etcd, under the key Kubernetes uses, and resourceVersion is its mod_revision.
    kvs = post(cluster.members["a"].client_url, "/v3/kv/range",
               {"key": base64.b64encode(b"/registry/leases/kube-system/demo").decode()}, cluster.context())["kvs"]
    assert kvs[0]["mod_revision"] == first_version
    assert json.loads(base64.b64decode(kvs[0]["value"]))["spec"]["holderIdentity"] == "someone"

    changed = dict(obj, spec=dict(obj["spec"], holderIdentity="me"))
    updated = https(port, path, cp, admin, "PUT", changed)
    assert updated.status == 200, updated
    assert int(updated.json()["metadata"]["resourceVersion"]) > int(first_version)
    assert updated.json()["metadata"]["uid"] == meta["uid"]
    stale = https(port, path, cp, admin, "PUT", dict(changed, spec=dict(obj["spec"], holderIdentity="you")))
    assert stale.status == 409 and stale.json()["reason"] == "Conflict", stale
    assert "the object has been modified" in stale.json()["message"]
    assert https(port, path, cp, admin).json()["spec"]["holderIdentity"] == "me"

    listed = https(port, LEASE_PATH, cp, admin).json()
    assert listed["kind"] == "LeaseList" and [i["metadata"]["name"] for i in listed["items"]] == ["demo"]
    assert https(port, "/apis/coordination.k8s.io/v1beta1/namespaces/kube-system/leases", cp, admin).status == 404

    deleted = https(port, path, cp, admin, "DELETE")
    assert deleted.status == 200 and deleted.json()["status"] == "Success", deleted
    gone = https(port, path, cp, admin)
    assert gone.status == 404 and gone.json()["message"] == 'leases.coordination.k8s.io "demo" not found'
    assert https(port, path, cp, admin, "DELETE").status == 404

    # Without anonymous authentication even the health endpoints need a client certificate.
    closed = start_apiserver(procs, cp, cluster, "--anonymous-auth=false")[1]
    assert https(closed, "/readyz", cp).status == 401
    assert https(closed, "/readyz", cp, admin).status == 200


def test_apiserver_serves_a_replaced_certificate_without_restarting(etcd, cp, procs, tmp_path):
    cluster = etcd.new(["a"])
    serving = {"cert": str(tmp_path / "apiserver.crt"), "key": str(tmp_path / "apiserver.key")}
    _write(serving["cert"], cp.leaves["apiserver"]["cert"], 0o644)
    _write(serving["key"], cp.leaves["apiserver"]["key"])
    process, port = start_apiserver(procs, cp, cluster, "--tls-cert-file", serving["cert"],
                                    "--tls-private-key-file", serving["key"])
    before = https(port, "/livez", cp).peer
    assert before == ssl.PEM_cert_to_DER_cert(cp.leaves["apiserver"]["cert"])

    current = {"apiserver": {"cert": cp.leaves["apiserver"]["cert"], "key": cp.leaves["apiserver"]["key"]}}
    result = run_module("replica_pki", {"ca": cp.ca, "current": current, "leaves": ["apiserver"], "replica": {
        "name": "standin-master", "internal_ip": HOST, "external_ip": "203.0.113.7"}}, diff=False)
    assert result["changed_leaves"] == ["apiserver"], result.get("msg")
    new = result["leaves"]["apiserver"]

    # The certificate first, the key later (as two tasks write them): the old pair is served meanwhile.
    _write(serving["cert"] + ".tmp", new["cert"], 0o644)
    os.replace(serving["cert"] + ".tmp", serving["cert"])
    assert https(port, "/livez", cp).peer == before
    _write(serving["key"] + ".tmp", new["key"])
    os.replace(serving["key"] + ".tmp", serving["key"])
    after = https(port, "/livez", cp)
    assert after.status == 200 and after.peer == ssl.PEM_cert_to_DER_cert(new["cert"]) != before
    assert process.poll() is None and "Loaded a new cert/key pair" in procs.log(process)


def scheduler_args(kubeconfig: str, port: int, *extra: str) -> list[str]:
    """Every flag the control_plane role gives kube-scheduler, with short leader-election times."""
    return ["--kubeconfig=%s" % kubeconfig, "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig=%s" % kubeconfig, "--leader-elect=true",
            "--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
            "--leader-elect-retry-period=500ms", "--bind-address=%s" % HOST, "--secure-port=%d" % port,
            "--v=2", "--profiling=false"] + list(extra)


def read_lease(port: int, cp: ControlPlanePki, name: str) -> dict[str, t.Any]:
    answer = https(port, "%s/%s" % (LEASE_PATH, name), cp, "apiserver-kubelet-client")
    return answer.json() if answer.status == 200 else {}


def test_scheduler_standins_elect_one_leader_and_fail_over(etcd, cp, procs, tmp_path):
    cluster = etcd.new(["a"])
    port = start_apiserver(procs, cp, cluster)[1]
    config = kubeconfigs(cp, str(tmp_path), port)["scheduler"]
    health = [free_port(), free_port()]
    schedulers = [procs.start("kube-scheduler", scheduler_args(config, p), "scheduler") for p in health]

    def holder() -> str:
        return read_lease(port, cp, "kube-scheduler").get("spec", {}).get("holderIdentity", "")

    first = wait_for(holder, 10, "a kube-scheduler lease holder")
    time.sleep(1.5)
    leaders = [s for s in schedulers if "successfully acquired lease kube-system/kube-scheduler" in procs.log(s)]
    assert len(leaders) == 1, [procs.log(s) for s in schedulers]
    held = read_lease(port, cp, "kube-scheduler")["spec"]
    assert held["holderIdentity"] == first and held["leaseDurationSeconds"] == 3
    assert first.split("_", 1)[0] and len(first.split("_", 1)[1]) == 36  # hostname_uuid
    for health_port in health:  # HTTPS, with the kubeconfig's client certificate
        assert https(health_port, "/healthz").body == b"ok"

    leader = leaders[0]
    other = schedulers[1 - schedulers.index(leader)]
    renewed = read_lease(port, cp, "kube-scheduler")["spec"]["renewTime"]
    wait_for(lambda: read_lease(port, cp, "kube-scheduler")["spec"]["renewTime"] != renewed, 3, "a renewal")
    leader.send_signal(signal.SIGKILL)
    leader.wait(timeout=10)
    killed = time.monotonic()
    second = wait_for(lambda: holder() not in ("", first) and holder(), 10, "a new holder")
    took = time.monotonic() - killed
    REPORT.append("kube-scheduler stand-in: new leader %.1fs after SIGKILL (lease 3s, retry 0.5s)" % took)
    # As with client-go: the candidate sees the last renewal up to one jittered retry period (0.5s * 2.2) late,
    # waits the lease duration from then, and tries again up to one jittered retry period later; 3 s more for
    # a loaded 2-core host (reading the lease to see the new holder is part of what is timed).
    assert took <= 3 + 2 * 0.5 * 2.2 + 3
    assert "successfully acquired lease kube-system/kube-scheduler" in procs.log(other)
    spec = read_lease(port, cp, "kube-scheduler")["spec"]
    assert spec["holderIdentity"] == second and spec["leaseTransitions"] == 1
    assert other.poll() is None


def test_controller_manager_exits_when_it_loses_its_lease(etcd, cp, procs, tmp_path):
    cluster = etcd.new(["a"])
    port = start_apiserver(procs, cp, cluster)[1]
    config = kubeconfigs(cp, str(tmp_path), port)["controller-manager"]
    cloud_config = _write(str(tmp_path / "gce.conf"), "[global]\nmultizone = true\n", 0o644)
    manager = procs.start("kube-controller-manager", [
        "--kubeconfig", config, "--authentication-kubeconfig=%s" % config, "--authorization-kubeconfig=%s" % config,
        "--leader-elect=true", "--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=500ms", "--cluster-name=standin", "--cloud-provider=external",
        "--cloud-config=%s" % cloud_config, "--service-account-private-key-file=%s" % cp.files["sa-key"],
        "--root-ca-file=%s" % cp.files["ca"], "--cluster-signing-cert-file=%s" % cp.files["ca"],
        "--cluster-signing-key-file=%s" % cp.files["ca-key"], "--use-service-account-credentials=true",
        "--controllers=*,bootstrapsigner,tokencleaner", "--bind-address=%s" % HOST, "--secure-port=%d" % free_port(),
        "--service-cluster-ip-range=10.0.0.0/24", "--v=2", "--profiling=false"])
    wait_for(lambda: read_lease(port, cp, "kube-controller-manager").get("spec", {}).get("holderIdentity"), 10,
             "kube-controller-manager holding its lease")
    assert "successfully acquired lease kube-system/kube-controller-manager" in procs.log(manager)

    # Someone else takes the lease: the stand-in cannot renew, and exits 1 as the real one does.
    def steal() -> bool:
        current = read_lease(port, cp, "kube-controller-manager")
        current["spec"].update(holderIdentity="elsewhere_1", renewTime=current["spec"]["renewTime"])
        path = "%s/kube-controller-manager" % LEASE_PATH
        return https(port, path, cp, "apiserver-kubelet-client", "PUT", current).status == 200

    wait_for(steal, 5, "taking the lease over")
    assert manager.wait(timeout=10) == 1
    log = procs.log(manager)
    assert "failed to renew lease kube-system/kube-controller-manager" in log and '"leaderelection lost"' in log


def kubectl_on_a_new_apiserver(etcd, cp, procs, tmp_path) -> tuple[t.Callable[..., subprocess.CompletedProcess[str]], t.Any]:
    """The real kubectl, as kubernetes-super-admin (system:masters), for a stand-in kube-apiserver started on a new
    one-member etcd; and that etcd."""
    cluster = etcd.new(["a"])
    port = start_apiserver(procs, cp, cluster)[1]
    config = str(tmp_path / "super-admin.kubeconfig")
    written = run_module("admin_kubeconfig", {"dest": config, "server": "https://%s:%d" % (HOST, port),
                                              "cluster_name": "lab", "ca": cp.ca["cluster"], "super_admin": True})
    assert not written.get("failed"), written

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, "--kubeconfig", config, "--cache-dir", str(tmp_path / "cache")] + list(args),
                              capture_output=True, text=True, timeout=30, check=False)
    return kubectl, cluster


def test_kubectl_finds_health_version_discovery_and_the_system_namespaces(etcd, cp, procs, tmp_path):
    kubectl, cluster = kubectl_on_a_new_apiserver(etcd, cp, procs, tmp_path)

    ready = kubectl("get", "--raw", "/readyz")
    assert ready.returncode == 0 and ready.stdout == "ok", ready
    version = kubectl("version")
    assert version.returncode == 0 and "Server Version: %s" % VERSION in version.stdout, version
    # The namespaces and the cluster-admin binding that kube-apiserver creates once etcd answers.
    wait_for(lambda: kubectl("get", "namespaces", "-o", "name").stdout.split() == [
        "namespace/default", "namespace/kube-node-lease", "namespace/kube-public", "namespace/kube-system"],
        20, "the system namespaces")
    binding = json.loads(kubectl("get", "clusterrolebinding", "cluster-admin", "-o", "json").stdout)
    assert binding["subjects"][0]["name"] == "system:masters" and binding["roleRef"]["name"] == "cluster-admin"
    resources = kubectl("api-resources", "--api-group=coordination.k8s.io", "-o", "wide")
    assert resources.returncode == 0, resources
    assert resources.stdout.splitlines()[1].split() == [
        "leases", "coordination.k8s.io/v1", "true", "Lease", "create,delete,get,list,patch,update"]
    core = {line.split()[0]: line.split() for line in kubectl("api-resources", "--api-group=").stdout.splitlines()[1:]}
    assert core["configmaps"] == ["configmaps", "cm", "v1", "true", "ConfigMap"], core
    assert core["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"], core

    missing = kubectl("get", "lease", "kube-scheduler", "-n", "kube-system", "-o", "json")
    assert missing.returncode == 1
    assert missing.stderr == 'Error from server (NotFound): leases.coordination.k8s.io "kube-scheduler" not found\n'
    assert kubectl("get", "lease", "kube-scheduler", "-n", "kube-system", "--ignore-not-found").returncode == 0

    cluster.kill("a")
    down = kubectl("get", "--raw", "/readyz")
    assert down.returncode == 1 and "Error from server (InternalError)" in down.stderr, down
    assert "[-]etcd failed: reason withheld" in down.stderr


def test_kubectl_applies_creates_and_deletes_manifests(etcd, cp, procs, tmp_path):
    kubectl = kubectl_on_a_new_apiserver(etcd, cp, procs, tmp_path)[0]

    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "demo", "namespace": "kube-system"},
                "data": {"replicas": "3"}}
    path = _write(str(tmp_path / "demo.json"), json.dumps(manifest), 0o644)
    applied = kubectl("apply", "-f", path)
    assert applied.returncode == 0 and applied.stdout == "configmap/demo created\n", applied
    assert kubectl("apply", "-f", path).stdout == "configmap/demo unchanged\n"
    manifest["data"] = {"replicas": "5", "zones": "b,c"}
    _write(path, json.dumps(manifest), 0o644)
    changed = kubectl("apply", "-f", path)
    assert changed.stdout == "configmap/demo configured\n" and changed.stderr == "", changed
    obj = json.loads(kubectl("get", "configmap", "demo", "-n", "kube-system", "-o", "json").stdout)
    assert obj["data"] == {"replicas": "5", "zones": "b,c"} and obj["kind"] == "ConfigMap"
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]
    assert kubectl("get", "cm/demo", "-n", "kube-system", "-o", "jsonpath={.data.replicas}").stdout == "5"
    # A key the manifest no longer has is removed (the three-way patch's null).
    manifest["data"] = {"replicas": "5"}
    _write(path, json.dumps(manifest), 0o644)
    assert kubectl("apply", "-f", path).returncode == 0
    assert kubectl("get", "cm/demo", "-n", "kube-system", "-o", "jsonpath={.data}").stdout == '{"replicas":"5"}'
    os.unlink(path)

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    _write(str(manifests / "a.yaml"), "\n".join([
        "apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: kept", "  namespace: kube-system", "  labels:",
        "    mode: EnsureExists", "data:", "  run.sh: |", "    #!/bin/sh", "    echo hello", "---",
        "apiVersion: coordination.k8s.io/v1", "kind: Lease", "metadata:", "  name: applied",
        "  namespace: kube-system", "  labels:", "    mode: Reconcile", "spec:", "  holderIdentity: nobody", "---",
        "apiVersion: rbac.authorization.k8s.io/v1", "kind: ClusterRole", "metadata:", "  name: plain", "rules: []",
        ""]), 0o644)
    created = kubectl("create", "-f", str(manifests), "-l", "mode=EnsureExists")
    assert created.returncode == 0 and created.stdout == "configmap/kept created\n", created
    kept = json.loads(kubectl("get", "configmap", "kept", "-n", "kube-system", "-o", "json").stdout)
    assert kept["data"]["run.sh"] == "#!/bin/sh\necho hello\n"
    again = kubectl("create", "-f", str(manifests), "--selector", "mode in (EnsureExists)", "-o", "name")
    assert again.returncode == 1 and again.stderr == (
        'Error from server (AlreadyExists): error when creating "%s": configmaps "kept" already exists\n'
        % (manifests / "a.yaml")), again.stderr
    applied = kubectl("apply", "-f", str(manifests), "-R", "-l", "mode=Reconcile")
    assert applied.stdout == "lease.coordination.k8s.io/applied created\n", applied
    assert kubectl("apply", "-f", str(manifests), "-l", "!mode").stdout == \
        "clusterrole.rbac.authorization.k8s.io/plain created\n"
    table = kubectl("get", "leases", "-n", "kube-system").stdout.splitlines()
    assert table[0].split() == ["NAME", "AGE"] and table[1].split()[0] == "applied", table
    selected = kubectl("get", "configmaps,leases", "-A", "-l", "mode notin (EnsureExists)", "-o", "name")
    # notin matches objects without the label too (demo), as label selectors do.
    assert selected.stdout == "configmap/demo\nlease.coordination.k8s.io/applied\n", selected
    bad = kubectl("get", "configmaps", "-A", "-l", "mode in EnsureExists")
    assert bad.returncode == 1 and "unable to parse requirement" in bad.stderr, bad

    # A kind the server does not serve fails on its mapping, as with kube-apiserver.
    widget = _write(str(tmp_path / "widget.yaml"), "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    unknown = kubectl("apply", "-f", widget)
    assert unknown.returncode == 1 and 'no matches for kind "Widget" in version "example.com/v1"' in unknown.stderr

    deleted = kubectl("delete", "configmap", "kept", "-n", "kube-system", "--wait=false")
    assert deleted.returncode == 0 and deleted.stdout == 'configmap "kept" deleted from kube-system namespace\n', deleted
    gone = kubectl("delete", "configmap/kept", "-n", "kube-system")
    assert gone.returncode == 1 and gone.stderr == 'Error from server (NotFound): configmaps "kept" not found\n'
    assert kubectl("delete", "cm", "kept", "-n", "kube-system", "--ignore-not-found").returncode == 0
    cluster_scoped = kubectl("delete", "clusterrole", "plain", "--wait=false")
    assert cluster_scoped.stdout == 'clusterrole.rbac.authorization.k8s.io "plain" deleted\n', cluster_scoped


def test_rbac_lets_the_administrator_act_only_while_its_group_is_bound_to_cluster_admin(etcd, cp, procs, tmp_path):
    """kubernetes-admin (the kubeconfig the roles write), and the ClusterRoleBinding the roles make for its group."""
    super_admin = kubectl_on_a_new_apiserver(etcd, cp, procs, tmp_path)[0]
    server = [line.split()[-1] for line in open(str(tmp_path / "super-admin.kubeconfig"), encoding="utf-8")
              if line.strip().startswith("server:")][0]
    dest = str(tmp_path / "admin.kubeconfig")
    assert run_module("admin_kubeconfig", {"dest": dest, "server": server, "cluster_name": "lab",
                                           "ca": cp.ca["cluster"]})["changed"] is True

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, "--kubeconfig", dest, "--cache-dir", str(tmp_path / "cache")] + list(args),
                              capture_output=True, text=True, timeout=30, check=False)

    # Authenticated, allowed discovery and health, and nothing else while no binding names its group.
    assert admin("get", "--raw", "/readyz").stdout == "ok"
    denied = admin("-n", "kube-system", "get", "leases")
    assert denied.returncode == 1 and denied.stderr.endswith(
        'Error from server (Forbidden): leases.coordination.k8s.io is forbidden: User "kubernetes-admin" cannot list '
        'resource "leases" in API group "coordination.k8s.io" in the namespace "kube-system"\n'), denied.stderr

    binding = _write(str(tmp_path / "binding.json"), json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubeha:cluster-admins"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubeha:cluster-admins"}]}),
        0o644)
    assert super_admin("create", "-f", binding).returncode == 0
    allowed = admin("-n", "kube-system", "get", "leases")
    assert allowed.returncode == 0 and allowed.stderr == "No resources found in kube-system namespace.\n", allowed
    assert admin("get", "namespaces", "-o", "name").stdout.split()[0] == "namespace/default"
    # A binding to another role gives nothing here; taking the binding away takes the rights away.
    assert super_admin("delete", "clusterrolebinding", "kubeha:cluster-admins", "--wait=false").returncode == 0
    assert admin("-n", "kube-system", "get", "leases").returncode == 1


def test_a_patch_the_stand_in_cannot_merge_is_refused(etcd, cp, procs, tmp_path):
    kubectl = kubectl_on_a_new_apiserver(etcd, cp, procs, tmp_path)[0]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "kube-system"},
               "spec": {"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}}
    path = _write(str(tmp_path / "web.json"), json.dumps(service), 0o644)
    assert kubectl("apply", "-f", path).returncode == 0
    service["spec"]["ports"][1]["targetPort"] = 9443
    _write(path, json.dumps(service), 0o644)
    refused = kubectl("apply", "-f", path)
    assert refused.returncode == 1 and "the lab stand-in does not merge lists by key" in refused.stderr, refused
    stored = json.loads(kubectl("get", "service", "web", "-n", "kube-system", "-o", "json").stdout)
    assert [p["port"] for p in stored["spec"]["ports"]] == [80, 443], stored


# -- the cloud-controller-manager ----------------------------------------------------------------

TEMPLATES = os.path.join(REPO, "roles", "control_plane", "templates")


def render(template: str, **values: t.Any) -> str:
    """One of the control_plane role's templates, as the role renders it."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    environment.filters["bool"] = lambda value: str(value).lower() in ("1", "true", "yes", "on")  # ansible's
    return environment.get_template(template).render(ansible_managed="Ansible managed", **values)


def cloud_config(tmp_path: t.Any, text: str | None = None) -> str:
    """gce.conf as the control_plane role writes it (or text)."""
    if text is None:
        text = render("gce.conf.j2", control_plane_project="lab-project", control_plane_zone="europe-west1-b",
                      control_plane_network="kubeha-net", control_plane_subnetwork="kubeha-net-b",
                      control_plane_cluster_name="k", control_plane_multizone=True)
    return _write(os.path.join(str(tmp_path), "gce-%d.conf" % len(os.listdir(str(tmp_path)))), text, 0o644)


def ccm_args(kubeconfig: str, config: str, *extra: str, cp: ControlPlanePki | None = None) -> list[str]:
    """The flags the control_plane role gives the cloud-controller-manager (roles/control_plane/vars/main.yml); the CA
    files only with cp."""
    cas = ["--client-ca-file=%s" % cp.files["ca"], "--requestheader-client-ca-file=%s" % cp.files["front-proxy-ca"],
           "--requestheader-allowed-names=front-proxy-client"] if cp else []
    rest = ["--authentication-kubeconfig=%s" % kubeconfig, "--authorization-kubeconfig=%s" % kubeconfig,
            "--bind-address=%s" % HOST, "--secure-port=%d" % free_port(), "--leader-elect=true",
            "--use-service-account-credentials=true", "--cluster-name=k",
            "--controllers=*,-node-ipam-controller,-node-route-controller", "--profiling=false"]
    return ["--cloud-provider=gce", "--cloud-config=%s" % config, "--kubeconfig=%s" % kubeconfig] + cas + rest + list(extra)


def test_the_cloud_controller_manager_stand_in_reports_its_own_version():
    path = os.path.join(STANDINS, "cloud-controller-manager")
    with open(path, encoding="utf-8") as handle:
        first = (ast.get_docstring(ast.parse(handle.read())) or "").splitlines()[0]
    assert os.access(path, os.X_OK) and "kubeha.gce lab stand-in" in first and "NOT Kubernetes" in first, first
    answer = run("cloud-controller-manager", "--version")
    assert answer.returncode == 0 and answer.stdout == "Kubernetes v36.4.8-kubeha-lab-standin\n", answer


@pytest.mark.parametrize("case", ["no_provider", "unknown_controller", "external", "aws", "no_config_file",
                                  "bad_bool", "key_before_section", "blank_string", "no_zone", "node_ipam",
                                  "unknown_flag"])
def test_the_cloud_controller_manager_refuses_what_the_real_one_refuses(cp, tmp_path, case):
    kubeconfig = kubeconfigs(cp, str(tmp_path), free_port())["cloud-controller-manager"]
    args = ccm_args(kubeconfig, cloud_config(tmp_path))
    code, expected = 255, None
    if case == "no_provider":
        args = [a for a in args if not a.startswith("--cloud-provider")]
        code, expected = 1, "--cloud-provider cannot be empty"
    elif case == "unknown_controller":
        args.append("--controllers=*,-nodeipam,-cloud-node-lifecycle,-route-controller")
        code, expected = 1, '"route-controller" is not in the list of known controllers'
    elif case == "external":
        args.append("--cloud-provider=external")
        expected = "Cloud provider with name: external and configFile: %s is nil" % args[1].split("=", 1)[1]
    elif case == "aws":
        args.append("--cloud-provider=aws")
        expected = 'could not be initialized: unknown cloud provider "aws"'
    elif case == "no_config_file":
        args.append("--cloud-config=%s" % (tmp_path / "nowhere.conf"))
        expected = "Couldn't open cloud provider configuration %s" % (tmp_path / "nowhere.conf")
    elif case == "bad_bool":
        args.append("--cloud-config=%s" % cloud_config(tmp_path, "[global]\nproject-id = p\nmultizone = maybe\n"))
        expected = 'could not init cloud provider "gce": failed to parse bool `maybe`'
    elif case == "key_before_section":
        args.append("--cloud-config=%s" % cloud_config(tmp_path, "project-id = p\n[global]\n"))
        expected = 'could not init cloud provider "gce": 1:1: expected section header'
    elif case == "blank_string":
        args.append("--cloud-config=%s" % cloud_config(tmp_path, "[global]\nproject-id\n"))
        expected = "blank value not supported for type"
    elif case == "no_zone":
        # A key it does not know is ignored, as gcfg ignores it; the zone it would read from the metadata server.
        args.append("--cloud-config=%s" % cloud_config(
            tmp_path, "[global]\nproject-id = p\nnetwork-name = n\nzone = europe-west1-b\n"))
        expected = "the lab stand-in reads no metadata server: it needs local-zone in --cloud-config"
    elif case == "node_ipam":  # the default controllers, node IPAM among them, without pod CIDRs to allocate
        args = [a for a in args if not a.startswith("--controllers")]
        expected = "error running controllers: the AllocateNodeCIDRs is not enabled"
    else:
        args.append("--node-monitor-grace-period=40s")  # kube-controller-manager's, not the cloud's
        code, expected = 1, "unknown flag: --node-monitor-grace-period"
    answer = run("cloud-controller-manager", *args)
    assert answer.returncode == code and expected in answer.stderr, answer.stderr


def test_the_cloud_controller_manager_leads_once_its_role_is_bound(etcd, cp, procs, tmp_path):
    cluster = etcd.new(["a"])
    port = start_apiserver(procs, cp, cluster)[1]
    kubeconfig = kubeconfigs(cp, str(tmp_path), port)["cloud-controller-manager"]
    # Without the CA files it reads them from the API at start, which its user may not do yet: it exits.
    answer = run("cloud-controller-manager", *ccm_args(kubeconfig, cloud_config(tmp_path)))
    assert answer.returncode == 1, answer.stderr
    assert ('unable to load configmap based request-header-client-ca-file: configmaps '
            '"extension-apiserver-authentication" is forbidden: User "system:cloud-controller-manager"') in answer.stderr
    manager = procs.start("cloud-controller-manager", ccm_args(
        kubeconfig, cloud_config(tmp_path), "--leader-elect-lease-duration=3s", "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=500ms", "--v=2", cp=cp))
    # Its ClusterRole is no API server's own: without the binding it may not even read its lease.
    wait_for(lambda: "forbidden" in procs.log(manager), 10, "the lease refused to system:cloud-controller-manager")
    assert manager.poll() is None and read_lease(port, cp, "cloud-controller-manager") == {}
    log = procs.log(manager)
    assert "GCE cloud provider initialized" in log and 'project="lab-project"' in log, log
    assert 'zone="europe-west1-b"' in log and 'multizone="true"' in log, log
    assert 'enabled="cloud-node-controller,cloud-node-lifecycle-controller,service-lb-controller"' in log, log

    # The role's addon, applied by the real kubectl as the addon manager applies it.
    addon = _write(str(tmp_path / "kubeha-cloud-controller-manager.yaml"),
                   render("kubeha-cloud-controller-manager.yaml.j2"), 0o600)
    applied = subprocess.run([KUBECTL, "--kubeconfig", admin_kubeconfig(cp, str(tmp_path), port), "--cache-dir",
                              str(tmp_path / "cache"), "apply", "-f", addon], capture_output=True, text=True,
                             timeout=60, check=False)
    assert applied.returncode == 0, applied.stderr
    for made in ("clusterrole.rbac.authorization.k8s.io/system:cloud-controller-manager created",
                 "clusterrolebinding.rbac.authorization.k8s.io/system:cloud-controller-manager created",
                 "rolebinding.rbac.authorization.k8s.io/kubeha:cloud-controller-manager:authentication-reader created",
                 "clusterrolebinding.rbac.authorization.k8s.io/gce:cloud-provider created"):
        assert made in applied.stdout, applied.stdout
    holder = wait_for(lambda: read_lease(port, cp, "cloud-controller-manager").get("spec", {}).get("holderIdentity"),
                      10, "the cloud-controller-manager holding its lease")
    assert holder.startswith(os.uname().nodename) and manager.poll() is None
    # It logs the lease after the API server took it: the line may follow the lease by a moment.
    wait_for(lambda: "successfully acquired lease kube-system/cloud-controller-manager" in procs.log(manager), 10,
             "the cloud-controller-manager logging its lease")
    # What its ClusterRole allows, and no more: another component's lease is not its to take.
    own = https(port, "%s/cloud-controller-manager" % LEASE_PATH, cp, "cloud-controller-manager")
    other = https(port, "%s/kube-scheduler" % LEASE_PATH, cp, "cloud-controller-manager", "PUT",
                  lease("kube-scheduler", "cloud-controller-manager"))
    assert own.status == 200 and other.status == 403, (own, other)
    assert 'User "system:cloud-controller-manager" cannot update resource "leases"' in other.json()["message"]
