# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Compute API simulator, through google-api-python-client as any client would use it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from googleapiclient.errors import HttpError

from conftest import PROJECT, ZONE, wait

DISK_TYPE = "zones/%s/diskTypes/pd-ssd" % ZONE
IMAGE = "projects/debian-cloud/global/images/family/debian-12"


def error_of(exc: HttpError) -> tuple[int, str, str]:
    body = json.loads(exc.content)["error"]
    return body["code"], body["errors"][0]["reason"], body["message"]


def instance_body(name="k-master", disks=None, nat_ip=None, **extra):
    access = {"type": "ONE_TO_ONE_NAT", "name": "External NAT"}
    if nat_ip:
        access["natIP"] = nat_ip
    body = {
        "name": name,
        "machineType": "zones/%s/machineTypes/e2-standard-2" % ZONE,
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": IMAGE, "diskSizeGb": "20"}}]
        + (disks or []),
        "networkInterfaces": [{"network": "global/networks/default", "accessConfigs": [access]}],
        "labels": {"kubeha-cluster": "k", "kubeha-role": "master"},
        "metadata": {"items": [{"key": "a", "value": "1"}]},
        "tags": {"items": ["k-master"]},
    }
    body.update(extra)
    return body


def create_disk(compute, name="k-master-pd", size="20"):
    return wait(compute, compute.disks().insert(project=PROJECT, zone=ZONE, body={
        "name": name, "sizeGb": size, "type": DISK_TYPE, "labels": {"kubeha-cluster": "k"}}).execute())


def create_instance(compute, zone=ZONE, **kw):
    if zone != ZONE:
        kw.setdefault("machineType", "zones/%s/machineTypes/e2-standard-2" % zone)
    return wait(compute, compute.instances().insert(project=PROJECT, zone=zone, body=instance_body(**kw)).execute())


# -- catalog ------------------------------------------------------------------------------------------

def test_regions_have_several_zones_and_images_resolve_families(compute):
    regions = compute.regions().list(project=PROJECT).execute()["items"]
    assert len(regions) >= 5
    assert all(len(r["zones"]) >= 3 for r in regions)
    zone = compute.zones().get(project=PROJECT, zone="europe-west1-c").execute()
    assert zone["status"] == "UP" and zone["region"].endswith("/regions/europe-west1")
    image = compute.images().getFromFamily(project="debian-cloud", family="debian-12").execute()
    assert image["family"] == "debian-12" and image["status"] == "READY"
    with pytest.raises(HttpError) as caught:
        compute.zones().get(project=PROJECT, zone="europe-west1-z").execute()
    assert caught.value.resp.status == 404


# -- validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ({"name": "d", "sizeGb": "20", "colour": "red"}, 'Unknown name "colour" at \'resource\''),
    ({"sizeGb": "20"}, "Required field 'resource.name' not specified"),
    ({"name": "Bad_Name"}, "Invalid value for field 'resource.name': 'Bad_Name'"),
    ({"name": "d", "sizeGb": "big"}, "Invalid value at 'resource.sizeGb' (TYPE_INT64)"),
    ({"name": "d", "sizeGb": "5"}, "Disk size cannot be smaller than 10 GB"),
    ({"name": "d", "type": "zones/europe-west1-c/diskTypes/pd-ssd"}, "Resource must be in zone europe-west1-b"),
    ({"name": "d", "labels": {"Team": "x"}}, "Invalid value for field 'resource.labels'"),
])
def test_bad_bodies_are_400_in_gces_shape(compute, body, message):
    with pytest.raises(HttpError) as caught:
        compute.disks().insert(project=PROJECT, zone=ZONE, body=body).execute()
    status, reason, text = error_of(caught.value)
    assert status == 400 and reason == "invalid"
    assert message in text


def test_nested_unknown_field_is_named_with_its_path(compute):
    body = instance_body()
    body["networkInterfaces"][0]["accessConfigs"][0]["publicIp"] = "1.2.3.4"
    with pytest.raises(HttpError) as caught:
        compute.instances().insert(project=PROJECT, zone=ZONE, body=body).execute()
    assert "Unknown name \"publicIp\" at 'resource.networkInterfaces[0].accessConfigs[0]'" in error_of(caught.value)[2]


def test_unknown_query_parameter_is_refused(lab, compute):
    request = compute.instances().list(project=PROJECT, zone=ZONE)
    request.uri += "&colour=red"
    with pytest.raises(HttpError) as caught:
        request.execute()
    assert caught.value.resp.status == 400


def test_unknown_machine_type_and_missing_boot_disk(compute):
    with pytest.raises(HttpError) as caught:
        compute.instances().insert(project=PROJECT, zone=ZONE, body=instance_body(
            machineType="zones/%s/machineTypes/e2-huge" % ZONE)).execute()
    assert "Machine type with name 'e2-huge' does not exist" in error_of(caught.value)[2]
    body = instance_body()
    body["disks"][0]["boot"] = False
    with pytest.raises(HttpError) as caught:
        compute.instances().insert(project=PROJECT, zone=ZONE, body=body).execute()
    assert "Exactly one boot disk" in error_of(caught.value)[2]


# -- resources and the rules of real life ------------------------------------------------------------

def test_instance_gets_addresses_disks_and_labels(compute):
    create_disk(compute)
    create_instance(compute, disks=[{"source": "zones/%s/disks/k-master-pd" % ZONE, "deviceName": "master-pd"}])
    instance = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()
    assert instance["status"] == "RUNNING"
    nic = instance["networkInterfaces"][0]
    assert nic["networkIP"].startswith("10.132.0.")
    assert nic["accessConfigs"][0]["natIP"].startswith("203.0.113.")
    assert [d["deviceName"] for d in instance["disks"]] == ["persistent-disk-0", "master-pd"]
    assert instance["labelFingerprint"] and instance["metadata"]["fingerprint"] and instance["tags"]["fingerprint"]
    boot = compute.disks().get(project=PROJECT, zone=ZONE, disk="k-master").execute()
    assert boot["users"] == [instance["selfLink"]] and boot["sourceImage"].endswith("debian-12-bookworm-v20251111")
    found = compute.instances().aggregatedList(
        project=PROJECT, filter='(labels.kubeha-cluster = "k") AND (labels.kubeha-role = "master")').execute()
    assert [i["name"] for i in found["items"]["zones/%s" % ZONE]["instances"]] == ["k-master"]
    assert "warning" in found["items"]["zones/us-east1-b"]
    none = compute.instances().aggregatedList(project=PROJECT, filter='labels.kubeha-cluster = "other"').execute()
    assert all("instances" not in scope for scope in none["items"].values())


def test_already_exists_and_not_found(compute):
    create_disk(compute)
    with pytest.raises(HttpError) as caught:
        compute.disks().insert(project=PROJECT, zone=ZONE, body={"name": "k-master-pd", "type": DISK_TYPE}).execute()
    assert error_of(caught.value)[:2] == (409, "alreadyExists")
    with pytest.raises(HttpError) as caught:
        compute.disks().get(project=PROJECT, zone=ZONE, disk="nope").execute()
    assert error_of(caught.value) == (404, "notFound", "The resource 'projects/kubeha-lab/zones/europe-west1-b/disks/nope' "
                                                       "was not found")


def test_attached_disk_and_used_address_cannot_be_deleted(compute):
    address = wait(compute, compute.addresses().insert(project=PROJECT, region="europe-west1",
                                                       body={"name": "k-master-ip"}).execute())
    assert address["status"] == "DONE"
    ip = compute.addresses().get(project=PROJECT, region="europe-west1", address="k-master-ip").execute()["address"]
    create_disk(compute)
    create_instance(compute, nat_ip=ip, disks=[{"source": "zones/%s/disks/k-master-pd" % ZONE, "deviceName": "master-pd"}])
    used = compute.addresses().get(project=PROJECT, region="europe-west1", address="k-master-ip").execute()
    assert used["status"] == "IN_USE" and used["users"][0].endswith("/instances/k-master")
    for call in (compute.addresses().delete(project=PROJECT, region="europe-west1", address="k-master-ip"),
                 compute.disks().delete(project=PROJECT, zone=ZONE, disk="k-master-pd")):
        with pytest.raises(HttpError) as caught:
            call.execute()
        assert error_of(caught.value)[:2] == (400, "resourceInUseByAnotherResource")
    # A second instance cannot take the address or the disk.
    with pytest.raises(HttpError) as caught:
        compute.instances().insert(project=PROJECT, zone=ZONE, body=instance_body("other", nat_ip=ip)).execute()
    assert "already being used by" in error_of(caught.value)[2]
    # Deleting the instance frees both; the data disk (autoDelete false) stays, the boot disk goes.
    wait(compute, compute.instances().delete(project=PROJECT, zone=ZONE, instance="k-master").execute())
    assert compute.addresses().get(project=PROJECT, region="europe-west1", address="k-master-ip").execute()["status"] == "RESERVED"
    assert compute.disks().get(project=PROJECT, zone=ZONE, disk="k-master-pd").execute()["users"] == []
    with pytest.raises(HttpError):
        compute.disks().get(project=PROJECT, zone=ZONE, disk="k-master").execute()


def test_regions_and_zones_of_related_resources_must_agree(compute):
    wait(compute, compute.addresses().insert(project=PROJECT, region="us-east1", body={"name": "far"}).execute())
    ip = compute.addresses().get(project=PROJECT, region="us-east1", address="far").execute()["address"]
    with pytest.raises(HttpError) as caught:
        compute.instances().insert(project=PROJECT, zone=ZONE, body=instance_body(nat_ip=ip)).execute()
    assert "was not found in region 'europe-west1'" in error_of(caught.value)[2]
    wait(compute, compute.disks().insert(project=PROJECT, zone="europe-west1-c", body={
        "name": "elsewhere", "type": "zones/europe-west1-c/diskTypes/pd-ssd"}).execute())
    with pytest.raises(HttpError) as caught:
        create_instance(compute, disks=[{"source": "zones/europe-west1-c/disks/elsewhere"}])
    assert "same zone" in error_of(caught.value)[2]


def test_fingerprints_guard_metadata_labels_and_tags(compute):
    create_instance(compute)
    instance = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()
    stale = instance["metadata"]["fingerprint"]
    wait(compute, compute.instances().setMetadata(project=PROJECT, zone=ZONE, instance="k-master", body={
        "fingerprint": stale, "items": [{"key": "a", "value": "2"}]}).execute())
    updated = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()
    assert updated["metadata"]["items"] == [{"key": "a", "value": "2"}]
    assert updated["metadata"]["fingerprint"] != stale
    calls = [
        compute.instances().setMetadata(project=PROJECT, zone=ZONE, instance="k-master", body={"fingerprint": stale, "items": []}),
        compute.instances().setLabels(project=PROJECT, zone=ZONE, instance="k-master",
                                      body={"labelFingerprint": "AAAAAAAAAAA=", "labels": {}}),
        compute.instances().setTags(project=PROJECT, zone=ZONE, instance="k-master", body={"fingerprint": "x", "items": []}),
        compute.instances().setMetadata(project=PROJECT, zone=ZONE, instance="k-master", body={"items": []}),
    ]
    for call in calls:
        with pytest.raises(HttpError) as caught:
            call.execute()
        assert error_of(caught.value)[:2] == (412, "conditionNotMet")


def test_operations_move_from_pending_to_done_and_wait_blocks(lab, compute):
    # Phases of seconds, so that a loaded host answering in a few hundred milliseconds still sees each one.
    lab.control("PUT", "timing", {"pending": 1.0, "running": 2.0})
    op = compute.disks().insert(project=PROJECT, zone=ZONE, body={"name": "slow", "type": DISK_TYPE}).execute()
    assert op["status"] == "PENDING" and op["operationType"] == "insert"
    assert op["targetLink"].endswith("/zones/europe-west1-b/disks/slow")
    seen = ["PENDING"]
    while seen[-1] == "PENDING":
        time.sleep(0.05)
        seen.append(compute.zoneOperations().get(project=PROJECT, zone=ZONE, operation=op["name"]).execute()["status"])
    assert seen[-1] == "RUNNING", seen
    started = time.monotonic()
    done = compute.zoneOperations().wait(project=PROJECT, zone=ZONE, operation=op["name"]).execute()
    assert done["status"] == "DONE" and time.monotonic() - started > 0.1
    assert "error" not in done and done["progress"] == 100
    listed = compute.zoneOperations().list(project=PROJECT, zone=ZONE).execute()["items"]
    assert op["name"] in [o["name"] for o in listed]


def test_wait_returns_before_done_at_its_limit(lab, compute):
    lab.control("PUT", "timing", {"running": 3, "wait_limit": 0.5})
    op = compute.disks().insert(project=PROJECT, zone=ZONE, body={"name": "slower", "type": DISK_TYPE}).execute()
    answer = compute.zoneOperations().wait(project=PROJECT, zone=ZONE, operation=op["name"]).execute()
    assert answer["status"] in ("PENDING", "RUNNING")


def test_regional_and_global_operations_have_their_scope(compute):
    op = compute.addresses().insert(project=PROJECT, region="europe-west1", body={"name": "r"}).execute()
    assert op["region"].endswith("/regions/europe-west1") and "zone" not in op
    assert wait(compute, op)["status"] == "DONE"
    op = compute.firewalls().insert(project=PROJECT, body={"name": "k-master-https", "allowed": [
        {"IPProtocol": "tcp", "ports": ["443"]}], "targetTags": ["k-master"]}).execute()
    assert "zone" not in op and "region" not in op
    assert wait(compute, op)["status"] == "DONE"
    firewall = compute.firewalls().get(project=PROJECT, firewall="k-master-https").execute()
    assert firewall["sourceRanges"] == ["0.0.0.0/0"] and firewall["direction"] == "INGRESS" and firewall["priority"] == 1000


def test_address_labels_change_only_through_set_labels_with_the_current_fingerprint(compute):
    wait(compute, compute.addresses().insert(project=PROJECT, region="europe-west1", body={"name": "k-master-ip"}).execute())
    address = compute.addresses().get(project=PROJECT, region="europe-west1", address="k-master-ip").execute()
    assert address["labels"] == {} and address["labelFingerprint"]
    labels = {"kubeha-cluster": "k", "kubeha-role": "master"}
    op = compute.addresses().setLabels(project=PROJECT, region="europe-west1", resource="k-master-ip", body={
        "labels": labels, "labelFingerprint": address["labelFingerprint"]}).execute()
    assert op["region"].endswith("/regions/europe-west1") and wait(compute, op)["status"] == "DONE"
    labelled = compute.addresses().get(project=PROJECT, region="europe-west1", address="k-master-ip").execute()
    assert labelled["labels"] == labels and labelled["labelFingerprint"] != address["labelFingerprint"]
    with pytest.raises(HttpError) as caught:
        compute.addresses().setLabels(project=PROJECT, region="europe-west1", resource="k-master-ip", body={
            "labels": {}, "labelFingerprint": address["labelFingerprint"]}).execute()
    assert error_of(caught.value)[:2] == (412, "conditionNotMet")
    with pytest.raises(HttpError) as caught:
        compute.addresses().setLabels(project=PROJECT, region="europe-west1", resource="nope", body={
            "labels": {}, "labelFingerprint": address["labelFingerprint"]}).execute()
    assert error_of(caught.value)[:2] == (404, "notFound")


def test_firewall_patch_merges_and_the_network_must_exist(compute):
    wait(compute, compute.firewalls().insert(project=PROJECT, body={
        "name": "k-master-etcd", "description": "etcd (kubeha-cluster=k)", "network": "global/networks/default",
        "allowed": [{"IPProtocol": "tcp", "ports": ["2380-2381"]}], "sourceTags": ["k-master"],
        "sourceRanges": ["10.132.0.0/20"], "targetTags": ["k-master"]}).execute())
    # JSON merge patch: fields in the body replace (lists as a whole, [] empties one), the others stay.
    wait(compute, compute.firewalls().patch(project=PROJECT, firewall="k-master-etcd", body={
        "name": "k-master-etcd", "sourceRanges": [], "targetTags": ["k-master", "k-node"]}).execute())
    patched = compute.firewalls().get(project=PROJECT, firewall="k-master-etcd").execute()
    assert patched["sourceRanges"] == [] and patched["targetTags"] == ["k-master", "k-node"]
    assert patched["sourceTags"] == ["k-master"] and patched["description"] == "etcd (kubeha-cluster=k)"
    assert patched["allowed"] == [{"IPProtocol": "tcp", "ports": ["2380-2381"]}]
    assert patched["network"].endswith("/global/networks/default")
    with pytest.raises(HttpError) as caught:
        compute.firewalls().patch(project=PROJECT, firewall="k-master-etcd", body={"targetTags": ["k-master"]}).execute()
    assert error_of(caught.value) == (400, "invalid", "Required field 'resource.name' not specified")
    with pytest.raises(HttpError) as caught:
        compute.firewalls().insert(project=PROJECT, body={
            "name": "elsewhere", "network": "global/networks/other", "allowed": [{"IPProtocol": "tcp"}]}).execute()
    assert error_of(caught.value)[:2] == (400, "invalid")
    assert "The referenced network resource cannot be found" in error_of(caught.value)[2]


def test_load_balancer_resources_and_health(lab, compute):
    create_instance(compute)
    wait(compute, compute.addresses().insert(project=PROJECT, region="europe-west1", body={"name": "k-master-ip"}).execute())
    ip = compute.addresses().get(project=PROJECT, region="europe-west1", address="k-master-ip").execute()["address"]
    wait(compute, compute.regionHealthChecks().insert(project=PROJECT, region="europe-west1", body={
        "name": "k-master-hc", "type": "HTTPS", "httpsHealthCheck": {"port": 443, "requestPath": "/readyz"}}).execute())
    wait(compute, compute.instanceGroups().insert(project=PROJECT, zone=ZONE, body={"name": "k-master-b"}).execute())
    wait(compute, compute.instanceGroups().addInstances(project=PROJECT, zone=ZONE, instanceGroup="k-master-b", body={
        "instances": [{"instance": "zones/%s/instances/k-master" % ZONE}]}).execute())
    wait(compute, compute.regionBackendServices().insert(project=PROJECT, region="europe-west1", body={
        "name": "k-master", "protocol": "TCP", "loadBalancingScheme": "EXTERNAL",
        "healthChecks": ["regions/europe-west1/healthChecks/k-master-hc"],
        "backends": [{"group": "zones/%s/instanceGroups/k-master-b" % ZONE}]}).execute())
    wait(compute, compute.forwardingRules().insert(project=PROJECT, region="europe-west1", body={
        "name": "k-master", "IPAddress": ip, "IPProtocol": "TCP", "ports": ["443"],
        "backendService": "regions/europe-west1/backendServices/k-master"}).execute())
    address = compute.addresses().get(project=PROJECT, region="europe-west1", address="k-master-ip").execute()
    assert address["users"][0].endswith("/forwardingRules/k-master")
    health = compute.regionBackendServices().getHealth(project=PROJECT, region="europe-west1", backendService="k-master",
                                                       body={"group": "zones/%s/instanceGroups/k-master-b" % ZONE}).execute()
    assert [h["healthState"] for h in health["healthStatus"]] == ["HEALTHY"]
    network = lab.control("GET", "network")
    assert network["forwarding_rules"][0]["ip"] == ip
    assert [m["name"] for m in network["forwarding_rules"][0]["members"]] == ["k-master"]
    lab.control("POST", "zones/%s/instances/k-master/crash" % ZONE)
    health = compute.regionBackendServices().getHealth(project=PROJECT, region="europe-west1", backendService="k-master",
                                                       body={"group": "zones/%s/instanceGroups/k-master-b" % ZONE}).execute()
    assert [h["healthState"] for h in health["healthStatus"]] == ["UNHEALTHY"]
    # What is referenced cannot be deleted before what refers to it.
    for call in (compute.regionBackendServices().delete(project=PROJECT, region="europe-west1", backendService="k-master"),
                 compute.instanceGroups().delete(project=PROJECT, zone=ZONE, instanceGroup="k-master-b"),
                 compute.regionHealthChecks().delete(project=PROJECT, region="europe-west1", healthCheck="k-master-hc"),
                 compute.addresses().delete(project=PROJECT, region="europe-west1", address="k-master-ip")):
        with pytest.raises(HttpError) as caught:
            call.execute()
        assert error_of(caught.value)[:2] == (400, "resourceInUseByAnotherResource")
    stale = compute.regionBackendServices().get(project=PROJECT, region="europe-west1", backendService="k-master").execute()
    wait(compute, compute.regionBackendServices().patch(project=PROJECT, region="europe-west1", backendService="k-master",
                                                        body={"fingerprint": stale["fingerprint"], "backends": []}).execute())
    with pytest.raises(HttpError) as caught:
        compute.regionBackendServices().patch(project=PROJECT, region="europe-west1", backendService="k-master",
                                              body={"fingerprint": stale["fingerprint"], "backends": []}).execute()
    assert error_of(caught.value)[:2] == (412, "conditionNotMet")


def test_health_checks_update_and_groups_start_empty(lab, compute):
    create_instance(compute)
    region = "europe-west1"
    wait(compute, compute.regionHealthChecks().insert(project=PROJECT, region=region, body={
        "name": "hc", "type": "HTTPS", "httpsHealthCheck": {"port": 443, "requestPath": "/readyz"}}).execute())
    wait(compute, compute.regionHealthChecks().update(project=PROJECT, region=region, healthCheck="hc", body={
        "name": "hc", "type": "TCP", "tcpHealthCheck": {"port": 6443}, "checkIntervalSec": 2, "timeoutSec": 1}).execute())
    check = compute.regionHealthChecks().get(project=PROJECT, region=region, healthCheck="hc").execute()
    assert check["type"] == "TCP" and check["tcpHealthCheck"]["port"] == 6443 and "httpsHealthCheck" not in check
    assert check["checkIntervalSec"] == 2 and check["region"].endswith("/regions/europe-west1")
    with pytest.raises(HttpError) as caught:
        compute.regionHealthChecks().patch(project=PROJECT, region=region, healthCheck="hc",
                                           body={"timeoutSec": 5}).execute()
    assert error_of(caught.value)[:2] == (400, "invalid")
    wait(compute, compute.httpHealthChecks().insert(project=PROJECT, body={"name": "legacy", "port": 8080}).execute())
    wait(compute, compute.httpHealthChecks().patch(project=PROJECT, httpHealthCheck="legacy",
                                                   body={"requestPath": "/readyz"}).execute())
    legacy = compute.httpHealthChecks().get(project=PROJECT, httpHealthCheck="legacy").execute()
    assert (legacy["port"], legacy["requestPath"]) == (8080, "/readyz")
    # A group made again under the same name has no members of the old one.
    for _round in (1, 2):
        wait(compute, compute.instanceGroups().insert(project=PROJECT, zone=ZONE, body={"name": "g"}).execute())
        listed = compute.instanceGroups().listInstances(project=PROJECT, zone=ZONE, instanceGroup="g", body={}).execute()
        assert listed.get("items", []) == []
        wait(compute, compute.instanceGroups().addInstances(project=PROJECT, zone=ZONE, instanceGroup="g", body={
            "instances": [{"instance": "zones/%s/instances/k-master" % ZONE}]}).execute())
        wait(compute, compute.instanceGroups().delete(project=PROJECT, zone=ZONE, instanceGroup="g").execute())


def test_target_pool_members_and_health_checks(lab, compute):
    create_instance(compute)
    wait(compute, compute.httpHealthChecks().insert(project=PROJECT, body={"name": "k-master-hc", "port": 8080}).execute())
    wait(compute, compute.targetPools().insert(project=PROJECT, region="europe-west1", body={"name": "k-master"}).execute())
    wait(compute, compute.targetPools().addInstance(project=PROJECT, region="europe-west1", targetPool="k-master", body={
        "instances": [{"instance": "zones/%s/instances/k-master" % ZONE}]}).execute())
    wait(compute, compute.targetPools().addHealthCheck(project=PROJECT, region="europe-west1", targetPool="k-master", body={
        "healthChecks": [{"healthCheck": "global/httpHealthChecks/k-master-hc"}]}).execute())
    pool = compute.targetPools().get(project=PROJECT, region="europe-west1", targetPool="k-master").execute()
    assert pool["instances"][0].endswith("/instances/k-master") and pool["healthChecks"][0].endswith("/k-master-hc")
    health = compute.targetPools().getHealth(project=PROJECT, region="europe-west1", targetPool="k-master", body={
        "instance": "zones/%s/instances/k-master" % ZONE}).execute()
    assert health["healthStatus"][0]["healthState"] == "HEALTHY"
    wait(compute, compute.instances().delete(project=PROJECT, zone=ZONE, instance="k-master").execute())
    # A deleted instance leaves the pools it was in.
    pool = compute.targetPools().get(project=PROJECT, region="europe-west1", targetPool="k-master").execute()
    assert pool.get("instances", []) == []


def test_stop_start_reset(compute):
    create_instance(compute)
    wait(compute, compute.instances().stop(project=PROJECT, zone=ZONE, instance="k-master").execute())
    stopped = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()
    assert stopped["status"] == "TERMINATED"
    assert "natIP" not in stopped["networkInterfaces"][0]["accessConfigs"][0]
    wait(compute, compute.instances().start(project=PROJECT, zone=ZONE, instance="k-master").execute())
    started = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()
    assert started["status"] == "RUNNING" and started["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    wait(compute, compute.instances().reset(project=PROJECT, zone=ZONE, instance="k-master").execute())
    assert compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()["status"] == "RUNNING"


def test_access_configs_and_disks_change_in_place(compute):
    create_disk(compute)
    create_instance(compute)
    wait(compute, compute.instances().deleteAccessConfig(project=PROJECT, zone=ZONE, instance="k-master",
                                                         accessConfig="External NAT", networkInterface="nic0").execute())
    instance = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()
    assert "accessConfigs" not in instance["networkInterfaces"][0]
    wait(compute, compute.instances().addAccessConfig(project=PROJECT, zone=ZONE, instance="k-master", networkInterface="nic0",
                                                      body={"name": "External NAT", "type": "ONE_TO_ONE_NAT"}).execute())
    wait(compute, compute.instances().attachDisk(project=PROJECT, zone=ZONE, instance="k-master", body={
        "source": "zones/%s/disks/k-master-pd" % ZONE, "deviceName": "master-pd"}).execute())
    instance = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()
    assert instance["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert [d["deviceName"] for d in instance["disks"]] == ["persistent-disk-0", "master-pd"]
    wait(compute, compute.instances().detachDisk(project=PROJECT, zone=ZONE, instance="k-master", deviceName="master-pd").execute())
    assert compute.disks().get(project=PROJECT, zone=ZONE, disk="k-master-pd").execute()["users"] == []


# -- auth ------------------------------------------------------------------------------------------------

def test_calls_without_a_valid_token_get_401(lab):
    url = "%sprojects/%s/zones/%s" % (lab.endpoint, PROJECT, ZONE)
    for headers in ({}, {"Authorization": "Bearer made-up"}):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)  # nosec - loopback
        assert caught.value.code == 401
        assert json.loads(caught.value.read())["error"]["status"] == "UNAUTHENTICATED"


def test_a_key_the_lab_did_not_issue_is_refused(lab):
    from google.auth.exceptions import RefreshError
    from kubeha_lab.sim import auth

    forged, _record = auth.new_key(PROJECT, "deployer", lab.base + "/token")
    with pytest.raises(RefreshError) as caught:
        lab.client(forged).zones().get(project=PROJECT, zone=ZONE).execute()
    assert "invalid_grant" in str(caught.value)


def _jwt_client(lab, key, scopes):
    """A client as Google's own libraries (the GAPIC clients) authenticate: a self-signed JWT as the bearer token."""
    import google.oauth2.service_account
    import google_auth_httplib2
    import httplib2
    from googleapiclient import discovery

    credentials = google.oauth2.service_account.Credentials.from_service_account_info(
        key, scopes=scopes, default_scopes=None).with_always_use_jwt_access(True)
    if not scopes:
        credentials._create_self_signed_jwt("https://compute.googleapis.com/")  # pylint: disable=protected-access
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=30))
    return discovery.build("compute", "v1", http=http, static_discovery=True, cache_discovery=False,
                           client_options={"api_endpoint": lab.endpoint}), http


def test_a_self_signed_jwt_is_accepted_as_gce_accepts_it(lab):
    key = lab.new_key("gapic")
    before = len(lab.sim.state.data["tokens"])
    for scopes in (["https://www.googleapis.com/auth/compute"], None):  # by its scope, or by its audience
        compute, http = _jwt_client(lab, key, scopes)
        assert compute.zones().get(project=PROJECT, zone=ZONE).execute()["name"] == ZONE
    # No token was exchanged for it.
    assert len(lab.sim.state.data["tokens"]) == before


def test_a_self_signed_jwt_must_be_signed_by_an_issued_key_for_the_compute_api_and_current(lab):
    from kubeha_lab.sim import auth

    key = lab.new_key("gapic")
    keys = dict(lab.sim.state.data["accounts"])
    compute, http = _jwt_client(lab, key, ["https://www.googleapis.com/auth/compute"])
    compute.zones().get(project=PROJECT, zone=ZONE).execute()
    token = http.credentials.token
    claims = auth.verify_self_signed(token, keys, [auth.COMPUTE_AUDIENCE])
    assert claims["iss"] == claims["sub"] == key["client_email"]
    with pytest.raises(auth.TokenError, match="iat and exp"):  # expired
        auth.verify_self_signed(token, keys, [auth.COMPUTE_AUDIENCE], now=claims["exp"] + 3600)
    forged, _record = auth.new_key(PROJECT, "gapic", lab.base + "/token")
    compute, http = _jwt_client(lab, forged, ["https://www.googleapis.com/auth/compute"])
    with pytest.raises(HttpError) as caught:
        compute.zones().get(project=PROJECT, zone=ZONE).execute()
    assert caught.value.resp.status == 401 and "Invalid JWT Signature" in str(caught.value)
    compute, http = _jwt_client(lab, key, ["https://www.googleapis.com/auth/devstorage.read_only"])
    with pytest.raises(HttpError) as caught:  # neither a Compute scope nor the Compute audience
        compute.zones().get(project=PROJECT, zone=ZONE).execute()
    assert caught.value.resp.status == 401 and "do not allow the Compute API" in str(caught.value)


def test_another_project_is_not_found(compute):
    with pytest.raises(HttpError) as caught:
        compute.zones().get(project="someone-else", zone=ZONE).execute()
    assert caught.value.resp.status == 404


# -- persistence -------------------------------------------------------------------------------------------

def test_state_and_keys_survive_a_restart(lab):
    key = lab.new_key()
    compute = lab.client(key)
    create_disk(compute)
    lab.control("PUT", "timing", {"running": 1.0})
    op = compute.disks().insert(project=PROJECT, zone=ZONE, body={"name": "in-flight", "type": DISK_TYPE}).execute()
    lab.restart()
    compute = lab.client(key)
    assert compute.disks().get(project=PROJECT, zone=ZONE, disk="k-master-pd").execute()["status"] == "READY"
    # The operation accepted before the restart is finished by the new simulator.
    assert wait(compute, op)["status"] == "DONE"
    assert compute.disks().get(project=PROJECT, zone=ZONE, disk="in-flight").execute()["status"] == "READY"


# -- faults ------------------------------------------------------------------------------------------------

def zone_gets(compute, count):
    """``count`` zones.get calls, each answered 200 or (status, reason)."""
    answers = []
    for _attempt in range(count):
        try:
            compute.zones().get(project=PROJECT, zone=ZONE).execute(num_retries=0)
            answers.append(200)
        except HttpError as exc:
            answers.append((exc.resp.status, error_of(exc)[1]))
    return answers


def test_injected_error_rate(lab, compute):
    lab.control("PUT", "faults", {"seed": 3, "errors": {"compute.zones.get": {"rate": 0.5, "status": 503}}})
    answers = zone_gets(compute, 40)
    failed = answers.count((503, "backendError"))
    assert 8 <= failed <= 32 and answers.count(200) + failed == 40
    # Other methods are not affected.
    compute.regions().get(project=PROJECT, region="europe-west1").execute(num_retries=0)


def test_injected_errors_of_several_statuses(lab, compute):
    lab.control("PUT", "faults", {"seed": 5, "errors": {"*": {"rate": 0.6, "status": [503, 429]}}})
    answers = zone_gets(compute, 40)
    assert {a for a in answers if a != 200} == {(503, "backendError"), (429, "rateLimitExceeded")}, answers
    with pytest.raises(urllib.error.HTTPError) as refused:
        lab.control("PUT", "faults", {"errors": {"*": {"rate": 0.1, "status": [503, 404]}}})
    assert refused.value.code == 400


def test_rate_limit_answers_403_rate_limit_exceeded(lab, compute):
    lab.control("PUT", "faults", {"rate_limit": {"per_second": 3}})
    answers = zone_gets(compute, 6)
    assert answers[:3] == [200, 200, 200]
    assert (403, "rateLimitExceeded") in answers[3:]


def test_failed_operation_ends_done_with_an_error(lab, compute):
    lab.control("PUT", "faults", {"fail_operations": {"compute.disks.insert": {
        "count": 1, "code": "QUOTA_EXCEEDED", "message": "Quota 'SSD_TOTAL_GB' exceeded."}}})
    done = create_disk(compute)
    assert done["status"] == "DONE"
    assert done["error"]["errors"] == [{"code": "QUOTA_EXCEEDED", "message": "Quota 'SSD_TOTAL_GB' exceeded."}]
    assert done["httpErrorStatusCode"] == 400
    # Only once: the next one succeeds.
    assert "error" not in create_disk(compute, name="second")


def test_latency_delays_answers(lab, compute):
    lab.control("PUT", "faults", {"latency": {"compute.zones.get": 0.4}})
    started = time.monotonic()
    compute.zones().get(project=PROJECT, zone=ZONE).execute()
    assert time.monotonic() - started >= 0.4


def test_zone_outage(lab, compute):
    create_instance(compute)
    create_instance(compute, name="k-master-c", zone="europe-west1-c")
    lab.control("POST", "zones/%s/down" % ZONE)
    assert compute.zones().get(project=PROJECT, zone=ZONE).execute()["status"] == "DOWN"
    with pytest.raises(HttpError) as caught:
        compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute(num_retries=0)
    assert caught.value.resp.status == 503
    # As GCE documents: the aggregated list answers, with a warning instead of the zone's items.
    listed = compute.instances().aggregatedList(project=PROJECT).execute(num_retries=0)
    scoped = listed["items"]["zones/%s" % ZONE]
    assert "instances" not in scoped and scoped["warning"]["code"] == "UNREACHABLE"
    assert scoped["warning"]["data"] == [{"key": "scope", "value": "zones/%s" % ZONE}]
    assert listed["unreachables"] == ["zones/%s" % ZONE]
    assert [i["name"] for i in listed["items"]["zones/europe-west1-c"]["instances"]] == ["k-master-c"]
    # Regional and global calls go on.
    assert compute.regions().get(project=PROJECT, region="europe-west1").execute(num_retries=0)["name"] == "europe-west1"
    assert compute.firewalls().list(project=PROJECT).execute(num_retries=0)["kind"] == "compute#firewallList"
    lab.control("POST", "zones/%s/up" % ZONE)
    assert compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()["status"] == "RUNNING"
    # Its VMs run again, as GCE restarts them when the zone comes back.
    assert lab.sim.backend.dead == set() and lab.sim.backend.cut == set()


def test_request_log_counts_calls(lab, compute):
    lab.control("DELETE", "requests")
    compute.zones().get(project=PROJECT, zone=ZONE).execute()
    with pytest.raises(HttpError):
        compute.disks().get(project=PROJECT, zone=ZONE, disk="nope").execute()
    log = [r for r in lab.requests() if r["method"].startswith("compute.")]
    assert [(r["method"], r["status"]) for r in log] == [("compute.zones.get", 200), ("compute.disks.get", 404)]
    assert all(r["latency_ms"] >= 0 and r["path"].startswith("/compute/v1/") for r in log)


def test_responses_follow_the_discovery_document(lab, compute):
    """Every field the simulator returns is one the discovery document defines."""
    create_disk(compute)
    create_instance(compute, disks=[{"source": "zones/%s/disks/k-master-pd" % ZONE, "deviceName": "master-pd"}])
    wait(compute, compute.addresses().insert(project=PROJECT, region="europe-west1", body={"name": "ip"}).execute())
    wait(compute, compute.regionHealthChecks().insert(project=PROJECT, region="europe-west1", body={
        "name": "hc", "type": "TCP", "tcpHealthCheck": {"port": 443}}).execute())
    wait(compute, compute.instanceGroups().insert(project=PROJECT, zone=ZONE, body={"name": "g"}).execute())
    wait(compute, compute.regionBackendServices().insert(project=PROJECT, region="europe-west1", body={
        "name": "bs", "healthChecks": ["regions/europe-west1/healthChecks/hc"],
        "backends": [{"group": "zones/%s/instanceGroups/g" % ZONE}]}).execute())
    wait(compute, compute.forwardingRules().insert(project=PROJECT, region="europe-west1", body={
        "name": "fr", "IPAddress": "regions/europe-west1/addresses/ip", "ports": ["443"],
        "backendService": "regions/europe-west1/backendServices/bs"}).execute())
    wait(compute, compute.httpHealthChecks().insert(project=PROJECT, body={"name": "legacy"}).execute())
    wait(compute, compute.targetPools().insert(project=PROJECT, region="europe-west1", body={"name": "tp"}).execute())
    answers = {
        "Instance": compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute(),
        "Disk": compute.disks().get(project=PROJECT, zone=ZONE, disk="k-master-pd").execute(),
        "Address": compute.addresses().get(project=PROJECT, region="europe-west1", address="ip").execute(),
        "HealthCheck": compute.regionHealthChecks().get(project=PROJECT, region="europe-west1", healthCheck="hc").execute(),
        "InstanceGroup": compute.instanceGroups().get(project=PROJECT, zone=ZONE, instanceGroup="g").execute(),
        "BackendService": compute.regionBackendServices().get(project=PROJECT, region="europe-west1",
                                                              backendService="bs").execute(),
        "ForwardingRule": compute.forwardingRules().get(project=PROJECT, region="europe-west1", forwardingRule="fr").execute(),
        "HttpHealthCheck": compute.httpHealthChecks().get(project=PROJECT, httpHealthCheck="legacy").execute(),
        "TargetPool": compute.targetPools().get(project=PROJECT, region="europe-west1", targetPool="tp").execute(),
        "Firewall": compute.firewalls().get(project=PROJECT, firewall="default-allow-ssh").execute(),
        "Zone": compute.zones().get(project=PROJECT, zone=ZONE).execute(),
        "Region": compute.regions().get(project=PROJECT, region="europe-west1").execute(),
        "Image": compute.images().getFromFamily(project="debian-cloud", family="debian-12").execute(),
        "MachineType": compute.machineTypes().get(project=PROJECT, zone=ZONE, machineType="e2-standard-2").execute(),
        "Network": compute.networks().get(project=PROJECT, network="default").execute(),
        "Subnetwork": compute.subnetworks().get(project=PROJECT, region="europe-west1", subnetwork="default").execute(),
        "InstanceAggregatedList": compute.instances().aggregatedList(project=PROJECT).execute(),
        "OperationList": compute.zoneOperations().list(project=PROJECT, zone=ZONE).execute(),
        "InstanceGroupsListInstances": compute.instanceGroups().listInstances(
            project=PROJECT, zone=ZONE, instanceGroup="g", body={}).execute(),
    }
    for schema, answer in answers.items():
        lab.sim.discovery.check_body(answer, {"$ref": schema}, schema, "")
    kinds = {a.get("kind") for a in answers.values()}
    assert "compute#instance" in kinds and "compute#forwardingRule" in kinds


# -- networks ---------------------------------------------------------------------------------------

def test_a_new_project_has_the_auto_mode_default_network_with_its_four_rules(compute):
    [network] = compute.networks().list(project=PROJECT).execute()["items"]
    assert network["name"] == "default" and network["autoCreateSubnetworks"] is True
    subnet = compute.subnetworks().get(project=PROJECT, region="europe-west1", subnetwork="default").execute()
    assert subnet["ipCidrRange"] == "10.132.0.0/20" and subnet["network"] == network["selfLink"]
    assert sorted(f["name"] for f in compute.firewalls().list(project=PROJECT).execute()["items"]) == [
        "default-allow-icmp", "default-allow-internal", "default-allow-rdp", "default-allow-ssh"]


def test_a_custom_network_lab_has_subnetworks_and_no_rule(custom_lab):
    compute = custom_lab.client()
    [network] = compute.networks().list(project=PROJECT).execute()["items"]
    assert network["name"] == "lab" and network["autoCreateSubnetworks"] is False
    assert any(s.endswith("/regions/europe-west1/subnetworks/lab") for s in network["subnetworks"])
    assert compute.firewalls().list(project=PROJECT).execute().get("items", []) == []
    # An instance needs the subnetwork of a custom-mode network, and the network must exist.
    body = instance_body()
    body["networkInterfaces"][0]["network"] = "global/networks/lab"
    with pytest.raises(HttpError) as caught:
        compute.instances().insert(project=PROJECT, zone=ZONE, body=body).execute()
    assert error_of(caught.value)[2].endswith("Subnetwork should be specified for custom subnetmode network")
    with pytest.raises(HttpError) as caught:
        compute.instances().insert(project=PROJECT, zone=ZONE, body=instance_body()).execute()
    assert "The referenced network resource cannot be found" in error_of(caught.value)[2]
    body["networkInterfaces"][0]["subnetwork"] = "regions/europe-west1/subnetworks/lab"
    wait(compute, compute.instances().insert(project=PROJECT, zone=ZONE, body=body).execute())
    nic = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()["networkInterfaces"][0]
    assert nic["network"].endswith("/global/networks/lab") and nic["subnetwork"].endswith("/subnetworks/lab")
    assert [i["network"] for i in custom_lab.sim.compute.network_view()["instances"]] == ["lab"]
    # Firewall rules go on an existing network: without one named, on "default", which this project lacks.
    rule = {"name": "k-master-https", "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}], "targetTags": ["k-master"]}
    with pytest.raises(HttpError) as caught:
        compute.firewalls().insert(project=PROJECT, body=rule).execute()
    assert error_of(caught.value)[:2] == (400, "invalid")
    wait(compute, compute.firewalls().insert(project=PROJECT, body=dict(rule, network="global/networks/lab")).execute())
    assert compute.firewalls().get(project=PROJECT, firewall="k-master-https").execute()["network"] == network["selfLink"]


def test_networks_and_subnetworks_are_made_and_deleted_as_on_gce(compute):
    with pytest.raises(HttpError) as caught:
        compute.networks().insert(project=PROJECT, body={"name": "vpc"}).execute()
    assert error_of(caught.value)[:2] == (400, "invalid")
    wait(compute, compute.networks().insert(project=PROJECT, body={"name": "vpc", "autoCreateSubnetworks": False}).execute())
    with pytest.raises(HttpError) as caught:
        compute.subnetworks().insert(project=PROJECT, region="europe-west1", body={
            "name": "vpc", "network": "global/networks/vpc", "ipCidrRange": "10.1.0.0/24"}).execute()
    assert "The lab routes 10.132.0.0/20 in region europe-west1" in error_of(caught.value)[2]
    wait(compute, compute.subnetworks().insert(project=PROJECT, region="europe-west1", body={
        "name": "vpc", "network": "global/networks/vpc", "ipCidrRange": "10.132.0.0/20"}).execute())
    # A network in use by a subnetwork is not deleted.
    with pytest.raises(HttpError) as caught:
        compute.networks().delete(project=PROJECT, network="vpc").execute()
    assert error_of(caught.value)[:2] == (400, "resourceInUseByAnotherResource")
    wait(compute, compute.subnetworks().delete(project=PROJECT, region="europe-west1", subnetwork="vpc").execute())
    wait(compute, compute.networks().delete(project=PROJECT, network="vpc").execute())
    assert [n["name"] for n in compute.networks().list(project=PROJECT).execute()["items"]] == ["default"]
