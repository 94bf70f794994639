# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import json
import os
import time

import pytest

from ansible_collections.kubeha.gce.plugins.module_utils import _stamp, _units
from ansible_collections.kubeha.gce.plugins.modules import replica_stamp, replica_stamp_info
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import run_module

LATER = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=300)).isoformat()


@pytest.fixture
def tree(tmp_path):
    etc = tmp_path / "etc"
    (etc / "pki").mkdir(parents=True)
    (etc / "pki" / "apiserver.crt").write_text("cert one\n")
    (etc / "gce.conf").write_text("[global]\nmultizone = true\n")
    os.symlink(str(etc / "gce.conf"), str(tmp_path / "link"))
    return tmp_path


def parts(tree, inputs="sha256:1", expires=LATER):
    return {"pki": {"inputs": inputs, "paths": [str(tree / "etc" / "pki"), str(tree / "link")], "units": [],
                    "expires": expires},
            "services": {"inputs": inputs, "paths": [str(tree / "etc" / "gce.conf"), str(tree / "absent")], "units": []}}


def write(tree, check_mode=False, diff=False, **kwargs):
    return run_module(replica_stamp.main, {"parts": parts(tree, **kwargs), "path": str(tree / "stamp" / "s.json")},
                      check_mode=check_mode, diff=diff, auth=False)


def compare(tree, renew_before_days=30, **kwargs):
    return run_module(replica_stamp_info.main, {"parts": parts(tree, **kwargs), "path": str(tree / "stamp" / "s.json"),
                                                "renew_before_days": renew_before_days}, auth=False)


def test_check_mode_records_nothing_then_a_run_records_once(tree):
    assert compare(tree)["current"] is False
    assert compare(tree)["parts"]["pki"]["differences"] == ["no stamp: it was not converged by this version of the collection"]
    planned = write(tree, check_mode=True, diff=True)
    assert planned["changed"] is True and not (tree / "stamp").exists()
    assert planned["diff"]["before"] == {} and planned["diff"]["after"]["pki"]["files"] == 3
    assert write(tree)["changed"] is True
    assert oct(os.stat(tree / "stamp" / "s.json").st_mode & 0o777) == "0o600"
    assert oct(os.stat(tree / "stamp").st_mode & 0o777) == "0o700"
    assert write(tree)["changed"] is False
    result = compare(tree)
    assert result["current"] is True and result["changed"] is False
    assert result["parts"] == {"pki": {"current": True, "differences": [], "drift": False},
                               "services": {"current": True, "differences": [], "drift": False}}


def test_a_changed_file_a_new_file_a_missing_file_and_a_changed_mode_are_found(tree):
    write(tree)
    (tree / "etc" / "gce.conf").write_text("[global]\nmultizone = false\n")
    (tree / "etc" / "pki" / "extra.key").write_text("x")
    os.chmod(tree / "etc" / "pki", 0o700)
    result = compare(tree)
    assert result["current"] is False
    assert result["parts"]["services"]["differences"] == ["%s changed" % (tree / "etc" / "gce.conf")]
    assert result["parts"]["pki"]["differences"] == ["%s changed" % (tree / "etc" / "pki"),
                                                     "%s is new" % (tree / "etc" / "pki" / "extra.key")]
    (tree / "etc" / "pki" / "apiserver.crt").unlink()
    assert "%s is missing" % (tree / "etc" / "pki" / "apiserver.crt") in compare(tree)["parts"]["pki"]["differences"]


def test_a_certificate_with_the_same_name_but_other_content_is_found(tree):
    write(tree)
    (tree / "etc" / "pki" / "apiserver.crt").write_text("cert two\n")
    assert compare(tree)["parts"] == {
        "pki": {"current": False, "differences": ["%s changed" % (tree / "etc" / "pki" / "apiserver.crt")], "drift": True},
        "services": {"current": True, "differences": [], "drift": False}}


def test_new_inputs_and_a_certificate_due_for_renewal_are_found(tree):
    write(tree, expires=(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=20)).isoformat())
    due = compare(tree)["parts"]["pki"]
    assert due["current"] is False and "within 30 days" in due["differences"][0]
    assert compare(tree, renew_before_days=10)["parts"]["pki"]["current"] is True
    assert compare(tree, inputs="sha256:2")["parts"]["services"] == {
        "current": False, "differences": ["the inputs changed (settings, IPs, versions, or the collection itself)"],
        "drift": False}


def test_writing_one_part_keeps_the_others(tree):
    write(tree)
    path = str(tree / "stamp" / "s.json")
    only = {"pki": dict(parts(tree)["pki"], inputs="sha256:9")}
    assert run_module(replica_stamp.main, {"parts": only, "path": path}, auth=False)["changed"] is True
    with open(path, encoding="utf-8") as handle:
        recorded = json.load(handle)["parts"]
    assert recorded["pki"]["inputs"] == "sha256:9" and recorded["services"]["inputs"] == "sha256:1"


def test_bad_parts_and_an_unreadable_stamp_fail_with_the_cause(tree):
    bad = run_module(replica_stamp.main, {"parts": {"pki": {"inputs": "", "paths": []}}, "path": str(tree / "s")}, auth=False)
    assert bad["failed"] and bad["msg"].startswith("part pki: inputs must be a non-empty string")
    bad = run_module(replica_stamp.main, {"parts": {"pki": {"inputs": "x", "paths": ["rel"]}}, "path": str(tree / "s")},
                     auth=False)
    assert bad["failed"] and "paths must be absolute" in bad["msg"]
    bad = run_module(replica_stamp.main, {"parts": {"pki": {"inputs": "x", "owner": "me"}}, "path": str(tree / "s")},
                     auth=False)
    assert bad["failed"] and "unknown keys owner" in bad["msg"]
    (tree / "s").write_text("{not json")
    unreadable = run_module(replica_stamp_info.main, {"parts": {"pki": {"inputs": "x"}}, "path": str(tree / "s")}, auth=False)
    assert unreadable["current"] is False
    assert unreadable["parts"]["pki"]["differences"][0].startswith("cannot read the stamp %s" % (tree / "s"))
    rewritten = run_module(replica_stamp.main, {"parts": {"pki": {"inputs": "x"}}, "path": str(tree / "s")}, auth=False)
    assert rewritten["changed"] is True
    assert run_module(replica_stamp_info.main, {"parts": {"pki": {"inputs": "x"}}, "path": str(tree / "s")},
                      auth=False)["current"] is True


def test_what_another_part_covers_is_left_out(tree):
    spec = {"pki": {"inputs": "x", "paths": [str(tree / "etc")], "exclude": [str(tree / "etc" / "gce.conf")]}}
    path = str(tree / "stamp.json")
    assert run_module(replica_stamp.main, {"parts": spec, "path": path}, auth=False)["parts"]["pki"]["files"] == 3
    (tree / "etc" / "gce.conf").write_text("changed")
    assert run_module(replica_stamp_info.main, {"parts": spec, "path": path}, auth=False)["current"] is True
    (tree / "etc" / "pki" / "apiserver.crt").write_text("changed")
    assert run_module(replica_stamp_info.main, {"parts": spec, "path": path}, auth=False)["current"] is False


def test_services_are_read_in_one_systemctl_call_and_then_what_runs_with_older_files():
    calls = []

    def systemctl(argv):
        calls.append(list(argv))
        # In whatever order systemd answers; a unit it says nothing of is unknown.
        return 0, ("Id=kube-scheduler.service\nActiveState=inactive\nUnitFileState=enabled\n\n"
                   "Id=etcd.service\nActiveState=active\nUnitFileState=enabled\n\n"
                   "Id=kube-nothing.service\nActiveState=inactive\nUnitFileState=\n"), ""

    states = _stamp.unit_states(["etcd", "kube-scheduler", "kube-nothing"], systemctl)
    assert states == {"etcd": "active enabled", "kube-scheduler": "inactive enabled", "kube-nothing": "inactive not-found"}
    assert calls == [["systemctl", "show", "--property=Id,ActiveState,UnitFileState", "--", "etcd.service",
                      "kube-scheduler.service", "kube-nothing.service"]]
    recorded = {"inputs": "x", "paths": [], "exclude": [], "units": ["etcd", "kube-scheduler", "kube-nothing"], "files": {}}
    spec = {"inputs": "x", "paths": [], "units": ["etcd", "kube-scheduler", "kube-nothing"]}
    now = datetime.datetime.now(datetime.timezone.utc)
    assert _stamp.differences(recorded, spec, systemctl, 30, now) == [
        "service kube-scheduler is inactive enabled", "service kube-nothing is inactive not-found"]
    # Then, for the services that run, whether they run with older files than those on disk.
    assert calls[-1] == ["systemctl", "show", "--property=" + _units.PROPERTIES, "--", "etcd.service"]
    assert _stamp.unit_states(["etcd", "kube-gone"], systemctl)["kube-gone"] == "unknown not-found"
    with pytest.raises(_stamp.StampError, match="systemctl show etcd failed: boom"):
        _stamp.unit_states(["etcd"], lambda argv: (1, "", "boom"))


def test_a_service_that_runs_with_older_files_is_not_as_converged(tmp_path):
    cert = tmp_path / "apiserver-etcd-client.crt"
    cert.write_text("renewed\n")
    started = int((time.monotonic() - 60) * 1e6)

    def systemctl(argv):
        if "--property=Id,ActiveState,UnitFileState" in argv:
            return 0, "Id=kube-apiserver.service\nActiveState=active\nUnitFileState=enabled\n", ""
        return 0, ("Id=kube-apiserver.service\nActiveState=active\nMainPID=0\nExecMainStartTimestampMonotonic=%d\n"
                   "ExecStart={ path=/bin/true ; argv[]=/bin/true --etcd-certfile=%s ; ignore_errors=no }\n" % (started, cert)), ""

    recorded = {"inputs": "x", "paths": [], "exclude": [], "units": ["kube-apiserver"], "files": {}}
    spec = {"inputs": "x", "paths": [], "units": ["kube-apiserver"]}
    now = datetime.datetime.now(datetime.timezone.utc)
    assert _stamp.differences(recorded, spec, systemctl, 30, now) == [
        "service kube-apiserver runs with older files than those on disk (apiserver-etcd-client.crt)"]

    def failing(argv):
        return systemctl(argv) if "--property=Id,ActiveState,UnitFileState" in argv else (1, "", "bus")

    with pytest.raises(_stamp.StampError, match="systemctl show kube-apiserver failed: bus"):
        _stamp.differences(recorded, spec, failing, 30, now)
