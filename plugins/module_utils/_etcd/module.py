# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: what every etcd module shares (connection options, errors)."""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import (
    DEFAULT_ENDPOINT,
    EtcdClient,
    EtcdError,
    connection_from_params,
)

#: The connection options of every etcd module (documented in the kubeha.gce.etcd doc fragment).
CONNECTION_ARGUMENT_SPEC: dict[str, t.Any] = dict(
    endpoints=dict(type="list", elements="str", default=[DEFAULT_ENDPOINT]),
    ca_cert=dict(type="path"),
    client_cert=dict(type="path"),
    client_key=dict(type="path", no_log=False),
    timeout=dict(type="int", default=10),
)


def etcd_module(argument_spec: dict[str, t.Any], **kwargs: t.Any) -> AnsibleModule:
    """An AnsibleModule with the shared connection options and check mode."""
    spec = dict(CONNECTION_ARGUMENT_SPEC)
    spec.update(argument_spec)
    return AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)


def run(module: AnsibleModule, work: t.Callable[[EtcdClient], dict[str, t.Any]]) -> None:
    """Check the connection options, do the work, and turn every EtcdError into one ``fail_json``."""
    try:
        result = work(EtcdClient(connection_from_params(module.params)))
    except EtcdError as exc:
        module.fail_json(msg=str(exc), error=exc.to_dict())
    module.exit_json(**result)
