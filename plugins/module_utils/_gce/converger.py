# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: what every resource class of the modules shares."""

from __future__ import annotations

import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import ComputeApi


class Converger:
    """Reads first, then acts: each change is recorded in ``actions`` and, except in check mode, made.

    ``spec`` is the subclass's request; it has a ``wait_timeout`` for every operation.
    """

    def __init__(self, api: ComputeApi, spec: t.Any, check_mode: bool = False,
                 warn: t.Callable[[str], None] = lambda msg: None) -> None:
        self.api = api
        self.spec = spec
        self.check_mode = check_mode
        self.warn = warn
        self.actions: list[str] = []

    def _act(self, description: str, fn: t.Callable[[], t.Any]) -> None:
        self.actions.append(description)
        if not self.check_mode:
            fn()

    def _wait(self, operation: dict[str, t.Any], what: str) -> None:
        self.api.wait(operation, self.spec.wait_timeout, what)
