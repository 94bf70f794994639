# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: what every GCE module shares (spec, connect, errors)."""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import CREDENTIALS_HINT, GOOGLE_PACKAGES, ComputeApi, GceError
from ansible_collections.kubeha.gce.plugins.module_utils._gce.auth import (
    AUTH_ARGUMENT_SPEC,
    AUTH_MUTUALLY_EXCLUSIVE,
    connect,
    missing_libraries,
)
from ansible_collections.kubeha.gce.plugins.module_utils._gce.names import InvalidInput


def gce_module(argument_spec: dict[str, t.Any], **kwargs: t.Any) -> AnsibleModule:
    """An AnsibleModule with the shared auth options, check mode, and the Google libraries checked."""
    spec = dict(AUTH_ARGUMENT_SPEC)
    spec.update(argument_spec)
    exclusive = list(AUTH_MUTUALLY_EXCLUSIVE) + list(kwargs.pop("mutually_exclusive", []))
    module = AnsibleModule(argument_spec=spec, mutually_exclusive=exclusive, supports_check_mode=True, **kwargs)
    error = missing_libraries()
    if error:
        module.fail_json(msg=missing_required_lib(GOOGLE_PACKAGES), exception=error)
    return module


T = t.TypeVar("T")


def checked(module: AnsibleModule, build: t.Callable[..., T], *args: t.Any) -> T:
    """Validate input before any API call; bad input becomes ``fail_json`` naming the problem."""
    try:
        return build(*args)
    except InvalidInput as exc:
        module.fail_json(msg=str(exc))
        raise  # not reached: fail_json exits


def run(module: AnsibleModule, work: t.Callable[[ComputeApi], dict[str, t.Any]]) -> None:
    """Connect, do the work, and turn every collection error into one ``fail_json``."""
    try:
        result = work(connect(module.params))
    except InvalidInput as exc:
        module.fail_json(msg=str(exc))
    except GceError as exc:
        message = str(exc)
        if exc.kind == "credentials":  # only then: a zone outage or a quota is not a credentials problem
            message = "%s; %s" % (message, CREDENTIALS_HINT)
        module.fail_json(msg=message, error=exc.to_dict())
    module.exit_json(**result)


def converge(module: AnsibleModule, spec: t.Any, resource: t.Callable[..., t.Any],
             act: t.Callable[[t.Any], dict[str, t.Any]] = lambda converger: converger.run()) -> None:
    """``run`` for the writing modules: ``act`` on the ``resource`` class built for ``spec``, with the
    module's check mode and warnings; the result keeps its ``diff`` only when diff mode is on."""
    def work(api: ComputeApi) -> dict[str, t.Any]:
        result = act(resource(api, spec, check_mode=module.check_mode, warn=module.warn))
        if not module._diff:  # pylint: disable=protected-access
            result.pop("diff")
        return result

    run(module, work)
