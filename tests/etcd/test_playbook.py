# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The etcd modules run by ansible-playbook, with the TLS options set once for group/kubeha.gce.etcd."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import COLLECTIONS_PATH


def test_playbook_adds_a_learner_with_module_defaults_of_the_etcd_group(three, tmp_path):
    pki = three.pki
    new = three.member("d")
    results = tmp_path / "results.json"
    add = {"name": "d", "peer_urls": [new.peer_url], "learner": True}
    play = [{
        "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/kubeha.gce.etcd": {
            "endpoints": [three.members["b"].client_url, three.members["a"].client_url],
            "ca_cert": pki.ca, "client_cert": pki.client_cert, "client_key": pki.client_key}},
        "tasks": [
            {"name": "Read the cluster", "kubeha.gce.etcd_member_info": {}, "register": "before"},
            {"name": "Plan the learner", "kubeha.gce.etcd_member": add, "check_mode": True, "register": "planned"},
            {"name": "Add the learner", "kubeha.gce.etcd_member": add, "register": "added"},
            {"name": "Add it again", "kubeha.gce.etcd_member": add, "register": "again"},
            {"name": "Save the results", "ansible.builtin.copy": {
                "dest": str(results),
                "content": "{{ {'before': before, 'planned': planned, 'added': added, 'again': again} | to_json }}"}},
        ],
    }]
    playbook = tmp_path / "play.json"
    playbook.write_text(json.dumps(play))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_PATH, "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false", "ANSIBLE_PYTHON_INTERPRETER": sys.executable})
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "--diff", str(playbook)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    out = json.loads(results.read_text())
    assert out["before"]["changed"] is False and out["before"]["healthy"] is True and out["before"]["voters"] == 3
    assert out["planned"]["changed"] is True and out["planned"]["member"]["id"] is None
    assert out["added"]["changed"] is True and out["added"]["member"]["is_learner"] is True
    assert out["again"]["changed"] is False and out["again"]["member"]["id"] == out["added"]["member"]["id"]
    assert "d=%s" % new.peer_url in out["added"]["initial_cluster"]
    assert "is_learner" in done.stdout  # the diff of the members, shown by --diff
