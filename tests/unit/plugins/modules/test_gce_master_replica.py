# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.kubeha.gce.plugins.modules import gce_master_replica
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import (
    address,
    disk,
    error,
    fake_gce,
    instance,
    not_found,
    ok,
    op_done,
    op_pending,
    operation,
    run_module,
)

ARGS = {"cluster_name": "k", "zone": "europe-west1-b"}
ZONE = ok({"kind": "compute#zone", "name": "europe-west1-b", "status": "UP"})
INSTANCE_ATTACHED_DISK = disk(users=["https://compute.googleapis.com/compute/v1/projects/kubeha-test/zones/"
                                     "europe-west1-b/instances/k-master"])


def run(http, check_mode=False, diff=False, **args):
    return run_module(gce_master_replica.main, dict(ARGS, **args), http, check_mode=check_mode, diff=diff)


def test_create_in_check_mode_changes_nothing():
    with fake_gce([not_found(), not_found(), ZONE]) as http:
        result = run(http, check_mode=True, diff=True)
    assert result["changed"] is True
    assert http.mutating == []
    assert result["actions"] == ["create disk k-master-pd", "create instance k-master"]
    predicted = result["replica"]
    assert predicted["name"] == "k-master"
    assert predicted["zone"] == "europe-west1-b" and predicted["region"] == "europe-west1"
    assert predicted["labels"] == {"kubeha-cluster": "k", "kubeha-role": "master"}
    assert predicted["tags"] == ["k-master"]
    assert predicted["data_disk"]["name"] == "k-master-pd"
    assert result["diff"] == {"before": {}, "after": predicted}


def test_create_makes_disk_then_instance_and_returns_the_replica():
    responses = [not_found(), not_found(), ZONE,
                 op_pending(), op_done(),  # disks.insert + wait
                 op_pending(), op_done(),  # instances.insert + wait
                 ok(instance(metadata={"cluster-name": "k"})), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        result = run(http, metadata={"cluster-name": "k"}, external_ip="ephemeral")
    assert http.names == ["instances.get", "disks.get", "zones.get", "disks.insert", "zoneOperations.wait",
                          "instances.insert", "zoneOperations.wait", "instances.get", "disks.get"]
    assert result["changed"] is True
    disk_body = http.calls[3].body
    assert disk_body["name"] == "k-master-pd" and disk_body["sizeGb"] == "20"
    assert disk_body["labels"] == {"kubeha-cluster": "k", "kubeha-role": "master"}
    body = http.calls[5].body
    data = [d for d in body["disks"] if not d["boot"]][0]
    assert data == {"boot": False, "autoDelete": False, "deviceName": "master-pd", "mode": "READ_WRITE",
                    "source": "projects/kubeha-test/zones/europe-west1-b/disks/k-master-pd"}
    assert body["networkInterfaces"][0]["accessConfigs"] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    assert body["metadata"] == {"items": [{"key": "cluster-name", "value": "k"}]}
    assert body["tags"] == {"items": ["k-master"]}
    replica = result["replica"]
    assert replica["internal_ip"] == "10.132.0.2" and replica["external_ip"] == "203.0.113.7"
    assert replica["status"] == "RUNNING"
    assert replica["data_disk"]["name"] == "k-master-pd" and replica["data_disk"]["users"] == ["k-master"]


def test_create_on_the_reserved_address_sets_its_ip():
    responses = [not_found(), not_found(), ok(address()), ZONE, op_done(), op_done(),
                 ok(instance(nat_ip="198.51.100.9")), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        result = run(http, external_ip="k-master-ip")
    assert http.calls[2].method == "addresses.get" and http.calls[2].path.endswith("regions/europe-west1/addresses/k-master-ip")
    access = http.calls[5].body["networkInterfaces"][0]["accessConfigs"]
    assert access == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT", "natIP": "198.51.100.9"}]
    assert result["replica"]["external_ip"] == "198.51.100.9"


def test_rerun_is_idempotent_without_mutating_calls():
    with fake_gce([ok(instance(metadata={"a": "1"})), ok(INSTANCE_ATTACHED_DISK)]) as http:
        result = run(http, metadata={"a": "1"}, diff=True)
    assert result["changed"] is False
    assert result["actions"] == []
    assert http.mutating == []
    assert result["diff"]["before"] == result["diff"]["after"]


def test_metadata_update_sends_the_fingerprint_and_keeps_other_keys():
    current = instance(metadata={"a": "1", "ssh-keys": "u:ssh-ed25519 AAAA"}, fingerprint="fp-7")
    responses = [ok(current), ok(INSTANCE_ATTACHED_DISK), op_done(),
                 ok(instance(metadata={"a": "2", "ssh-keys": "u:ssh-ed25519 AAAA"})), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        result = run(http, metadata={"a": "2"}, diff=True)
    assert http.mutating == ["instances.setMetadata"]
    body = http.calls[2].body
    assert body["fingerprint"] == "fp-7"
    assert body["items"] == [{"key": "a", "value": "2"}, {"key": "ssh-keys", "value": "u:ssh-ed25519 AAAA"}]
    assert result["changed"] is True
    assert result["diff"]["before"]["metadata"]["a"] == "1"
    assert result["diff"]["after"]["metadata"]["a"] == "2"


def test_purge_metadata_removes_unlisted_keys():
    responses = [ok(instance(metadata={"a": "1", "old": "x"})), ok(INSTANCE_ATTACHED_DISK), op_done(),
                 ok(instance(metadata={"a": "1"})), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        run(http, metadata={"a": "1"}, purge_metadata=True)
    assert http.calls[2].body["items"] == [{"key": "a", "value": "1"}]


def test_stale_metadata_fingerprint_is_reread_and_retried_once():
    responses = [ok(instance(metadata={"a": "1"}, fingerprint="old")), ok(INSTANCE_ATTACHED_DISK),
                 error(412, "conditionNotMet", "Supplied fingerprint does not match current metadata fingerprint."),
                 ok(instance(metadata={"a": "1", "added-meanwhile": "y"}, fingerprint="new")),
                 op_done(),
                 ok(instance(metadata={"a": "2", "added-meanwhile": "y"})), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        result = run(http, metadata={"a": "2"})
    assert http.names[2:5] == ["instances.setMetadata", "instances.get", "instances.setMetadata"]
    retry = http.calls[4].body
    assert retry["fingerprint"] == "new"
    # The key another writer added in between is kept.
    assert {"key": "added-meanwhile", "value": "y"} in retry["items"]
    assert result["changed"] is True


def test_labels_and_tags_are_updated_in_place_with_fingerprints():
    current = instance(labels={"kubeha-cluster": "k", "kubeha-role": "master", "team": "old"})
    responses = [ok(current), ok(INSTANCE_ATTACHED_DISK),
                 op_done(),  # disks.setLabels
                 op_done(),  # instances.setLabels
                 op_done(),  # instances.setTags
                 ok(current), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        run(http, labels={"team": "platform"}, tags=["extra"])
    assert http.mutating == ["disks.setLabels", "instances.setLabels", "instances.setTags"]
    assert http.calls[2].body == {"labels": {"kubeha-cluster": "k", "kubeha-role": "master", "team": "platform"},
                                  "labelFingerprint": "disk-fp-1"}
    assert http.calls[3].body["labelFingerprint"] == "label-fp-1"
    assert http.calls[3].body["labels"]["team"] == "platform"
    assert http.calls[4].body == {"items": ["extra", "k-master"], "fingerprint": "tag-fp-1"}


def test_external_ip_moves_to_the_reserved_address():
    own = "https://compute.googleapis.com/compute/v1/projects/kubeha-test/zones/europe-west1-b/instances/k-master"
    responses = [ok(instance()), ok(INSTANCE_ATTACHED_DISK), ok(address()), op_done(), op_done(),
                 ok(instance(nat_ip="198.51.100.9")), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        result = run(http, external_ip="k-master-ip")
    assert http.mutating == ["instances.deleteAccessConfig", "instances.addAccessConfig"]
    assert http.calls[3].query == {"accessConfig": ["External NAT"], "networkInterface": ["nic0"]}
    assert http.calls[4].body["natIP"] == "198.51.100.9"
    assert result["replica"]["external_ip"] == "198.51.100.9"
    # Once it holds the address, a re-run changes nothing.
    with fake_gce([ok(instance(nat_ip="198.51.100.9")), ok(INSTANCE_ATTACHED_DISK),
                   ok(address(users=[own]))]) as http:
        assert run(http, external_ip="k-master-ip")["changed"] is False
    assert http.mutating == []


def test_address_in_use_by_a_forwarding_rule_fails_before_any_change():
    rule = "https://compute.googleapis.com/compute/v1/projects/kubeha-test/regions/europe-west1/forwardingRules/k-master"
    with fake_gce([not_found(), not_found(), ok(address(users=[rule]))]) as http:
        result = run(http, external_ip="k-master-ip")
    assert result["failed"] is True
    assert result["msg"] == ("external_ip: address 'k-master-ip' (198.51.100.9) is in use by forwarding rule "
                             "'k-master'; it cannot be given to replica 'k-master'")
    assert http.mutating == []


def test_address_in_another_region_is_named():
    other = address(region="us-east1")
    responses = [not_found(), not_found(), not_found(),
                 ok({"items": {"regions/us-east1": {"addresses": [other]}}})]
    with fake_gce(responses) as http:
        result = run(http, external_ip="k-master-ip")
    assert result["failed"] is True
    assert "address 'k-master-ip' is in us-east1, not in region europe-west1" in result["msg"]
    assert http.calls[3].query["filter"] == ['name = "k-master-ip"']
    assert http.mutating == []


def test_missing_address_fails():
    with fake_gce([not_found(), not_found(), not_found(), ok({"items": {}})]) as http:
        result = run(http, external_ip="k-master-ip")
    assert result["msg"] == "external_ip: address 'k-master-ip' does not exist in region europe-west1"
    assert http.mutating == []


def test_immutable_difference_names_field_and_both_values():
    with fake_gce([ok(instance(machine_type="e2-standard-2")), ok(INSTANCE_ATTACHED_DISK)]) as http:
        result = run(http, machine_type="e2-standard-4")
    assert result["failed"] is True
    assert "has machine_type e2-standard-2, the task asks for e2-standard-4" in result["msg"]
    assert http.mutating == []


def test_foreign_instance_of_the_same_name_is_never_touched():
    foreign = instance(labels={"kubeha-cluster": "other", "kubeha-role": "master"})
    for state in ("present", "absent"):
        with fake_gce([ok(foreign), ok(INSTANCE_ATTACHED_DISK)]) as http:
            result = run(http, state=state)
        assert result["failed"] is True
        assert "instance 'k-master' in zone europe-west1-b exists but is not a master of cluster 'k'" in result["msg"]
        assert http.mutating == []


def test_existing_kept_disk_is_reused_for_a_new_instance():
    responses = [not_found(), ok(disk(size=50)), op_done(), ok(instance()), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        result = run(http)
    assert http.mutating == ["instances.insert"]
    assert result["warnings"] == [
        "data disk 'k-master-pd' exists with 50 GB pd-ssd (asked for 20 GB pd-ssd); it is kept as it is, with its data"]


def test_disk_attached_elsewhere_fails():
    other = "https://compute.googleapis.com/compute/v1/projects/kubeha-test/zones/europe-west1-b/instances/intruder"
    with fake_gce([not_found(), ok(disk(users=[other]))]) as http:
        result = run(http)
    assert result["msg"] == ("disk 'k-master-pd' is attached to instance 'intruder'; it can only be the data disk "
                             "of replica 'k-master'")
    assert http.mutating == []


def test_missing_data_disk_is_attached():
    responses = [ok(instance(with_data_disk=False)), ok(disk()), op_done(), ok(instance()), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        result = run(http)
    assert http.mutating == ["instances.attachDisk"]
    assert http.calls[2].body["deviceName"] == "master-pd"
    assert result["changed"] is True


def test_failed_operation_fails_the_task_with_gces_message():
    failed = operation(status="DONE", errors=[{"code": "QUOTA_EXCEEDED",
                                               "message": "Quota 'SSD_TOTAL_GB' exceeded. Limit: 500.0 in region europe-west1."}])
    with fake_gce([not_found(), not_found(), ZONE, op_pending(), ok(failed)]) as http:
        result = run(http)
    assert result["failed"] is True
    assert result["msg"] == ("creating disk k-master-pd failed: QUOTA_EXCEEDED: Quota 'SSD_TOTAL_GB' exceeded. "
                             "Limit: 500.0 in region europe-west1.")
    assert result["error"]["reason"] == "QUOTA_EXCEEDED"
    assert "instances.insert" not in http.names


def test_operation_that_never_finishes_fails_at_the_deadline():
    pending = [op_pending()] * 4  # the insert, then one wait a second until the deadline
    with fake_gce([not_found(), not_found(), ZONE] + pending) as http:
        result = run(http, wait_timeout=3)
    assert result["failed"] is True
    assert http.names[3:] == ["disks.insert"] + ["zoneOperations.wait"] * 3
    assert result["msg"].startswith("creating disk k-master-pd did not finish within 3 seconds")
    assert "re-run to converge" in result["msg"]
    assert "instances.insert" not in http.names


def test_rate_limited_call_is_retried_then_succeeds():
    responses = [error(429, "rateLimitExceeded"), error(503, "backendError"), ok(instance()), ok(INSTANCE_ATTACHED_DISK)]
    with fake_gce(responses) as http:
        result = run(http)
    assert result["changed"] is False
    assert http.names == ["instances.get"] * 3 + ["disks.get"]


def test_retry_deadline_exceeded_fails_clearly(monkeypatch):
    monkeypatch.setattr("random.uniform", lambda low, high: high)  # the backoff without its jitter: 1, 2, 4, 8 s
    with fake_gce([error(503, "backendError", "Backend Error")] * 4) as http:
        result = run(http, retry_deadline=10)
    assert result["failed"] is True
    assert result["msg"].startswith("instances.get in zone europe-west1-b still failing after 4 attempts")
    assert result["msg"].endswith("seconds (the retry deadline): Backend Error")
    assert result["error"]["status"] == 503
    assert http.names == ["instances.get"] * 4


def test_absent_when_already_gone_is_a_no_op():
    with fake_gce([not_found(), not_found()]) as http:
        result = run(http, state="absent", delete_data_disk=True)
    assert result["changed"] is False
    assert http.mutating == []


def test_absent_deletes_the_instance_and_keeps_the_disk():
    with fake_gce([ok(instance()), ok(INSTANCE_ATTACHED_DISK), op_done()]) as http:
        result = run(http, state="absent", diff=True)
    assert http.mutating == ["instances.delete"]
    assert result["changed"] is True
    assert result["kept_data_disk"]["name"] == "k-master-pd"
    assert result["diff"]["after"] == {} and result["diff"]["before"]["name"] == "k-master"


def test_absent_with_delete_data_disk_deletes_both_in_order():
    with fake_gce([ok(instance()), ok(INSTANCE_ATTACHED_DISK), op_done(), op_done()]) as http:
        result = run(http, state="absent", delete_data_disk=True)
    assert http.mutating == ["instances.delete", "disks.delete"]
    assert result["kept_data_disk"] is None


def test_absent_in_check_mode_predicts_without_deleting():
    with fake_gce([ok(instance()), ok(INSTANCE_ATTACHED_DISK)]) as http:
        result = run(http, state="absent", delete_data_disk=True, check_mode=True)
    assert result["changed"] is True
    assert result["actions"] == ["delete instance k-master", "delete disk k-master-pd"]
    assert http.mutating == []


@pytest.mark.parametrize("args, message", [
    ({"zone": "europe-west1"}, "zone 'europe-west1' is not a Compute Engine zone name such as europe-west1-c"),
    ({"zone": "Europe-West1-b"}, "zone 'Europe-West1-b' is not a Compute Engine zone name"),
    ({"name": "Master_1"}, "name 'Master_1' is not a valid Compute Engine name"),
    ({"name": "m" * 62}, "data disk name (name + '-pd') '%s-pd' is not a valid Compute Engine name" % ("m" * 62)),
    ({"cluster_name": "9k"}, "cluster_name '9k' is not a valid Compute Engine name"),
    ({"labels": {"kubeha-cluster": "other"}}, "label 'kubeha-cluster' is set by the collection to 'k'"),
    ({"labels": {"Team": "x"}}, "label key 'Team' is not valid"),
    ({"image": "debian-12"}, "image 'debian-12' must be an image URL or path"),
    ({"external_ip": "Not An Address"}, "external_ip (a reserved address name, 'ephemeral' or 'none') 'Not An Address'"),
    ({"data_disk_size_gb": 5}, "data_disk_size_gb is 5; Compute Engine disks are at least 10 GB"),
    ({"auth_kind": "password"}, "value of auth_kind must be one of"),
    ({"project": None, "access_token": "x"}, "no project: set the project option"),
    ({"service_account_file": "/k.json", "service_account_contents": "{}", "auth_kind": None,
      "access_token": None}, "parameters are mutually exclusive: service_account_file|service_account_contents"),
])
def test_bad_input_fails_before_any_api_call(args, message, monkeypatch):
    for var in ("GCP_PROJECT", "GCE_PROJECT", "GCP_AUTH_KIND"):
        monkeypatch.delenv(var, raising=False)
    with fake_gce([]) as http:
        result = run(http, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert http.calls == []


def test_missing_google_libraries_fail_with_what_to_install(monkeypatch):
    from ansible_collections.kubeha.gce.plugins.module_utils._gce import module as module_utils

    monkeypatch.setattr(module_utils, "missing_libraries", lambda: "Traceback: No module named 'googleapiclient'")
    with fake_gce([]) as http:
        result = run(http)
    assert result["failed"] is True
    assert "google-api-python-client, google-auth and google-auth-httplib2" in result["msg"]
    assert http.calls == []
