# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A test hook for the crash matrix: note each task result that changed something, and kill the whole run
(SIGKILL to its process group: ansible-playbook, its workers, their SSH) right after the first one that is not yet
in the list of kill points already visited.

Enabled with ``ANSIBLE_CALLBACK_PLUGINS=tests/lab/callback_plugins ANSIBLE_CALLBACKS_ENABLED=kubeha_crash`` and:

- ``KUBEHA_CRASH_LOG``: a file that gets one JSON line per changed result (``key``, ``task``, ``host``, ``item``,
  and ``killed`` on the one the run was killed after);
- ``KUBEHA_CRASH_VISITED``: a file of keys (one per line) not to kill at again; without it, nothing is killed.

A key is the task's name, the host (``host -> delegated host``) and the loop item's label: the same in every run of
a playbook against the same cluster. A loop item's result reaches the callback while the worker goes on with the next
item, so by the time the kill lands that next item may have run: the kill is then right after it, and it is no kill
point of its own.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: kubeha_crash
type: aggregate
short_description: Kill a playbook run right after a task that changed something (kubeha.gce's crash matrix)
description:
  - Test hook of the lab's crash matrix; see the module docstring.
requirements:
  - enabled in configuration
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kubeha_crash"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_path = os.environ.get("KUBEHA_CRASH_LOG")
        visited_path = os.environ.get("KUBEHA_CRASH_VISITED")
        self.kill = bool(visited_path)
        self.visited = set()
        if visited_path and os.path.exists(visited_path):
            with open(visited_path, encoding="utf-8") as handle:
                self.visited = {line.rstrip("\n") for line in handle if line.strip()}

    def _changed(self, result, item=None):
        host = result._host.get_name()
        # The inventory name it was delegated to, not its address: a replica's external IP changes when the reserved
        # address moves.
        delegated = result._task.delegate_to
        where = "%s -> %s" % (host, delegated) if delegated else host
        label = ""
        if item is not None:
            label = str(result._result.get("_ansible_item_label", item))
        name = result._task.get_name()
        key = "%s | %s | %s" % (name, where, label)
        entry = {"key": key, "task": name, "host": where, "item": label}
        kill = self.kill and key not in self.visited
        if kill:
            entry["killed"] = True
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        if kill:
            # Ansible's workers start sessions of their own: killed first, or one would finish its task (and then wait
            # forever for a main process that is gone).
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)
            os.killpg(os.getpgid(0), signal.SIGKILL)

    def v2_runner_on_ok(self, result):
        # A looped task reports each item first; its summary result repeats what the items did.
        if result._result.get("changed") and not result._result.get("results"):
            self._changed(result)

    def v2_runner_item_on_ok(self, result):
        if result._result.get("changed"):
            self._changed(result, item=result._result.get("item"))
