# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Kubernetes server archive fetched on the controller (roles/kubeha/tasks/binaries.yml), run by ansible-playbook:
checked against its checksum, the four control-plane binaries extracted into the cache once, and every bad input
stopped with a message that names it, before anything else is done and with nothing left behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from conftest import COLLECTIONS_PATH, REPO

BINARIES = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]


def archive(path, members):
    """A server archive laid out as a release's, with a small executable per member name."""
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            data = ("#!/bin/sh\necho %s\n" % name).encode()
            info = tarfile.TarInfo("kubernetes/server/bin/" + name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return "sha512:" + hashlib.sha512(path.read_bytes()).hexdigest()


def run(tmp_path, check=False, entry="binaries", **extra):
    """Run the entry point as preflight does; returns (completed process, the binaries' directory (or the
    cloud-controller-manager's file, for that entry point) or None)."""
    out = tmp_path / "out.json"
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"name": "Fetch",
             "ansible.builtin.include_role": {"name": "kubeha.gce.kubeha", "tasks_from": entry, "public": True}},
            {"name": "Say where", "ansible.builtin.copy": {
                "dest": str(out), "content": "{{ {'dir': kubeha_kubernetes_binaries_dir if '%s' == 'binaries' else "
                                             "kubeha_cloud_controller_file} | to_json }}" % entry},
             "check_mode": False, "changed_when": False},
        ],
    }]
    playbook = tmp_path / "play.json"
    playbook.write_text(json.dumps(play))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_PATH, "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false", "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", json.dumps(extra), str(playbook)] + (["--check"] if check else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    if out.exists():
        directory = json.loads(out.read_text())["dir"]
        out.unlink()
        return done, directory
    return done, None


def recap(done):
    line = [line for line in done.stdout.splitlines() if line.startswith("localhost")][-1]
    return {key: int(value) for key, value in (item.split("=") for item in line.split()[2:])}


def test_the_archive_is_fetched_once_checked_and_its_four_binaries_kept(tmp_path):
    checksum = archive(tmp_path / "server.tar.gz", BINARIES + ["kubelet", "kubeadm"])
    settings = {"kubeha_kubernetes_server_archive_url": "file://%s" % (tmp_path / "server.tar.gz"),
                "kubernetes_server_archive_checksum": checksum, "kubernetes_version": "1.36.0"}

    # In check mode too: the cache is the controller's, and a check run compares the replicas' binaries with it.
    done, directory = run(tmp_path, check=True, **settings)
    assert done.returncode == 0, done.stdout[-3000:]
    assert recap(done)["changed"] == 0
    assert directory.startswith(str(tmp_path / "xdg" / "kubeha.gce" / "kubernetes" / "v1.36.0-"))
    assert sorted(os.listdir(directory)) == sorted(BINARIES)  # kubelet and kubeadm are left in the archive
    for name in BINARIES:
        path = os.path.join(directory, name)
        assert os.access(path, os.X_OK)
        assert subprocess.run([path], capture_output=True, text=True, check=True).stdout == name + "\n"
    # Nothing but the binaries' directory is left: no archive, no partial directory.
    assert os.listdir(os.path.dirname(directory)) == [os.path.basename(directory)]

    # Once there, the archive is not fetched again: a run without it still finds the binaries.
    (tmp_path / "server.tar.gz").unlink()
    done, again = run(tmp_path, **settings)
    assert done.returncode == 0, done.stdout[-3000:]
    assert again == directory and recap(done)["changed"] == 0

    # Another checksum is another directory: binaries are never taken from an archive other than the one named.
    other = archive(tmp_path / "server.tar.gz", BINARIES)
    done, third = run(tmp_path, **{**settings, "kubernetes_server_archive_checksum": other})
    assert done.returncode == 0, done.stdout[-3000:]
    assert third != directory and sorted(os.listdir(third)) == sorted(BINARIES)


@pytest.mark.parametrize("case", ["mismatch", "not_a_server_archive", "unknown_version", "malformed", "unreachable",
                                  "not_a_release", "relative_cache"])
def test_bad_archives_and_settings_stop_with_the_reason_and_leave_nothing(tmp_path, case):
    good = archive(tmp_path / "server.tar.gz", BINARIES)
    settings = {"kubeha_kubernetes_server_archive_url": "file://%s" % (tmp_path / "server.tar.gz"),
                "kubernetes_server_archive_checksum": good}
    if case == "mismatch":
        settings["kubernetes_server_archive_checksum"] = "sha512:" + "0" * 128
        expected = "could not be fetched from file://%s on the controller: The checksum" % (tmp_path / "server.tar.gz")
    elif case == "not_a_server_archive":
        settings["kubernetes_server_archive_checksum"] = archive(tmp_path / "server.tar.gz", ["kubelet", "kubectl"])
        expected = ("kubernetes/server/bin/kube-apiserver, kubernetes/server/bin/kube-controller-manager, "
                    "kubernetes/server/bin/kube-scheduler, kubernetes/server/bin/kubectl could not be extracted as "
                    "executables from file://%s, which passed its checksum" % (tmp_path / "server.tar.gz"))
    elif case == "unknown_version":
        settings = {"kubernetes_version": "v1.29.1", "kubeha_kubernetes_server_archive_url": "file:///nonexistent"}
        expected = ("The collection knows no checksum of the Kubernetes server archive of v1.29.1 (it knows v1.35.4, v1.36.0")
    elif case == "not_a_release":
        settings["kubernetes_version"] = 1.3  # a number from a survey
        expected = "kubernetes_version is v1.3, not a Kubernetes release such as v1.36.0."
    elif case == "relative_cache":
        settings["kubernetes_cache_dir"] = "$HOME/cache"
        expected = "kubernetes_cache_dir is $HOME/cache, not an absolute path on the controller."
    elif case == "malformed":
        settings["kubernetes_server_archive_checksum"] = "md5:0123"
        expected = "kubernetes_server_archive_checksum is md5:0123, not sha512:HEX"
    else:
        settings["kubeha_kubernetes_server_archive_url"] = "file://%s" % (tmp_path / "missing.tar.gz")
        expected = "could not be fetched from file://%s on the controller: " % (tmp_path / "missing.tar.gz")
    done, directory = run(tmp_path, **settings)
    assert done.returncode != 0 and directory is None
    assert expected in done.stdout + done.stderr, done.stdout[-3000:]
    assert "Nothing was changed" in done.stdout + done.stderr
    if case == "unknown_version":  # and where to read it
        assert "CHANGELOG/CHANGELOG-1.29.md of kubernetes/kubernetes" in done.stdout, done.stdout[-3000:]
    cache = tmp_path / "xdg" / "kubeha.gce" / "kubernetes"
    assert not cache.exists() or os.listdir(cache) == []


@pytest.mark.parametrize("damage", ["missing", "world_writable", "not_executable", "directory_group_writable",
                                    "a_file", "a_directory"])
def test_a_cache_directory_not_as_left_is_refused_and_its_binaries_not_used(tmp_path, damage):
    checksum = archive(tmp_path / "server.tar.gz", BINARIES)
    settings = {"kubeha_kubernetes_server_archive_url": "file://%s" % (tmp_path / "server.tar.gz"),
                "kubernetes_server_archive_checksum": checksum, "kubernetes_version": "V1.36.0"}
    done, directory = run(tmp_path, **settings)
    assert done.returncode == 0, done.stdout[-3000:]
    assert os.path.basename(directory).startswith("v1.36.0-")  # V1.36.0 is read as v1.36.0
    if damage == "missing":
        os.unlink(os.path.join(directory, "kube-scheduler"))
    elif damage == "world_writable":
        os.chmod(os.path.join(directory, "kubectl"), 0o777)
    elif damage == "not_executable":
        os.chmod(os.path.join(directory, "kube-apiserver"), 0o644)
    elif damage == "a_file":
        shutil.rmtree(directory)
        with open(directory, "w", encoding="utf-8") as handle:
            handle.write("not a directory\n")
    elif damage == "a_directory":
        os.unlink(os.path.join(directory, "kube-apiserver"))
        os.mkdir(os.path.join(directory, "kube-apiserver"), 0o755)
    else:
        os.chmod(directory, 0o775)
    done, again = run(tmp_path, **settings)
    bad = {"missing": "kube-scheduler", "world_writable": "kubectl", "not_executable": "kube-apiserver",
           "directory_group_writable": "the directory itself", "a_file": "the directory itself",
           "a_directory": "kube-apiserver"}[damage]
    assert done.returncode != 0 and again is None, done.stdout[-3000:]
    assert "%s is in the controller's cache, but %s" % (directory, bad) in done.stdout, done.stdout[-3000:]
    assert "not what this collection leaves there" in done.stdout and "Nothing was changed" in done.stdout


def test_the_published_checksums_are_the_release_notes_form():
    """Each known version's checksum is a sha512 as the release notes print it, and the default version is known."""
    with open(os.path.join(REPO, "roles", "kubeha", "vars", "main.yml"), encoding="utf-8") as handle:
        known = yaml.safe_load(handle)["kubeha_kubernetes_server_archive_sha512"]
    with open(os.path.join(REPO, "roles", "kubeha", "defaults", "main.yml"), encoding="utf-8") as handle:
        default = handle.read().split("kubernetes_version | default('", 1)[1].split("'", 1)[0]
    assert default in known
    for version, checksum in known.items():
        assert version.startswith("v1.") and len(checksum) == 128 and int(checksum, 16) >= 0, version


def test_the_cloud_controller_manager_is_fetched_checked_and_kept_as_the_users_own(tmp_path):
    binary = tmp_path / "cloud-controller-manager"
    binary.write_text("#!/bin/sh\necho cloud-controller-manager\n")
    checksum = "sha256:" + hashlib.sha256(binary.read_bytes()).hexdigest()
    settings = {"cloud_controller_manager_url": "file://%s" % binary, "cloud_controller_manager_checksum": checksum}
    done, cached = run(tmp_path, check=True, entry="cloud_controller", **settings)
    assert done.returncode == 0 and recap(done)["changed"] == 0, done.stdout[-3000:]
    assert cached == str(tmp_path / "xdg" / "kubeha.gce" / "kubernetes" / ("cloud-controller-manager-" + checksum[7:23])
                         / "cloud-controller-manager")
    assert open(cached, "rb").read() == binary.read_bytes() and os.access(cached, os.X_OK)
    # A copy in the cache that differs from the checksum is fetched again; one that others may write is refused.
    with open(cached, "w", encoding="utf-8") as handle:
        handle.write("swapped\n")
    done, again = run(tmp_path, entry="cloud_controller", **settings)
    assert done.returncode == 0 and open(again, "rb").read() == binary.read_bytes(), done.stdout[-3000:]
    os.chmod(os.path.dirname(again), 0o777)
    done = run(tmp_path, entry="cloud_controller", **settings)[0]
    assert done.returncode != 0, done.stdout[-3000:]
    assert "%s in the controller's cache may be written by someone else" % os.path.dirname(again) in done.stdout
    assert "Remove %s to have it fetched again" % os.path.dirname(again) in done.stdout
    assert "Nothing was changed" in done.stdout


@pytest.mark.parametrize("case", ["mismatch", "no_checksum", "both", "relative_src", "unreachable"])
def test_a_bad_cloud_controller_manager_setting_stops_with_the_reason(tmp_path, case):
    binary = tmp_path / "cloud-controller-manager"
    binary.write_text("#!/bin/sh\n")
    url = "file://%s" % binary
    settings = {"cloud_controller_manager_url": url, "cloud_controller_manager_checksum": "sha256:" + "0" * 64}
    expected = "could not be fetched from cloud_controller_manager_url on the controller: The checksum"
    if case == "no_checksum":
        settings["cloud_controller_manager_checksum"] = ""
        expected = 'cloud_controller_manager_checksum is "", not sha256:HEX (64 hex digits)'
    elif case == "both":
        settings["cloud_controller_manager_src"] = str(binary)
        expected = "Give either cloud_controller_manager_url (with its checksum) or cloud_controller_manager_src, not both."
    elif case == "relative_src":
        settings = {"cloud_controller_manager_src": "bin/cloud-controller-manager"}
        expected = "cloud_controller_manager_src is bin/cloud-controller-manager, not the absolute path of a file"
    elif case == "unreachable":
        settings["cloud_controller_manager_url"] = url + ".missing"
        expected = "could not be fetched from cloud_controller_manager_url on the controller: "
    done = run(tmp_path, entry="cloud_controller", **settings)[0]
    assert done.returncode != 0 and expected in done.stdout, done.stdout[-3000:]
    assert "Nothing was changed" in done.stdout and url not in done.stdout.split("TASK")[-1]
    cache = tmp_path / "xdg" / "kubeha.gce" / "kubernetes"
    assert not cache.exists() or [p for p in os.listdir(cache) if not p.startswith(".")] == []
