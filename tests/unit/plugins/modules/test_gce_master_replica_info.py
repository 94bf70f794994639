# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.kubeha.gce.plugins.modules import gce_master_replica_info
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import address, disk, error, fake_gce, instance, ok, run_module


def run(http, **args):
    return run_module(gce_master_replica_info.main, args, http)


def zones(*names, down=()):
    """A zones.list page: the given zones of europe-west1 (and one of another region)."""
    items = [{"name": n, "status": "DOWN" if n in down else "UP",
              "region": "https://compute.googleapis.com/compute/v1/projects/p/regions/%s" % n.rsplit("-", 1)[0]}
             for n in names + ("us-east1-b",)]
    return ok({"items": items})


EUROPE = ("europe-west1-b", "europe-west1-c", "europe-west1-d")


def scoped(*instances):
    items = {}
    for inst in instances:
        zone = inst["zone"].rsplit("/", 1)[-1]
        items.setdefault("zones/%s" % zone, {"instances": []})["instances"].append(inst)
    return items


def test_lists_replicas_of_the_region_by_label_sorted_by_name():
    page1 = {"items": scoped(instance(name="k-master-c", zone="europe-west1-c")), "nextPageToken": "p2"}
    page2 = {"items": scoped(
        instance(name="k-master", zone="europe-west1-b"),
        # Same labels, other region: not this region's replica.
        instance(name="k-master-us", zone="us-east1-b"),
        # A foreign instance the filter should not have returned: ignored all the same.
        instance(name="k-master-x", zone="europe-west1-d", labels={"kubeha-cluster": "other", "kubeha-role": "master"}),
    )}
    responses = [zones(*EUROPE, down=("europe-west1-d",)), ok(page1), ok(page2), ok(disk(name="k-master-c-pd", zone="europe-west1-c")),
                 ok(disk(name="k-master-pd"))]
    with fake_gce(responses) as http:
        result = run(http, cluster_name="k", region="europe-west1")
    assert result["changed"] is False
    assert result["region"] == "europe-west1"
    # The region's zones with their status, for the preflight check that a zone exists.
    assert result["zones"] == [{"name": "europe-west1-b", "status": "UP"}, {"name": "europe-west1-c", "status": "UP"},
                               {"name": "europe-west1-d", "status": "DOWN"}]
    assert [r["name"] for r in result["replicas"]] == ["k-master", "k-master-c"]
    assert result["replicas"][1]["zone"] == "europe-west1-c"
    assert result["replicas"][1]["data_disk"]["name"] == "k-master-c-pd"
    assert http.names[0] == "zones.list"
    first = http.calls[1]
    assert first.method == "instances.aggregatedList"
    assert first.query["filter"] == ['(labels.kubeha-cluster = "k") AND (labels.kubeha-role = "master")']
    assert http.calls[2].query["pageToken"] == ["p2"]
    assert http.names[3:] == ["disks.get", "disks.get"]
    assert http.mutating == []


def test_zone_selects_its_region():
    with fake_gce([zones(*EUROPE), ok({"items": {}})]) as http:
        result = run(http, cluster_name="k", zone="europe-west1-d")
    assert result == {"changed": False, "failed": False, "region": "europe-west1", "replicas": [],
                      "zones": [{"name": z, "status": "UP"} for z in EUROPE], "unavailable_zones": []}


UNREACHABLE = "Scope 'zones/europe-west1-c' is unreachable: the zone is currently unavailable."


def test_a_zone_that_does_not_answer_is_reported_and_the_others_are_listed():
    """A zone outage as GCE answers it: the aggregated list succeeds with a warning for the zone's scope."""
    items = scoped(instance(name="k-master", zone="europe-west1-b"), instance(name="k-master-d", zone="europe-west1-d"))
    items["zones/europe-west1-c"] = {"warning": {"code": "UNREACHABLE", "message": UNREACHABLE,
                                                 "data": [{"key": "scope", "value": "zones/europe-west1-c"}]}}
    responses = [zones(*EUROPE), ok({"items": items, "unreachables": ["zones/europe-west1-c"]}), ok(disk()),
                 ok(disk(name="k-master-d-pd", zone="europe-west1-d"))]
    with fake_gce(responses) as http:
        result = run(http, cluster_name="k", region="europe-west1")
    assert result["failed"] is False and result["changed"] is False
    assert [r["name"] for r in result["replicas"]] == ["k-master", "k-master-d"]
    assert result["unavailable_zones"] == [{"name": "europe-west1-c", "message": UNREACHABLE}]
    assert [z["status"] for z in result["zones"]] == ["UP", "UNAVAILABLE", "UP"]
    # Nothing is asked of the zone that does not answer.
    assert all(c.path.find("europe-west1-c") < 0 for c in http.calls)


def test_a_zone_that_stops_answering_while_disks_are_read_is_reported_too():
    items = scoped(instance(name="k-master", zone="europe-west1-b"), instance(name="k-master-c", zone="europe-west1-c"))
    busy = error(503, "backendError", "The zone 'europe-west1-c' is currently unavailable.")
    with fake_gce([zones(*EUROPE), ok({"items": items}), ok(disk()), busy]) as http:
        result = run(http, cluster_name="k", region="europe-west1", retry_deadline=0)
    assert result["failed"] is False
    assert [r["name"] for r in result["replicas"]] == ["k-master", "k-master-c"]
    assert result["replicas"][1]["data_disk"] == {
        "name": "k-master-c-pd",
        "self_link": "https://compute.googleapis.com/compute/v1/projects/kubeha-test/zones/europe-west1-c/disks/k-master-c-pd"}
    [unavailable] = result["unavailable_zones"]
    assert unavailable["name"] == "europe-west1-c"
    assert unavailable["message"] == ("disks.get in zone europe-west1-c still failing after 1 attempts in 0 seconds "
                                      "(the retry deadline): The zone 'europe-west1-c' is currently unavailable.")


def test_an_error_that_is_not_an_outage_still_fails():
    items = scoped(instance(name="k-master", zone="europe-west1-b"))
    with fake_gce([zones(*EUROPE), ok({"items": items}), error(403, "forbidden", "Required 'compute.disks.get'")]) as http:
        result = run(http, cluster_name="k", region="europe-west1")
    assert result["failed"] is True
    assert result["error"]["kind"] == "credentials"
    assert result["msg"].startswith("disks.get in zone europe-west1-b was refused (403 forbidden): Required")
    assert "GCP_SERVICE_ACCOUNT_FILE" in result["msg"]


def test_zone_outside_the_region_fails_before_any_call():
    with fake_gce([]) as http:
        result = run(http, cluster_name="k", zone="us-east1-b", region="europe-west1")
    assert result["failed"] is True
    assert result["msg"] == "zone us-east1-b is not in region europe-west1"
    assert http.calls == []


def labelled(region, cluster="k"):
    return dict(address(region=region, name="%s-master-ip" % cluster),
                labels={"kubeha-cluster": cluster, "kubeha-role": "master"})


def test_without_region_or_zone_the_region_is_that_of_the_reserved_address():
    addresses = ok({"items": {"regions/europe-west1": {"addresses": [labelled("europe-west1")]},
                              # The same name, made by someone else: not the cluster's.
                              "regions/us-east1": {"addresses": [address(region="us-east1")]}}})
    with fake_gce([addresses, zones(*EUROPE), ok({"items": scoped(instance())}), ok(disk())]) as http:
        result = run(http, cluster_name="k")
    assert result["region"] == "europe-west1" and [r["name"] for r in result["replicas"]] == ["k-master"]
    assert http.calls[0].method == "addresses.aggregatedList" and http.calls[0].query["filter"] == ['name = "k-master-ip"']


def test_without_region_or_zone_and_no_reserved_address_nothing_is_found():
    with fake_gce([ok({"items": {"regions/europe-west1": {"warning": {"code": "NO_RESULTS_ON_PAGE"}}}})]) as http:
        result = run(http, cluster_name="k")
    assert not result.get("failed"), result.get("msg")
    assert result["region"] == "" and result["replicas"] == [] and result["zones"] == []


def test_a_reserved_address_in_two_regions_is_ambiguous():
    two = ok({"items": {"regions/europe-west1": {"addresses": [labelled("europe-west1")]},
                        "regions/us-east1": {"addresses": [labelled("us-east1")]}}})
    with fake_gce([two]) as http:
        result = run(http, cluster_name="k")
    assert result["failed"] is True
    assert result["msg"].startswith("cluster 'k' has a reserved address k-master-ip in several regions "
                                    "(europe-west1, us-east1): give zone or region")


def test_the_data_disks_that_no_vm_has_attached_when_asked():
    disks = ok({"items": {
        "zones/europe-west1-c": {"disks": [disk(name="k-master-c-pd", zone="europe-west1-c")]},
        "zones/europe-west1-b": {"disks": [disk(name="k-master-pd", users=["projects/p/zones/europe-west1-b/instances/k-master"]),
                                           # A boot disk, and another region's data disk: not data disks of this region.
                                           disk(name="k-master-d", zone="europe-west1-b")]},
        "zones/us-east1-b": {"disks": [disk(name="k-master-us-pd", zone="us-east1-b")]}}})
    with fake_gce([zones(*EUROPE), ok({"items": scoped(instance())}), ok(disk()), disks]) as http:
        result = run(http, cluster_name="k", region="europe-west1", detached_data_disks=True)
    assert result["detached_data_disks"] == [{"name": "k-master-c-pd", "zone": "europe-west1-c", "replica": "k-master-c"}]
    assert http.calls[3].method == "disks.aggregatedList"
    assert http.calls[3].query["filter"] == ['(labels.kubeha-cluster = "k") AND (labels.kubeha-role = "master")']
    with fake_gce([zones(*EUROPE), ok({"items": scoped(instance())}), ok(disk())]) as http:
        assert "detached_data_disks" not in run(http, cluster_name="k", region="europe-west1")


def test_check_mode_lists_too():
    with fake_gce([zones(*EUROPE), ok({"items": scoped(instance())}), ok(disk())]) as http:
        result = run_module(gce_master_replica_info.main, {"cluster_name": "k", "region": "europe-west1"}, http,
                            check_mode=True)
    assert [r["name"] for r in result["replicas"]] == ["k-master"]
