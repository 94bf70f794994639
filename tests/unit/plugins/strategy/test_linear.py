# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kubeha.gce.linear strategy, run by ansible-playbook against a host that refuses SSH (127.0.0.1, port 1)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

COLLECTIONS = pathlib.Path(__file__).resolve().parents[7]

PLAYBOOK = """
- name: Delegated tasks to a host that does not answer
  hosts: localhost
  strategy: kubeha.gce.linear
  gather_facts: false
  vars:
    never: false
  tasks:
    - name: A block whose delegated task fails
      block:
        - name: Run on the dead host
          ansible.builtin.command: "true"
          delegate_to: dead
        - name: Not reached
          ansible.builtin.debug:
            msg: NOT-REACHED
      rescue:
        - name: Rescue
          ansible.builtin.debug:
            msg: "RESCUED {{ ansible_failed_result.msg }}"
      always:
        - name: Always
          ansible.builtin.debug:
            msg: ALWAYS-RAN

    - name: A loop with one dead host among live ones
      block:
        - name: Run on each
          ansible.builtin.command: "true"
          delegate_to: "{{ item }}"
          loop: [localhost, dead]
      rescue:
        - name: Rescue the loop
          ansible.builtin.debug:
            msg: "LOOP-RESCUED {{ ansible_failed_result.results | map(attribute='failed', default=false) | list }}
                  {{ ansible_failed_result.msg }}"

    - name: A loop whose ignore_errors is a template that says no, and whose failed_when the live host passes
      block:
        - name: Run on each
          ansible.builtin.command: "true"
          delegate_to: "{{ item }}"
          loop: [localhost, dead]
          ignore_errors: "{{ never }}"
          register: checked
          failed_when: checked.rc | default(0) != 0
        - name: Not reached either
          ansible.builtin.debug:
            msg: NOT-REACHED
      rescue:
        - name: Rescue the checked loop
          ansible.builtin.debug:
            msg: CHECKED-RESCUED

    - name: A loop whose ignore_errors is a template that says yes
      ansible.builtin.command: "true"
      delegate_to: "{{ item }}"
      loop: [dead]
      ignore_errors: "{{ not never }}"

    - name: Ignored as the task says
      ansible.builtin.command: "true"
      delegate_to: dead
      ignore_unreachable: true
      register: ignored

    - name: Say that it was ignored
      ansible.builtin.debug:
        msg: "IGNORED {{ ignored.unreachable | default(false) }}"

- name: A host that does not answer itself
  hosts: dead
  strategy: kubeha.gce.linear
  gather_facts: false
  tasks:
    - name: Run on it
      ansible.builtin.command: "true"
"""


def run(tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts").write_text(
        "localhost ansible_connection=local ansible_python_interpreter=%s\n"
        "dead ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh\n" % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp_path / "cp"),
               ANSIBLE_SSH_RETRIES="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    # ansible-playbook of the ansible-core under test (which ansible-test runs from its source, without a script).
    playbook = "import sys; from ansible.cli.playbook import main; sys.argv[0] = 'ansible-playbook'; main()"
    return subprocess.run([sys.executable, "-c", playbook, "-i", str(tmp_path / "hosts"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def test_a_delegated_host_that_does_not_answer_fails_the_task(tmp_path):
    played = run(tmp_path)
    out = played.stdout
    # The play's host goes on into rescue and always, told which host did not answer and why.
    assert "RESCUED dead did not answer: " in out and "Connection refused" in out, out + played.stderr
    assert "ALWAYS-RAN" in out and "NOT-REACHED" not in out, out
    # In a loop, the item whose host did not answer is the one that failed.
    assert "LOOP-RESCUED [False, True] a delegated-to host did not answer: " in out, out
    # ignore_errors as each item evaluated it, and failed_when, which an item that did not answer does not pass.
    assert '"msg": "CHECKED-RESCUED"' in out and "...ignoring" in out.split('"msg": "CHECKED-RESCUED"')[1], out
    # ignore_unreachable keeps its meaning: the run goes on, the result says unreachable.
    assert "IGNORED True" in out, out
    recap = {line.split()[0]: dict(field.split("=") for field in line.split(":", 1)[1].split())
             for line in out.split("PLAY RECAP")[1].strip().splitlines() if ":" in line}
    assert recap["localhost"]["unreachable"] == "0" and recap["localhost"]["ignored"] == "2" and recap["localhost"]["rescued"] == "3", json.dumps(recap)
    # A host that is unreachable itself stays unreachable.
    assert recap["dead"]["unreachable"] == "1", json.dumps(recap)
    assert played.returncode == 4, played.returncode
