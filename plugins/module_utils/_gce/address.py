# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to the kubeha.gce collection: finding a reserved regional external address."""

from __future__ import annotations

import typing as t

from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import ComputeApi, GceError
from ansible_collections.kubeha.gce.plugins.module_utils._gce.names import short


def external_address(api: ComputeApi, name: str, region: str, prefix: str = "", elsewhere_hint: str = "",
                     missing_hint: str = "", internal_hint: str = "an external one is needed") -> dict[str, t.Any]:
    """The reserved external address ``name`` of ``region``; a GceError that says where it is otherwise.

    ``prefix`` starts every message (for example the option's name); the hints end them.
    """
    address = api.get("addresses", region=region, address=name)
    if address is None:
        found = [a for a in api.aggregated("addresses", filter='name = "%s"' % name) if a.get("name") == name]
        if found:
            where = short(found[0].get("region")) or "global"
            raise GceError("%saddress '%s' is in %s, not in region %s%s" % (prefix, name, where, region, elsewhere_hint),
                           status=400, reason="invalid")
        raise GceError("%saddress '%s' does not exist in region %s%s" % (prefix, name, region, missing_hint),
                       status=404, reason="notFound")
    if address.get("addressType", "EXTERNAL") != "EXTERNAL":
        message = "%saddress '%s' is an internal address (%s); %s" % (prefix, name, address.get("address"), internal_hint)
        raise GceError(message, status=400, reason="invalid")
    return address
