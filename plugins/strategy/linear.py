# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The linear strategy, where a delegated-to host that does not answer fails the task instead of the play's host."""

from __future__ import annotations

DOCUMENTATION = r"""
name: linear
short_description: Linear, where a delegated-to host that does not answer fails the task
version_added: 0.1.0
description:
  - >-
    The collection's playbooks run on the controller (C(hosts: localhost)) and reach the replicas by delegation.
    With Ansible's own strategies a delegated-to host that stops answering (its zone gone, its VM stopped) marks the
    play's host UNREACHABLE, which ends the play at once, without the C(rescue) and C(always) sections of the block
    that was running; those sections are where a run takes back a half-made change (an etcd learner it added) and
    releases the cluster's lock.
  - >-
    This strategy is C(ansible.builtin.linear), except that such a result is a failure of the task, naming the host
    that did not answer, so that C(rescue) and C(always) run as for any other failure. A task with
    C(ignore_unreachable) set keeps its meaning, and a host that is unreachable itself (not by delegation) is
    UNREACHABLE as before.
  - >-
    Set it on a play that uses the collection's roles, as the collection's playbooks do
    (C(strategy: kubeha.gce.linear)).
author:
  - kubeha.gce maintainers (@kubeha)
"""

import collections
import typing as t

from ansible.plugins.strategy.linear import StrategyModule as _LinearStrategy
from ansible.utils.display import Display
from ansible.utils.unsafe_proxy import wrap_var


def _did_not_answer(name: str, msg: t.Any) -> t.Any:
    """The message of a task that failed because ``name`` did not answer, never a template."""
    return wrap_var("%s did not answer: %s" % (name, msg or "no reason given"))


def _host_name(task: t.Any, loop: bool) -> str:
    """The delegated-to host's name as the task gave it, once templated: not a loop's, whose items may each go to
    another host (and whose delegate_to is not templated before ansible-core 2.19); their SSH errors name it."""
    return task.delegate_to if not loop and "{" not in str(task.delegate_to) else "a delegated-to host"


def _fail_unified(utr: t.Any, task: t.Any) -> None:
    """The same as below, on ansible-core 2.21's unified task result, whose ignore_errors and failed_when are per
    item. (The variable that the task registers keeps the result as the worker made it.)"""
    if utr.ignore_unreachable:
        return
    items = [item for item in utr.loop_results or [] if item.unreachable]
    name = _host_name(task, bool(utr.loop_results))
    for item in items:
        item.unreachable = False
        item.failed = True
        item.failed_when_result = True
        item.msg = _did_not_answer(name, item.msg)
    utr.unreachable = False
    utr.failed = True
    utr.failed_when_result = True
    utr.msg = items[0].msg if items else _did_not_answer(name, utr.msg)


def fail_delegated_unreachable(result: t.Any) -> None:
    """Turn the result of a task whose delegated-to host did not answer into a failure of the task, in place."""
    task = getattr(result, "task", None) or getattr(result, "_task")
    host = getattr(result, "host", None) or getattr(result, "_host")
    utr = getattr(result, "utr", None)
    # _return_data since ansible-core 2.19, _result before, utr since 2.21.
    data = getattr(result, "_return_data", None)
    data = getattr(result, "_result", None) if data is None else data
    if utr is None and not isinstance(data, dict):
        raise TypeError("a task result of a kind it does not know (%s)" % type(result).__name__)
    if not (utr.unreachable if utr is not None else data.get("unreachable")):
        return
    if not task.delegate_to or task.delegate_to == host.name:
        return
    if utr is not None:
        _fail_unified(utr, task)
        return
    if task.ignore_unreachable:
        return
    items = [item for item in data.get("results") or [] if isinstance(item, dict) and item.get("unreachable")]
    name = _host_name(task, bool(items))
    # As the task executor does for a loop's failed items: the task's ignore_errors is what each item's evaluated to
    # (the task's own may still be a template), the items that failed already having had their say.
    ignore_errors = bool(task.ignore_errors) if data.get("failed") or not items else True
    for item in items:
        del item["unreachable"]
        item["failed"] = True
        # A failed_when that the other items answered is not asked for this one: it failed.
        item["failed_when_result"] = True
        ignore_errors = ignore_errors and bool(item.pop("_ansible_ignore_errors", False))
        item["msg"] = _did_not_answer(name, item.get("msg"))
    if items:
        task.ignore_errors = ignore_errors
    data.pop("unreachable")
    data["failed"] = True
    data["failed_when_result"] = True
    data["msg"] = items[0]["msg"] if items else _did_not_answer(name, data.get("msg"))


class _Results(collections.deque):
    """The strategy's queue of task results, which fails a delegated task as a result is queued."""

    def append(self, x: t.Any) -> None:
        try:
            fail_delegated_unreachable(x)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # The thread that queues results must not die of it (ansible-playbook would wait for ever): the
            # result is then treated as Ansible's own strategy does.
            Display().warning("kubeha.gce.linear could not read a task result (%s: %s); it is handled as by "
                              "ansible.builtin.linear" % (type(exc).__name__, exc))
        super().append(x)


class StrategyModule(_LinearStrategy):
    """ansible.builtin.linear, with the results queue above."""

    def __init__(self, tqm: t.Any) -> None:
        super().__init__(tqm)
        # Nothing is queued before the first task; the thread that queues results reads the attribute each time.
        self._results = _Results(self._results)
