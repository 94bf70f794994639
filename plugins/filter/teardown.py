# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What teardown deletes, and what it says it deleted and left."""

from __future__ import annotations

import typing as t


def teardown_targets(cluster: t.Mapping[str, t.Any], keep_data_disk: bool = False) -> list[dict[str, str]]:
    """The replicas teardown deletes, by name and zone: each listed replica and, unless the data disks are kept, the
    replica of each data disk that no VM has attached (its VM gone already), sorted by name; none in a zone that does
    not answer (``unavailable_zones``: a zone that stopped answering while the cluster was read still lists the
    replicas it listed before), as nothing there can be deleted now."""
    found = {r["name"]: {"name": r["name"], "zone": r["zone"]} for r in cluster.get("replicas") or []}
    if not keep_data_disk:
        for disk in cluster.get("detached_data_disks") or []:
            found.setdefault(disk["replica"], {"name": disk["replica"], "zone": disk["zone"]})
    down = {zone.get("name") for zone in cluster.get("unavailable_zones") or []}
    return [found[name] for name in sorted(found) if found[name]["zone"] not in down]


def _address_line(network: t.Mapping[str, t.Any], name: str, deleted: bool, delete_address: bool,
                  unavailable: t.Sequence[str], check_mode: bool) -> tuple[list[str], str]:
    """The actions to add (check mode only) and the line about the reserved address."""
    address = network.get("address")
    if deleted:
        return [], "the reserved address %s is deleted" % name
    if not address:
        return [], "the reserved address %s does not exist" % name
    label = "%s (%s)" % (name, address.get("ip"))
    if delete_address and unavailable:
        return [], ("the reserved address %s is kept: a replica in a zone that does not answer may still use it; it is "
                    "deleted by the run once the zones answer" % label)
    if delete_address and check_mode:
        return ["delete address %s" % label], ""
    if address.get("users") and not check_mode:
        return [], "the reserved address %s is kept, in use by %s" % (
            label, ", ".join(str(user).rstrip("/").rsplit("/", 1)[-1] for user in address["users"]))
    return [], ("the reserved address %s is kept, so that a cluster bootstrapped again with this name gets the same IP "
                "(delete_address=true deletes it)" % label)


def teardown_report(results: t.Sequence[t.Mapping[str, t.Any]], cluster: str, region: str,
                    unavailable: t.Sequence[str] = (), delete_address: bool = False,
                    check_mode: bool = False) -> list[str]:
    """The summary of a teardown run: what it deleted (in check mode, would delete), the reserved address, and what
    may be left in the zones that do not answer. ``results`` are the registered results of its ha_lb,
    gce_master_replica (each loop item) and gce_master_network tasks, the network's last."""
    results = [r for r in results if r and not r.get("skipped")]
    network = results[-1] if results else {}
    actions = [action for result in results for action in result.get("actions") or []]
    deleted = any(action.startswith("delete address ") for action in network.get("actions") or [])
    more, address = _address_line(network, "%s-master-ip" % cluster, deleted, delete_address, unavailable, check_mode)
    actions += more
    if actions:
        lines = ["cluster %s in region %s, %s: %s" % (cluster, region, "what a real run would do (check mode)"
                                                      if check_mode else "done", "; ".join(actions))]
    else:
        lines = ["cluster %s in region %s: nothing of its masters is left%s; nothing to do" % (
            cluster, region, " in the zones that answer" if unavailable else "")]
    kept = sorted(r["kept_data_disk"]["name"] for r in results if r.get("kept_data_disk"))
    if kept:
        lines.append("data disks kept (keep_data_disk=true): %s" % ", ".join(kept))
    if address:
        lines.append(address)
    if unavailable:
        lines.append("zones that do not answer Compute Engine: %s. Whatever the cluster has there (a replica's VM and "
                     "data disk, the load balancer's instance group) cannot be listed or deleted now; run the same "
                     "command again once they answer" % ", ".join(sorted(unavailable)))
    lines.append("worker nodes and anything else without the cluster's master labels were not touched")
    return lines


class FilterModule:
    """What teardown deletes and says."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"teardown_targets": teardown_targets, "teardown_report": teardown_report}
