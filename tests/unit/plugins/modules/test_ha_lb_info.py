# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
import yaml

from ansible_collections.kubeha.gce.plugins.module_utils._gce.lb import TARGET_ARGUMENT_SPEC
from ansible_collections.kubeha.gce.plugins.modules import ha_lb, ha_lb_info
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import (
    BASE,
    PROJECT,
    address,
    fake_gce,
    instance,
    not_found,
    ok,
    run_module,
    zone_url,
)
from ansible_collections.kubeha.gce.tests.unit.plugins.modules.test_ha_lb import (
    BALANCED_READ_NAMES,
    CHECK_LINK,
    DESCRIPTION,
    EPHEMERAL,
    GROUP_LINK,
    IP,
    MASTER_LINK,
    READ_NAMES,
    REGION_URL,
    RULE_LINK,
    SERVICE_LINK,
    balanced_read,
    group,
    group_instances,
    groups,
    health_check,
    healthy,
    replicas,
    rule,
    service,
    single_read,
)

ARGS = {"cluster_name": "k", "region": "europe-west1"}
ZONE_C_URL = zone_url("europe-west1-c")
MASTER_C_LINK = "%s/instances/k-master-c" % ZONE_C_URL
POOL_LINK = "%s/targetPools/k-master" % REGION_URL
HTTP_CHECK_LINK = "%sprojects/%s/global/httpHealthChecks/k-master-hc" % (BASE, PROJECT)
ADDRESS = {"name": "k-master-ip", "ip": IP,
           "self_link": "%sprojects/%s/regions/europe-west1/addresses/k-master-ip" % (BASE, PROJECT)}
#: Methods that only read; listInstances and getHealth are POSTs.
READS = ("get", "list", "aggregatedList", "listInstances", "getHealth")


OMIT = object()


def run(http, check_mode=False, **args):
    given = {k: v for k, v in dict(ARGS, **args).items() if v is not OMIT}
    return run_module(ha_lb_info.main, given, http, check_mode=check_mode)


def only_reads(http):
    return [name for name in http.names if name.rsplit(".", 1)[1] not in READS]


def member(name="k-master", zone="europe-west1-b", external_ip=EPHEMERAL, health=None):
    return {"name": name, "zone": zone, "internal_ip": "10.132.0.2", "external_ip": external_ip, "health": health}


def resource(kind, name, link, region="europe-west1", zone=None):
    return {"kind": kind, "name": name, "region": region, "zone": zone, "self_link": link}


SERVICE_RESOURCES = [
    resource("forwarding rule", "k-master", RULE_LINK),
    resource("backend service", "k-master", SERVICE_LINK),
    resource("health check", "k-master-hc", CHECK_LINK),
    resource("instance group", "k-master", GROUP_LINK, region=None, zone="europe-west1-b"),
]


def pool_read():
    """A kube-up style target pool with a legacy HTTP check over two replicas in two zones."""
    pool = {"kind": "compute#targetPool", "name": "k-master", "description": DESCRIPTION,
            "instances": [MASTER_LINK, MASTER_C_LINK], "healthChecks": [HTTP_CHECK_LINK], "sessionAffinity": "NONE",
            "region": REGION_URL, "selfLink": POOL_LINK}
    check = {"kind": "compute#httpHealthCheck", "name": "k-master-hc", "description": DESCRIPTION, "port": 8080,
             "requestPath": "/readyz", "checkIntervalSec": 5, "timeoutSec": 5, "healthyThreshold": 2,
             "unhealthyThreshold": 2, "selfLink": HTTP_CHECK_LINK}
    pool_rule = dict(rule(), target=POOL_LINK)
    del pool_rule["backendService"]
    instances = {"zones/europe-west1-b": {"instances": [instance(nat_ip=EPHEMERAL)]},
                 "zones/europe-west1-c": {"instances": [instance("k-master-c", "europe-west1-c", nat_ip="203.0.113.8")]}}
    return [ok(address(ip=IP, users=[RULE_LINK])), ok({"items": instances}), ok(pool_rule), not_found(),
            not_found(), ok(pool), ok(check), ok({}),
            ok({"healthStatus": [{"instance": MASTER_LINK, "ipAddress": IP, "healthState": "HEALTHY"}]}),
            ok({"healthStatus": [{"instance": MASTER_C_LINK, "ipAddress": IP, "healthState": "UNHEALTHY"}]})]


def missing_address_read():
    """No address k-master-ip anywhere; the one replica has no external IP at all."""
    return [not_found(), ok({"items": {}}), replicas(instance(nat_ip=None)),
            not_found(), not_found(), not_found(), not_found(), not_found(), ok({})]


#: name -> (the answers GCE gives, what ha_lb_info returns)
SCENARIOS = {
    "single": (single_read, {
        "changed": False, "failed": False, "state": "single", "backend": None, "address": ADDRESS,
        "holder": "k-master", "members": [member(external_ip=IP)], "resources": []}),
    "balanced-backend-service": (lambda: balanced_read() + [healthy()], {
        "changed": False, "failed": False, "state": "balanced", "backend": "backend_service", "address": ADDRESS,
        "holder": "k-master", "members": [member(health="HEALTHY")], "resources": SERVICE_RESOURCES}),
    "balanced-target-pool": (pool_read, {
        "changed": False, "failed": False, "state": "balanced", "backend": "target_pool", "address": ADDRESS,
        "holder": "k-master",
        "members": [member(health="HEALTHY"),
                    member("k-master-c", "europe-west1-c", external_ip="203.0.113.8", health="UNHEALTHY")],
        "resources": [resource("forwarding rule", "k-master", RULE_LINK),
                      resource("target pool", "k-master", POOL_LINK),
                      resource("HTTP health check", "k-master-hc", HTTP_CHECK_LINK, region=None)]}),
    "absent": (lambda: [ok(address(ip=IP)), replicas(instance(nat_ip=EPHEMERAL)), not_found(), not_found(),
                        not_found(), not_found(), not_found(), ok({})], {
        "changed": False, "failed": False, "state": "absent", "backend": None, "address": ADDRESS, "holder": None,
        "members": [], "resources": []}),
    "missing-address": (missing_address_read, {
        "changed": False, "failed": False, "state": "absent", "backend": None, "address": None, "holder": None,
        "members": [], "resources": []}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_reports_the_load_balancer_as_it_is_with_reads_only(scenario):
    responses, expected = SCENARIOS[scenario]
    with fake_gce(responses()) as http:
        result = run(http)
    assert result == expected
    assert http.done()
    assert only_reads(http) == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_check_mode_reports_the_same(scenario):
    responses, expected = SCENARIOS[scenario]
    with fake_gce(responses()) as http:
        checked = run(http, check_mode=True)
    with fake_gce(responses()) as again:
        real = run(again)
    assert checked == real == expected
    assert http.names == again.names
    assert only_reads(http) == []


def test_single_reads_what_ha_lb_reads_and_asks_no_health():
    with fake_gce(single_read()) as http:
        run(http)
    assert http.names == READ_NAMES


def test_backend_service_health_is_asked_per_group_as_ha_lb_asks_it():
    with fake_gce(balanced_read() + [healthy()]) as http:
        run(http)
    assert http.names == BALANCED_READ_NAMES + ["regionBackendServices.getHealth"]
    assert http.calls[-1].body == {"group": GROUP_LINK}
    assert http.calls[-1].path == "projects/%s/regions/europe-west1/backendServices/k-master/getHealth" % PROJECT


def test_target_pool_health_is_asked_per_instance():
    with fake_gce(pool_read()) as http:
        run(http)
    assert http.names == READ_NAMES + ["targetPools.getHealth", "targetPools.getHealth"]
    assert [c.body for c in http.calls[-2:]] == [{"instance": MASTER_LINK}, {"instance": MASTER_C_LINK}]


def test_resources_left_without_a_forwarding_rule_are_listed():
    """What a killed ha_lb run leaves: the address back on the replica, a health check and a group."""
    responses = [ok(address(ip=IP, users=[MASTER_LINK])), replicas(instance(nat_ip=IP)), not_found(), not_found(),
                 ok(health_check()), not_found(), not_found(), groups(group()), group_instances(MASTER_LINK)]
    with fake_gce(responses) as http:
        result = run(http)
    assert http.done()
    assert result["state"] == "single" and result["backend"] is None and result["holder"] == "k-master"
    assert result["members"] == [member(external_ip=IP)]
    kinds = [(r["kind"], r["name"]) for r in result["resources"]]
    assert kinds == [("health check", "k-master-hc"), ("instance group", "k-master")]
    assert "regionBackendServices.getHealth" not in http.names


def test_missing_address_with_a_forwarding_rule_is_balanced_without_an_address():
    responses = [not_found(), ok({"items": {}}), replicas(instance(nat_ip=EPHEMERAL)), ok(rule()),
                 ok(service()), ok(health_check()),
                 not_found(), not_found(), groups(group()), group_instances(MASTER_LINK), healthy()]
    with fake_gce(responses) as http:
        result = run(http)
    assert http.done()
    assert result["state"] == "balanced" and result["address"] is None and result["holder"] is None
    assert result["members"] == [member(health="HEALTHY")]
    assert only_reads(http) == []


def test_address_in_another_region_fails_as_in_ha_lb():
    other = address(region="us-central1", ip=IP)
    with fake_gce([not_found(), ok({"items": {"regions/us-central1": {"addresses": [other]}}})]) as http:
        result = run(http)
    assert result["failed"] is True
    assert "address 'k-master-ip' is in us-central1, not in region europe-west1" in result["msg"]
    assert only_reads(http) == []


def test_same_named_resource_of_someone_else_fails_as_in_ha_lb():
    responses = [ok(address(ip=IP, users=[MASTER_LINK])), replicas(instance(nat_ip=IP)), not_found(), not_found(),
                 ok(health_check(description="made by hand"))]
    with fake_gce(responses) as http:
        result = run(http)
    assert result["failed"] is True
    assert "health check 'k-master-hc' (europe-west1) exists but was not made by kubeha.gce for cluster 'k'" in result["msg"]
    assert only_reads(http) == []


def test_address_used_by_something_else_fails():
    other = "%s/instances/someone-else" % zone_url("europe-west1-b")
    responses = [ok(address(ip=IP, users=[other])), replicas(instance(nat_ip=EPHEMERAL)), not_found(), not_found(),
                 not_found(), not_found(), not_found(), ok({})]
    with fake_gce(responses) as http:
        result = run(http)
    assert result["failed"] is True
    assert "address 'k-master-ip' (%s) is in use by" % IP in result["msg"]
    assert only_reads(http) == []


def test_other_address_name_is_read():
    with fake_gce([ok(address(name="api-ip", ip=IP)), replicas(instance(nat_ip=IP)), not_found(), not_found(),
                   not_found(), not_found(), not_found(), ok({})]) as http:
        result = run(http, address="api-ip")
    assert http.calls[0].path == "projects/%s/regions/europe-west1/addresses/api-ip" % PROJECT
    assert result["address"]["name"] == "api-ip" and result["state"] == "single"


@pytest.mark.parametrize("args, message", [
    ({"cluster_name": "K_8s"}, "cluster_name 'K_8s' is not a valid Compute Engine name"),
    ({"region": "europe-west1-b"}, "region 'europe-west1-b' is not a Compute Engine region name"),
    ({"address": "Master IP"}, "address 'Master IP' is not a valid Compute Engine name"),
    ({"region": OMIT}, "missing required arguments: region"),
], ids=["cluster-name", "zone-as-region", "address", "no-region"])
def test_bad_input_fails_before_any_request(args, message):
    with fake_gce([]) as http:
        result = run(http, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert http.calls == []


def test_options_are_ha_lbs():
    """The options that name the load balancer are ha_lb's, in the argument spec and in the docs."""
    info = yaml.safe_load(ha_lb_info.DOCUMENTATION)["options"]
    writer = yaml.safe_load(ha_lb.DOCUMENTATION)["options"]
    assert sorted(info) == sorted(TARGET_ARGUMENT_SPEC)
    for name, spec in TARGET_ARGUMENT_SPEC.items():
        assert info[name] == writer[name]
        assert info[name]["type"] == spec["type"]
        assert info[name].get("required", False) == spec.get("required", False)
        assert info[name].get("default") == spec.get("default")
