# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import socket

import httplib2
import pytest

from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import ComputeApi, GceError, RetryPolicy
from ansible_collections.kubeha.gce.tests.unit.plugins.gce_http import (
    PROJECT,
    FakeClock,
    GceHttp,
    error,
    ok,
    op_done,
    op_pending,
    operation,
)


def make_api(responses, deadline=60.0, endpoint=None):
    api, http, _clock = make_api_with_clock(responses, deadline, endpoint)
    return api, http


MADE: list[GceHttp] = []


@pytest.fixture(autouse=True)
def every_answer_asked_for():
    """Each test's canned answers are all used: one left over means fewer calls than the test says."""
    MADE.clear()
    yield
    assert all(http.done() for http in MADE), [http.names for http in MADE if not http.done()]


def make_api_with_clock(responses, deadline=60.0, endpoint=None):
    clock = FakeClock()
    http = GceHttp(responses)
    MADE.append(http)
    api = ComputeApi(http, PROJECT, api_endpoint=endpoint,
                     retry=RetryPolicy(deadline=deadline, clock=clock, jitter=lambda low, high: high))
    return api, http, clock


class FlakyConnection(GceHttp):
    """Fails the first ``failures`` requests at the socket level."""

    def __init__(self, responses, failures):
        super().__init__(responses)
        self.failures = failures

    def request(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise socket.timeout("timed out")
        return super().request(*args, **kwargs)


def test_not_found_is_none_for_get_and_an_error_for_others():
    api, http = make_api([error(404, "notFound", "The resource 'x' was not found"),
                          error(404, "notFound", "The resource 'x' was not found")])
    assert api.get("instances", zone="europe-west1-b", instance="x") is None
    with pytest.raises(GceError) as caught:
        api.call("instances", "delete", zone="europe-west1-b", instance="x")
    assert (caught.value.status, caught.value.reason) == (404, "notFound")
    assert str(caught.value) == "The resource 'x' was not found"


def test_backoff_grows_and_is_bounded():
    responses = [error(503, "backendError")] * 7 + [ok({"name": "z"})]
    api, http, clock = make_api_with_clock(responses, deadline=1000)
    assert api.call("zones", "get", zone="europe-west1-b") == {"name": "z"}
    assert clock.slept == [1, 2, 4, 8, 16, 32, 32]


@pytest.mark.parametrize("answer", [
    error(429, "rateLimitExceeded"),
    error(403, "rateLimitExceeded", "Rate Limit Exceeded"),
    error(403, "userRateLimitExceeded"),
    error(500, "backendError"),
    error(502, "badGateway"),
    error(503, "backendError"),
])
def test_transient_answers_are_retried(answer):
    api, http, clock = make_api_with_clock([answer, ok({"name": "z"})])
    assert api.call("zones", "get", zone="europe-west1-b") == {"name": "z"}
    assert len(http.calls) == 2 and len(clock.slept) == 1


@pytest.mark.parametrize("answer, reason", [
    (error(403, "forbidden", "Required 'compute.instances.create' permission"), "forbidden"),
    (error(403, "quotaExceeded", "Quota 'CPUS' exceeded"), "quotaExceeded"),
    (error(400, "invalid", "Invalid value for field"), "invalid"),
    (error(409, "alreadyExists", "The resource already exists"), "alreadyExists"),
    (error(412, "conditionNotMet", "Supplied fingerprint does not match"), "conditionNotMet"),
])
def test_other_errors_fail_at_once_with_gces_reason(answer, reason):
    api, http, clock = make_api_with_clock([answer])
    with pytest.raises(GceError) as caught:
        api.call("zones", "get", zone="europe-west1-b")
    assert caught.value.reason == reason
    assert clock.slept == []


def test_connection_errors_are_retried():
    http = FlakyConnection([ok({"name": "z"})], failures=2)
    clock = FakeClock()
    api = ComputeApi(http, PROJECT, retry=RetryPolicy(deadline=60, clock=clock, jitter=lambda a, b: b))
    assert api.call("zones", "get", zone="europe-west1-b") == {"name": "z"}
    assert clock.slept == [1, 2]


def test_deadline_stops_retrying_with_the_last_error():
    api, http, clock = make_api_with_clock([error(503, "backendError", "Backend Error")] * 4, deadline=10)
    with pytest.raises(GceError) as caught:
        api.call("disks", "get", zone="europe-west1-b", disk="k-master-pd")
    # 1 + 2 + 4 = 7 s slept; the next delay (8 s) would pass the 10 s deadline.
    assert clock.slept == [1, 2, 4]
    assert str(caught.value) == ("disks.get in zone europe-west1-b still failing after 4 attempts in 10 seconds "
                                 "(the retry deadline): Backend Error")
    assert caught.value.status == 503 and caught.value.kind == "unavailable"


@pytest.mark.parametrize("status, reason, kind", [
    (401, "authError", "credentials"),
    (403, "forbidden", "credentials"),
    (403, "insufficientPermissions", "credentials"),
    (None, "invalidCredentials", "credentials"),  # the token endpoint refused the key
    (None, "badCredentials", "credentials"),  # no key file, a broken key, no project
    (403, "rateLimitExceeded", "rate_limited"),
    (403, "userRateLimitExceeded", "rate_limited"),
    (429, "rateLimitExceeded", "rate_limited"),
    (403, "quotaExceeded", "quota"),
    (None, "QUOTA_EXCEEDED", "quota"),  # an operation's own error
    (503, "backendError", "unavailable"),  # a zone in an outage
    (500, "backendError", "unavailable"),
    (None, "UNREACHABLE", "unavailable"),  # an aggregated list's warning for a scope
    (404, "notFound", "not_found"),
    (409, "alreadyExists", "conflict"),
    (409, "resourceInUseByAnotherResource", "conflict"),
    (412, "conditionNotMet", "stale"),
    (400, "invalid", "invalid"),
    (None, "timeout", "timeout"),
    (None, "connection", "connection"),
    (None, "ZONE_RESOURCE_POOL_EXHAUSTED", "failed"),
])
def test_every_answer_has_a_kind_and_only_auth_answers_are_about_credentials(status, reason, kind):
    assert GceError("x", status=status, reason=reason).kind == kind
    assert GceError("x", status=status, reason=reason).to_dict()["kind"] == kind


def test_a_refused_call_names_the_call_and_its_zone():
    api, http, clock = make_api_with_clock([error(403, "forbidden", "Required 'compute.instances.get' permission")])
    with pytest.raises(GceError) as caught:
        api.call("instances", "get", zone="europe-west1-c", instance="k-master-c")
    assert str(caught.value) == ("instances.get in zone europe-west1-c was refused (403 forbidden): Required "
                                 "'compute.instances.get' permission")
    assert caught.value.kind == "credentials" and clock.slept == []


def test_an_unavailable_zone_is_not_talked_of_as_credentials():
    api, http, clock = make_api_with_clock([error(503, "backendError", "The zone 'europe-west1-c' is currently "
                                                  "unavailable.")], deadline=0)
    with pytest.raises(GceError) as caught:
        api.call("instances", "get", zone="europe-west1-c", instance="k-master-c")
    assert str(caught.value) == ("instances.get in zone europe-west1-c still failing after 1 attempts in 0 seconds "
                                 "(the retry deadline): The zone 'europe-west1-c' is currently unavailable.")
    assert "credential" not in str(caught.value) and caught.value.kind == "unavailable"


def test_aggregated_lists_record_unreachable_scopes_and_go_on():
    page = {"items": {
        "zones/europe-west1-b": {"instances": [{"name": "k-master"}]},
        "zones/europe-west1-c": {"warning": {"code": "UNREACHABLE", "message": "Scope 'zones/europe-west1-c' is "
                                             "unreachable."}},
        "zones/europe-west1-d": {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "none"}},
    }, "unreachables": ["zones/europe-west1-c", "zones/asia-east1-a"]}
    api, http = make_api([ok(page)])
    assert api.aggregated("instances") == [{"name": "k-master"}]
    assert api.unreachable == {"zones/europe-west1-c": "Scope 'zones/europe-west1-c' is unreachable.",
                               "zones/asia-east1-a": "zones/asia-east1-a did not answer"}


def test_wait_polls_the_operations_own_scope():
    api, http = make_api([op_pending(region="europe-west1"), op_done(region="europe-west1"),
                          op_done(zone=None)])
    api.wait(operation(status="PENDING", region="europe-west1", zone=None), 60)
    assert http.names == ["regionOperations.wait", "regionOperations.wait"]
    assert http.calls[0].path == "projects/kubeha-test/regions/europe-west1/operations/operation-1/wait"
    api.wait(operation(status="RUNNING", zone=None), 60)
    assert http.names[-1] == "globalOperations.wait"


def test_wait_reports_every_error_of_a_failed_operation():
    failed = operation(status="DONE", errors=[
        {"code": "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", "message": "The address is in use."},
        {"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "No capacity."}])
    api, http = make_api([ok(failed)])
    with pytest.raises(GceError) as caught:
        api.wait(operation(status="RUNNING"), 60, "creating instance k-master")
    assert str(caught.value) == ("creating instance k-master failed: RESOURCE_IN_USE_BY_ANOTHER_RESOURCE: "
                                 "The address is in use.; ZONE_RESOURCE_POOL_EXHAUSTED: No capacity.")
    assert len(caught.value.errors) == 2


def test_an_operation_already_done_with_an_error_is_not_success():
    api, http = make_api([])
    with pytest.raises(GceError):
        api.wait(operation(status="DONE", errors=[{"code": "X", "message": "boom"}]), 60)
    assert http.calls == []


def test_wait_times_out_without_spinning():
    api, http, clock = make_api_with_clock([op_pending()] * 5)
    with pytest.raises(GceError) as caught:
        api.wait(operation(status="PENDING"), 5, "deleting instance k-master")
    assert caught.value.reason == "timeout"
    assert "deleting instance k-master did not finish within 5 seconds (operation operation-1 is PENDING)" \
        in str(caught.value)
    assert len(http.calls) == 5 and sum(clock.slept) == 5


def test_list_follows_pages_and_aggregated_flattens_scopes():
    api, http = make_api([
        ok({"items": [{"name": "a"}], "nextPageToken": "t"}), ok({"items": [{"name": "b"}]}),
        ok({"items": {"zones/europe-west1-b": {"instances": [{"name": "x"}]},
                      "zones/europe-west1-c": {"warning": {"code": "NO_RESULTS_ON_PAGE"}}}}),
    ])
    assert [z["name"] for z in api.list_all("zones")] == ["a", "b"]
    assert http.calls[1].query["pageToken"] == ["t"]
    assert [i["name"] for i in api.aggregated("instances")] == ["x"]


def test_api_endpoint_sends_requests_there():
    http = GceHttp([ok({"name": "z"})])

    def request(uri, *args, **kwargs):
        request.uris.append(uri)
        return GceHttp.request(http, uri.replace("http://127.0.0.1:8089", "https://compute.googleapis.com"),
                               *args, **kwargs)

    request.uris = []
    http.request = request
    api = ComputeApi(http, PROJECT, api_endpoint="http://127.0.0.1:8089/compute/v1/")
    api.call("zones", "get", zone="europe-west1-b")
    assert request.uris[0].startswith("http://127.0.0.1:8089/compute/v1/projects/kubeha-test/zones/europe-west1-b")


def test_httplib2_is_the_transport():
    # The retry layer must know the transport's own error class.
    from ansible_collections.kubeha.gce.plugins.module_utils._gce import api

    assert httplib2.HttpLib2Error in api.CONNECTION_ERRORS
