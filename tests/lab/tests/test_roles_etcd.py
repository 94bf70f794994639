# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The data_disk and etcd roles on a lab machine: a replica created by the collection runs etcd, and the events
etcd, over TLS only. (A member that joins a running cluster through the etcd role is the lifecycle test's replicate,
and etcd_member's own test.)"""

from __future__ import annotations

import json
import os
import shutil
import tarfile

import pytest

from labcli import lab

pytestmark = [pytest.mark.machines, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

ETCD_VERSION = "3.4.23"


def etcd_archive(directory):
    """An etcd release archive, laid out as upstream's, made of the etcd that Debian ships on this machine."""
    path = os.path.join(directory, "etcd-v%s-linux-amd64.tar.gz" % ETCD_VERSION)
    with tarfile.open(path, "w:gz") as archive:
        for binary in ("etcd", "etcdctl"):
            archive.add(shutil.which(binary), arcname="etcd-v%s-linux-amd64/%s" % (ETCD_VERSION, binary))
    return path


def playbook(archive):
    ssh = "kubeha:{{ lookup('ansible.builtin.file', lookup('ansible.builtin.env', 'KUBEHA_LAB_SSH_KEY') ~ '.pub') }}"
    return [
        {"name": "A replica and its certificates", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "replica", "kubeha.gce.gce_master_replica": {
                "cluster_name": "e", "zone": "europe-west1-b", "metadata": {"ssh-keys": ssh}}, "register": "replica"},
            # The certificates are made once and kept on the controller, so that a second run is the same run.
            {"name": "saved certificates", "ansible.builtin.stat": {"path": "{{ report_dir }}/pki.json"}, "register": "saved"},
            {"name": "CAs", "kubeha.gce.replica_pki": {"create_ca": True}, "register": "pki", "no_log": True,
             "when": "not saved.stat.exists"},
            {"name": "certificates", "kubeha.gce.replica_pki": {
                "ca": "{{ pki.ca }}", "replica": {"name": "{{ replica.replica.name }}",
                                                  "internal_ip": "{{ replica.replica.internal_ip }}"},
                "leaves": ["etcd-peer", "etcd-server", "apiserver-etcd-client"]}, "register": "certs", "no_log": True,
             "when": "not saved.stat.exists"},
            {"name": "save them", "ansible.builtin.copy": {
                "content": "{{ {'ca': pki.ca, 'leaves': certs.leaves} | to_json }}", "dest": "{{ report_dir }}/pki.json",
                "mode": "0600"}, "no_log": True, "when": "not saved.stat.exists"},
            {"name": "load them", "ansible.builtin.set_fact": {
                "material": "{{ lookup('ansible.builtin.file', report_dir ~ '/pki.json') | from_json }}"}, "no_log": True},
            {"name": "reach it", "ansible.builtin.add_host": {
                "name": "{{ replica.replica.name }}", "groups": "masters", "ansible_host": "{{ replica.replica.external_ip }}",
                "ansible_user": "kubeha", "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_private_key_file": "{{ lookup('ansible.builtin.env', 'KUBEHA_LAB_SSH_KEY') }}",
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                "internal_ip": "{{ replica.replica.internal_ip }}"}},
        ]},
        {"name": "etcd on the replica", "hosts": "masters", "gather_facts": False, "become": True, "tasks": [
            {"name": "wait for the guest agent", "ansible.builtin.wait_for_connection": {"timeout": 120}},
            {"name": "data disk", "ansible.builtin.include_role": {"name": "kubeha.gce.data_disk"}},
            {"name": "etcd", "ansible.builtin.include_role": {"name": "kubeha.gce.etcd"}, "vars": {
                "etcd_address": "{{ internal_ip }}",
                "etcd_archive_src": archive,
                "etcd_events": True,
                "etcd_tls": {
                    "ca_cert": "{{ hostvars.localhost.material.ca.etcd.cert }}",
                    "server_cert": "{{ hostvars.localhost.material.leaves['etcd-server'].cert }}",
                    "server_key": "{{ hostvars.localhost.material.leaves['etcd-server'].key }}",
                    "peer_cert": "{{ hostvars.localhost.material.leaves['etcd-peer'].cert }}",
                    "peer_key": "{{ hostvars.localhost.material.leaves['etcd-peer'].key }}"}}},
            {"name": "write the client certificate for the checks", "ansible.builtin.copy": {
                "content": "{{ hostvars.localhost.material.leaves['apiserver-etcd-client'][item] }}",
                "dest": "/root/client.{{ item }}", "mode": "0600"}, "loop": ["cert", "key"], "no_log": True},
            {"name": "write a key and read it back with the client certificate", "ansible.builtin.shell": (
                "set -e; e='etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt "
                "--cert /root/client.cert --key /root/client.key'; $e put /kubeha/check ok >/dev/null; "
                "$e get --print-value-only /kubeha/check; $e member list -w json"),
             "register": "etcdctl", "changed_when": False},
            {"name": "try without a client certificate", "ansible.builtin.command": (
                "etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt "
                "--dial-timeout 3s --command-timeout 5s get /kubeha/check"),
             "register": "anonymous", "changed_when": False, "failed_when": "anonymous.rc == 0"},
            {"name": "try the events etcd and plaintext", "ansible.builtin.shell": (
                "etcdctl --endpoints https://127.0.0.1:4002 --cacert /etc/kubernetes/pki/etcd/ca.crt "
                "--cert /root/client.cert --key /root/client.key endpoint health 2>&1; "
                "curl -s -m 3 http://127.0.0.1:2379/health || echo plaintext-refused; "
                "findmnt -n -o SOURCE,FSTYPE /mnt/disks/master-pd"),
             "register": "others", "changed_when": False},
            {"name": "save what etcdctl said", "ansible.builtin.copy": {
                "content": "{{ {'etcdctl': etcdctl.stdout_lines, 'anonymous': anonymous.stderr, 'others': others.stdout} | to_json }}",
                "dest": "/root/report.json", "mode": "0600"}, "changed_when": False},
            {"name": "fetch it", "changed_when": False,
             "ansible.builtin.fetch": {"src": "/root/report.json", "dest": "{{ report_dir }}/", "flat": True}},
        ]},
    ]


def test_data_disk_and_etcd_roles_on_a_lab_machine(lab_env, tmp_path):
    assert lab(lab_env, "up").returncode == 0
    archive = etcd_archive(str(tmp_path))
    book = tmp_path / "etcd.yml"
    book.write_text(json.dumps(playbook(archive)))
    run = lab(lab_env, "exec", "--", "ansible-playbook", str(book), "-e", "report_dir=%s" % tmp_path)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["etcdctl"][0] == "ok"
    members = json.loads("".join(report["etcdctl"][1:]))["members"]
    assert [m["name"] for m in members] == ["e-master"]
    assert members[0]["peerURLs"][0].startswith("https://10.132.0.") and members[0]["peerURLs"][0].endswith(":2380")
    assert report["anonymous"], "etcd answered a client without a certificate"
    assert "is healthy" in report["others"]
    assert "plaintext-refused" in report["others"]
    assert "/dev/disk/by-id/google-master-pd ext4" in report["others"]

    # A second run of the roles changes nothing on the replica.
    again = lab(lab_env, "exec", "--", "ansible-playbook", str(book), "-e", "report_dir=%s" % tmp_path)
    assert again.returncode == 0, again.stdout[-5000:]
    recap = [line for line in again.stdout.splitlines() if line.startswith("e-master ")]
    assert recap and "changed=0" in recap[0], recap
