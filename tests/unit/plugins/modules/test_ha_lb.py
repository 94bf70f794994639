# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kubeha.gce.plugins.modules import ha_lb
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import (
    BASE,
    PROJECT,
    address,
    error,
    fake_gce,
    instance,
    not_found,
    ok,
    op_done,
    op_pending,
    operation,
    run_module,
    zone_url,
)

ARGS = {"cluster_name": "k", "region": "europe-west1", "state": "balanced", "members": ["k-master"]}
IP = "203.0.113.10"
EPHEMERAL = "203.0.113.7"
REGION_URL = "%sprojects/%s/regions/europe-west1" % (BASE, PROJECT)
ZONE_URL = zone_url("europe-west1-b")
MASTER_LINK = "%s/instances/k-master" % ZONE_URL
RULE_LINK = "%s/forwardingRules/k-master" % REGION_URL
SERVICE_LINK = "%s/backendServices/k-master" % REGION_URL
CHECK_LINK = "%s/healthChecks/k-master-hc" % REGION_URL
GROUP_LINK = "%s/instanceGroups/k-master" % ZONE_URL
DESCRIPTION = "kubeha.gce: API server load balancer of the masters of cluster k (kubeha-cluster=k)"
LABELS = {"kubeha-cluster": "k", "kubeha-role": "master"}

#: Every read of LoadBalancer.read() in order, for a cluster whose one replica holds the address.
READ_NAMES = ["addresses.get", "instances.aggregatedList", "forwardingRules.get", "regionBackendServices.get",
              "regionHealthChecks.get", "targetPools.get", "httpHealthChecks.get", "instanceGroups.aggregatedList"]
BALANCED_READ_NAMES = READ_NAMES + ["instanceGroups.listInstances"]


def run(http, check_mode=False, diff=False, **args):
    return run_module(ha_lb.main, dict(ARGS, **args), http, check_mode=check_mode, diff=diff)


def replicas(*instances):
    return ok({"items": {"zones/europe-west1-b": {"instances": list(instances)}}})


def health_check(description=DESCRIPTION):
    return {"kind": "compute#healthCheck", "name": "k-master-hc", "description": description, "type": "HTTPS",
            "httpsHealthCheck": {"port": 443, "requestPath": "/readyz", "proxyHeader": "NONE"},
            "checkIntervalSec": 5, "timeoutSec": 5, "healthyThreshold": 2, "unhealthyThreshold": 2,
            "region": REGION_URL, "selfLink": CHECK_LINK}


def group():
    return {"kind": "compute#instanceGroup", "name": "k-master", "description": DESCRIPTION, "zone": ZONE_URL,
            "selfLink": GROUP_LINK, "size": 1}


def groups(*found):
    return ok({"items": {"zones/europe-west1-b": {"instanceGroups": list(found)}}})


def group_instances(*links):
    return ok({"items": [{"instance": link, "status": "RUNNING"} for link in links]})


def service(backends=True, fingerprint="svc-fp-1"):
    return {"kind": "compute#backendService", "name": "k-master", "description": DESCRIPTION,
            "loadBalancingScheme": "EXTERNAL", "protocol": "TCP", "healthChecks": [CHECK_LINK],
            "backends": [{"group": GROUP_LINK, "balancingMode": "CONNECTION"}] if backends else [],
            "fingerprint": fingerprint, "region": REGION_URL, "selfLink": SERVICE_LINK}


def rule():
    return {"kind": "compute#forwardingRule", "name": "k-master", "description": DESCRIPTION, "IPAddress": IP,
            "IPProtocol": "TCP", "portRange": "443-443", "loadBalancingScheme": "EXTERNAL",
            "backendService": SERVICE_LINK, "labels": LABELS, "region": REGION_URL, "selfLink": RULE_LINK}


def healthy():
    return ok({"healthStatus": [{"instance": MASTER_LINK, "ipAddress": "10.132.0.2", "port": 443,
                                 "healthState": "HEALTHY"}]})


def single_read():
    """The reads of a cluster in state single: k-master holds the address, no load balancer."""
    return [ok(address(ip=IP, users=[MASTER_LINK])), replicas(instance(nat_ip=IP)),
            not_found(), not_found(), not_found(), not_found(), not_found(), ok({})]


def balanced_read(backends=True, fingerprint="svc-fp-1"):
    """The reads of a cluster in state balanced on a backend service with k-master behind it."""
    return [ok(address(ip=IP, users=[RULE_LINK])), replicas(instance(nat_ip=EPHEMERAL)),
            ok(rule()), ok(service(backends, fingerprint)), ok(health_check()), not_found(), not_found(),
            groups(group()), group_instances(MASTER_LINK)]


def regional():
    """A regional operation that is waited for, and its end."""
    return [op_pending(region="europe-west1"), op_done(region="europe-west1")]


def zonal():
    return [op_pending(), op_done()]


@pytest.mark.parametrize("args, message", [
    ({"state": "single", "members": ["k-master", "k-master-2"]},
     "state=single needs exactly one member, the replica that gets the reserved address; members has 2"),
    ({"members": []}, "state=balanced needs at least one member"),
    ({"members": ["k-master", "k-master"]}, "members lists replica 'k-master' twice"),
    ({"backend": "target_pool", "health_check": {"protocol": "HTTPS", "port": 8080}},
     "health_check.protocol is HTTPS, but a target pool takes only a legacy HTTP health check"),
    ({"health_check": {"enabled": False}}, "health_check.enabled=false is only possible with backend=target_pool"),
    ({"backend": "target_pool"}, "health_check.port is needed for an HTTP health check"),
    ({"health_check": {"timeout_sec": 10, "check_interval_sec": 5}},
     "health_check.timeout_sec (10) must not be longer than health_check.check_interval_sec (5)"),
    ({"health_check": {"check_interval_sec": 0, "timeout_sec": 0}},
     "health_check.check_interval_sec is 0; it must be between 1 and 300"),
    ({"health_check": {"unhealthy_threshold": 11}}, "health_check.unhealthy_threshold is 11; it must be between 1 and 10"),
    ({"wait_healthy": True, "wait_for": ["k-master-c"]}, "wait_for names 'k-master-c', which is not one of the members"),
], ids=["single-with-two", "balanced-without-members", "duplicate-member", "pool-with-https-check",
        "service-without-check", "pool-check-without-port", "timeout-over-interval", "zero-interval",
        "threshold-over-ten", "wait-for-a-stranger"])
def test_bad_input_fails_before_any_request(args, message):
    with fake_gce([]) as http:
        result = run(http, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert http.calls == []


def test_missing_address_fails():
    with fake_gce([not_found(), ok({"items": {}})]) as http:
        result = run(http)
    assert result["failed"] is True
    assert "address 'k-master-ip' does not exist in region europe-west1" in result["msg"]
    assert http.names == ["addresses.get", "addresses.aggregatedList"]
    assert http.calls[1].query["filter"] == ['name = "k-master-ip"']
    assert http.mutating == []


def test_absent_needs_no_address():
    # A cluster torn down, its address deleted too: nothing is left, and nothing is asked for.
    with fake_gce([not_found(), ok({"items": {}}), ok({"items": {}})] + [not_found()] * 5 + [ok({"items": {}})]) as http:
        result = run(http, state="absent", members=[])
    assert result["changed"] is False and result["actions"] == [] and result["address"] is None
    assert http.names == ["addresses.get", "addresses.aggregatedList"] + READ_NAMES[1:]
    assert http.mutating == []


def test_absent_deletes_what_is_left_once_the_address_is_gone():
    # A health check left by a stopped run of a cluster whose address is deleted: deleted, and read again without it.
    gone = [not_found(), ok({"items": {}}), ok({"items": {}})]
    leftover = gone + [not_found(), not_found(), ok(health_check()), not_found(), not_found(), ok({"items": {}})]
    with fake_gce(leftover + [op_done(region="europe-west1", zone=None)] + gone + [not_found()] * 5 + [ok({"items": {}})]) as http:
        result = run(http, state="absent", members=[])
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["actions"] == ["delete health check k-master-hc (europe-west1)"]
    assert http.mutating == ["regionHealthChecks.delete"]


def test_address_in_another_region_is_named():
    other = address(region="us-central1", ip=IP)
    with fake_gce([not_found(), ok({"items": {"regions/us-central1": {"addresses": [other]}}})]) as http:
        result = run(http)
    assert result["failed"] is True
    assert "address 'k-master-ip' is in us-central1, not in region europe-west1" in result["msg"]
    assert http.mutating == []


def test_single_to_balanced_in_check_mode_plans_every_step_and_changes_nothing():
    with fake_gce(single_read()) as http:
        result = run(http, check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["actions"] == [
        "create health check k-master-hc (europe-west1)",
        "create instance group k-master (europe-west1-b)",
        "add k-master to instance group k-master (europe-west1-b)",
        "create backend service k-master (europe-west1) with the groups in europe-west1-b",
        "free address k-master-ip (203.0.113.10) from replica k-master",
        "create forwarding rule k-master (europe-west1) on 203.0.113.10:443",
        "give replica k-master an ephemeral external IP",
    ]
    assert http.names == READ_NAMES
    assert http.mutating == []
    assert http.done()
    assert result["diff"]["before"] == {"state": "single", "backend": None, "address": IP, "holder": "k-master",
                                        "members": ["k-master"], "resources": []}
    assert result["diff"]["after"] == {
        "state": "balanced", "backend": "backend_service", "address": IP, "holder": None, "members": ["k-master"],
        "resources": ["backend service k-master (europe-west1)", "forwarding rule k-master (europe-west1)",
                      "health check k-master-hc (europe-west1)", "instance group k-master (europe-west1-b)"]}
    assert result["state"] == "balanced"


def test_single_to_balanced_builds_the_backend_first_and_moves_the_address_last():
    responses = (single_read()
                 + regional()  # regionHealthChecks.insert
                 + zonal()  # instanceGroups.insert
                 + zonal()  # instanceGroups.addInstances
                 + regional()  # regionBackendServices.insert
                 + zonal()  # instances.deleteAccessConfig
                 + regional()  # forwardingRules.insert
                 + zonal()  # instances.addAccessConfig
                 + balanced_read() + [healthy()])
    with fake_gce(responses) as http:
        result = run(http)
    assert http.done()
    changes = http.names[len(READ_NAMES):len(READ_NAMES) + 14]
    assert changes == ["regionHealthChecks.insert", "regionOperations.wait",
                       "instanceGroups.insert", "zoneOperations.wait",
                       "instanceGroups.addInstances", "zoneOperations.wait",
                       "regionBackendServices.insert", "regionOperations.wait",
                       "instances.deleteAccessConfig", "zoneOperations.wait",
                       "forwardingRules.insert", "regionOperations.wait",
                       "instances.addAccessConfig", "zoneOperations.wait"]
    assert http.names[len(READ_NAMES) + 14:] == BALANCED_READ_NAMES + ["regionBackendServices.getHealth"]
    bodies = {c.method: c.body for c in http.calls}
    assert bodies["regionHealthChecks.insert"] == {
        "name": "k-master-hc", "description": DESCRIPTION, "checkIntervalSec": 5, "timeoutSec": 5,
        "healthyThreshold": 2, "unhealthyThreshold": 2, "type": "HTTPS",
        "httpsHealthCheck": {"port": 443, "requestPath": "/readyz"}}
    assert bodies["instanceGroups.addInstances"] == {
        "instances": [{"instance": "projects/kubeha-test/zones/europe-west1-b/instances/k-master"}]}
    assert bodies["regionBackendServices.insert"]["backends"] == [
        {"group": "projects/kubeha-test/zones/europe-west1-b/instanceGroups/k-master", "balancingMode": "CONNECTION"}]
    assert bodies["regionBackendServices.insert"]["healthChecks"] == [
        "projects/kubeha-test/regions/europe-west1/healthChecks/k-master-hc"]
    delete = [c for c in http.calls if c.method == "instances.deleteAccessConfig"][0]
    assert delete.query == {"accessConfig": ["External NAT"], "networkInterface": ["nic0"]}
    assert bodies["forwardingRules.insert"] == {
        "name": "k-master", "description": DESCRIPTION, "IPAddress": IP, "IPProtocol": "TCP", "portRange": "443",
        "loadBalancingScheme": "EXTERNAL", "labels": LABELS,
        "backendService": "projects/kubeha-test/regions/europe-west1/backendServices/k-master"}
    assert bodies["instances.addAccessConfig"] == {"name": "External NAT", "type": "ONE_TO_ONE_NAT"}
    assert bodies["regionBackendServices.getHealth"] == {"group": GROUP_LINK}
    assert result["changed"] is True and result["state"] == "balanced" and result["holder"] is None
    assert result["members"] == [{"name": "k-master", "zone": "europe-west1-b", "internal_ip": "10.132.0.2",
                                  "external_ip": EPHEMERAL, "health": "HEALTHY"}]


def failed_regional(code="INTERNAL_ERROR"):
    return [op_pending(region="europe-west1"), ok(operation(region="europe-west1", errors=[
        {"code": code, "message": "injected"}]))]


def test_a_failed_step_after_an_external_ip_was_removed_gives_one_back():
    # balanced -> single: the member's ephemeral IP goes first; the forwarding rule's delete then fails. It gets
    # an (ephemeral) external IP again, so that the next run reaches it over SSH.
    responses = balanced_read() + zonal() + failed_regional() + zonal()
    with fake_gce(responses) as http:
        result = run(http, state="single", members=["k-master"])
    assert http.done()
    assert http.names[len(BALANCED_READ_NAMES):] == [
        "instances.deleteAccessConfig", "zoneOperations.wait", "forwardingRules.delete", "regionOperations.wait",
        "instances.addAccessConfig", "zoneOperations.wait"]
    assert [c for c in http.calls if c.method == "instances.addAccessConfig"][0].body == {
        "name": "External NAT", "type": "ONE_TO_ONE_NAT"}
    assert result["failed"] is True and "INTERNAL_ERROR" in result["msg"]
    # single -> balanced: the holder frees the address; the forwarding rule's insert fails: the address goes back.
    responses = (single_read() + regional() + zonal() + zonal() + regional()  # check, group, add, service
                 + zonal() + failed_regional() + zonal())  # free the address, rule insert fails, give it back
    with fake_gce(responses) as http:
        result = run(http)
    assert http.done() and result["failed"] is True
    back = [c for c in http.calls if c.method == "instances.addAccessConfig"]
    assert [c.body for c in back] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT", "natIP": IP}]


def test_balanced_rerun_changes_nothing():
    with fake_gce(balanced_read() + [healthy()]) as http:
        result = run(http, diff=True)
    assert result["changed"] is False
    assert result["actions"] == []
    # listInstances and getHealth are POSTs that only read; nothing else is sent.
    assert http.names == BALANCED_READ_NAMES + ["regionBackendServices.getHealth"]
    assert http.done()
    assert result["diff"]["before"] == result["diff"]["after"]
    assert result["diff"]["after"]["state"] == "balanced"
    assert result["members"][0]["health"] == "HEALTHY"


def test_stale_backend_service_fingerprint_is_reread_and_retried_once():
    responses = (balanced_read(backends=False, fingerprint="svc-fp-1")
                 + [error(412, "conditionNotMet", "Invalid fingerprint."),
                    ok(service(backends=False, fingerprint="svc-fp-2"))]
                 + regional()  # the second patch
                 + balanced_read() + [healthy()])
    with fake_gce(responses) as http:
        result = run(http)
    assert http.done()
    n = len(BALANCED_READ_NAMES)
    assert http.names[n:n + 4] == ["regionBackendServices.patch", "regionBackendServices.get",
                                   "regionBackendServices.patch", "regionOperations.wait"]
    first, second = http.calls[n].body, http.calls[n + 2].body
    assert first["fingerprint"] == "svc-fp-1"
    assert second["fingerprint"] == "svc-fp-2"
    assert second["backends"] == [{"group": "projects/kubeha-test/zones/europe-west1-b/instanceGroups/k-master",
                                   "balancingMode": "CONNECTION"}]
    assert result["changed"] is True
    assert result["actions"] == ["set the backends of backend service k-master (europe-west1) to the groups in "
                                 "europe-west1-b"]


def test_same_named_health_check_of_someone_else_is_never_touched():
    responses = [ok(address(ip=IP, users=[MASTER_LINK])), replicas(instance(nat_ip=IP)), not_found(), not_found(),
                 ok(health_check(description="made by hand"))]
    with fake_gce(responses) as http:
        result = run(http)
    assert result["failed"] is True
    assert ("health check 'k-master-hc' (europe-west1) exists but was not made by kubeha.gce for cluster 'k'"
            in result["msg"])
    assert http.names == READ_NAMES[:5]
    assert http.mutating == []


@pytest.mark.parametrize("description", ["kubeha.gce: load balancer of cluster k2 (kubeha-cluster=k2)",
                                         "kubeha.gce: load balancer of cluster ok (kubeha-cluster=k-other)"])
def test_a_marker_of_another_cluster_whose_name_starts_alike_is_not_ours(description):
    responses = [ok(address(ip=IP, users=[MASTER_LINK])), replicas(instance(nat_ip=IP)), not_found(), not_found(),
                 ok(health_check(description=description))]
    with fake_gce(responses) as http:
        result = run(http)
    assert result["failed"] is True
    assert "exists but was not made by kubeha.gce for cluster 'k'" in result["msg"]
    assert http.mutating == []
