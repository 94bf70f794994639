# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import time
from unittest import mock

from ansible.module_utils import basic

from ansible_collections.kubeha.gce.plugins.module_utils import _units
from ansible_collections.kubeha.gce.plugins.modules import replica_units_info
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import run_module


def exec_start(argv):
    return ("ExecStart={ path=%s ; argv[]=%s ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; "
            "code=(null) ; status=0/0 }" % (argv[0], " ".join(argv)))


def block(unit, state, started_ago, *argvs, reload_needed=False):
    """A unit's block as systemctl show prints it (its own order of properties; one ExecStart= line per command)."""
    monotonic = int((time.monotonic() - started_ago) * 1e6) if started_ago is not None else 0
    lines = ["Id=%s.service" % unit, "MainPID=%d" % (os.getpid() if state == "active" else 0),
             "NeedDaemonReload=%s" % ("yes" if reload_needed else "no"),
             "FragmentPath=/etc/systemd/system/%s.service" % unit,
             "ExecMainStartTimestampMonotonic=%d" % monotonic] + [exec_start(a) for a in argvs]
    lines.append("ActiveState=%s" % state)
    return "\n".join(lines) + "\n"


def written(path, ago):
    path.write_text("x\n")
    moment = time.time() - ago
    os.utime(str(path), (moment, moment))
    return str(path)


def run(tmp_path, units, out, reloaded=None, rc=0, running=None):
    calls = []

    def run_command(_self, argv, **_kwargs):
        calls.append(argv)
        return rc, out if rc == 0 else "", "" if rc == 0 else "Failed to connect to bus"

    args = {"units": units}
    if reloaded is not None:
        args["reloaded"] = reloaded
    # The process runs the executable the unit names, unless the test says otherwise.
    with mock.patch.object(basic.AnsibleModule, "run_command", run_command), \
            mock.patch.object(_units, "_executable", lambda pid: running):
        result = run_module(replica_units_info.main, args, auth=False)
    return result, calls


def tree(tmp_path):
    return {
        "binary": written(tmp_path / "kube-apiserver", 3600),
        "old": written(tmp_path / "etcd-client.crt", 3600),
        "new": written(tmp_path / "front-proxy-client.crt", 5),
        "serving": written(tmp_path / "apiserver.crt", 5),
        "kubeconfig": written(tmp_path / "scheduler.conf", 5),
        "audit": written(tmp_path / "audit.log", 1),
    }


def apiserver(files, started_ago=60, **kwargs):
    return block("kube-apiserver", "active", started_ago, [
        files["binary"], "--etcd-certfile=" + files["old"], "--proxy-client-cert-file=" + files["new"],
        "--tls-cert-file=" + files["serving"], "--secure-port=443", "--audit-log-path=" + files["audit"],
        "--etcd-servers-overrides=/events#https://127.0.0.1:4002",
        "--service-account-key-file=%s,%s" % (files["old"], files["old"] + ".absent")], **kwargs)


def test_services_that_read_a_file_written_since_they_started_are_stale(tmp_path):
    files = tree(tmp_path)
    out = "\n".join([apiserver(files), block("kube-scheduler", "inactive", None, [files["binary"], "--kubeconfig=" + files["kubeconfig"]]),
                     block("kube-controller-manager", "active", 1, [files["binary"], "--kubeconfig=" + files["kubeconfig"]])])
    result, calls = run(tmp_path, ["kube-apiserver", "kube-scheduler", "kube-controller-manager"], out,
                        running=files["binary"])
    assert calls == [["systemctl", "show", "--property=" + _units.PROPERTIES, "--",
                      "kube-apiserver.service", "kube-scheduler.service", "kube-controller-manager.service"]]
    assert result["changed"] is False
    assert result["stale"] == ["kube-apiserver"]
    entry = result["units"]["kube-apiserver"]
    # The executable first; the serving certificate (reloaded by default), a written audit log, a port, a value that
    # is not a path and a missing file are not counted.
    assert entry["files"] == [files["binary"], files["old"], files["new"]]
    assert entry["newer"] == [files["new"]]
    assert entry["active"] is True and entry["started"].endswith("+00:00") and isinstance(entry["pid"], int)
    # Not running: starting it reads the files, so it is not stale.
    assert result["units"]["kube-scheduler"] == {"active": False, "pid": None, "started": None,
                                                 "files": [files["binary"], files["kubeconfig"]], "newer": []}
    # Started after its kubeconfig was written.
    assert result["units"]["kube-controller-manager"]["newer"] == []


def test_reloaded_flags_given_replace_the_defaults(tmp_path):
    files = tree(tmp_path)
    result = run(tmp_path, ["kube-apiserver"], apiserver(files), reloaded={"kube-apiserver": ["proxy-client-cert-file"]},
                 running=files["binary"])[0]
    assert result["units"]["kube-apiserver"]["newer"] == [files["serving"]]
    result = run(tmp_path, ["kube-apiserver"], apiserver(files), reloaded={"kube-apiserver": "proxy-client-cert-file"})[0]
    assert result["failed"] is True
    assert result["msg"] == "reloaded: the flags of kube-apiserver must be a list of flag names, got 'proxy-client-cert-file'"


def test_a_replaced_or_relinked_binary_and_an_unreloaded_unit_make_it_stale(tmp_path):
    files = tree(tmp_path)
    replaced = run(tmp_path, ["kube-apiserver"], apiserver(files, started_ago=1), running=files["binary"] + " (deleted)")[0]
    assert replaced["units"]["kube-apiserver"]["newer"] == [files["binary"]]
    relinked = run(tmp_path, ["kube-apiserver"], apiserver(files, started_ago=1), running="/opt/etcd-v3.4.23/etcd")[0]
    assert relinked["units"]["kube-apiserver"]["newer"] == [files["binary"]]
    # A script's process runs its interpreter: that says nothing of the script.
    script = tmp_path / "kube-addon-manager"
    script.write_text("#!/bin/sh\n")
    os.utime(str(script), (time.time() - 3600, time.time() - 3600))
    out = block("kube-addon-manager", "active", 1, [str(script), "--kubeconfig=" + files["kubeconfig"]])
    assert run(tmp_path, ["kube-addon-manager"], out, running="/usr/bin/python3.11")[0]["stale"] == []
    # Its interpreter upgraded under it is not the script replaced.
    assert run(tmp_path, ["kube-addon-manager"], out, running="/usr/bin/python3.11 (deleted)")[0]["stale"] == []
    unit = run(tmp_path, ["kube-apiserver"], apiserver(files, started_ago=1, reload_needed=True), running=files["binary"])[0]
    assert unit["units"]["kube-apiserver"]["newer"] == ["/etc/systemd/system/kube-apiserver.service"]


def test_a_unit_systemd_does_not_know_is_not_active(tmp_path):
    # systemd prints a block for a unit it does not know, without ExecStart.
    out = "Id=kube-nothing.service\nMainPID=0\nNeedDaemonReload=no\nFragmentPath=\nExecMainStartTimestampMonotonic=0\n" \
          "ActiveState=inactive\n"
    result = run(tmp_path, ["kube-nothing"], out)[0]
    assert result["units"]["kube-nothing"] == {"active": False, "pid": None, "started": None, "files": [], "newer": []}
    assert result["stale"] == []


def test_systemctl_failing_names_the_services(tmp_path):
    result = run(tmp_path, ["kube-apiserver", "etcd"], "", rc=1)[0]
    assert result["failed"] is True
    assert result["msg"] == "systemctl show kube-apiserver etcd failed: Failed to connect to bus"


def test_every_command_of_a_unit_counts_and_blocks_go_by_position():
    out = "Id=a.service\n%s\n%s\n\nId=b.service\n" % (exec_start(["/bin/a", "--x-file=/y"]), exec_start(["/bin/b"]))
    shown = _units.show(["alias-of-a", "b"], lambda argv: (0, out, ""))
    assert _units.command_lines(shown["alias-of-a"]["ExecStart"]) == [["/bin/a", "--x-file=/y"], ["/bin/b"]]
    assert shown["b"]["Id"] == "b.service"
    assert _units.command_lines([]) == []
    assert _units.files_read(["/bin/a", "--kubelet-client-key=/k", "--log-file=/l", "--cert-dir=/d", "-v=/x"], ()) == [
        "/bin/a", "/k"]
    assert _units.started_at("0", 100.0, 10.0) is None
    assert _units.started_at("", 100.0, 10.0) is None
    assert _units.started_at("4000000", 100.0, 10.0) == 94.0
    assert _units.stale({"etcd": {"newer": ["/etc/kubernetes/pki/etcd/server.crt"]}, "x": {"newer": []}}) == [
        "service etcd runs with older files than those on disk (server.crt)"]
