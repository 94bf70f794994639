# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import base64
import json

import google.auth.transport
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from googleapiclient.http import HttpMockSequence

from ansible_collections.kubeha.gce.plugins.module_utils._gce import auth
from ansible_collections.kubeha.gce.plugins.module_utils._gce.api import ComputeApi, GceError

TOKEN_URI = "https://oauth2.googleapis.com/token"


@pytest.fixture(scope="module")
def key():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "key-project", "private_key_id": "k1", "private_key": pem,
            "client_email": "deployer@key-project.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": TOKEN_URI}
    return private, info


def resolve(params=None, env=None):
    return auth.resolve_auth(dict(params or {}), env or {})


def test_explicit_options_win_over_the_environment(key, tmp_path):
    info = key[1]
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    env = {"GCP_AUTH_KIND": "accesstoken", "GCP_ACCESS_TOKEN": "t", "GCP_PROJECT": "env-project"}
    result = resolve({"auth_kind": "serviceaccount", "service_account_file": str(path), "project": "p"}, env)
    assert (result.kind, result.project, result.service_account_info["client_email"]) == (
        "serviceaccount", "p", info["client_email"])


def test_awx_gce_credential_variables_are_enough(key, tmp_path):
    info = key[1]
    path = tmp_path / "awx.json"
    path.write_text(json.dumps(info))
    result = resolve(env={"GCE_CREDENTIALS_FILE_PATH": str(path), "GCE_PROJECT": "awx-project"})
    assert (result.kind, result.project) == ("serviceaccount", "awx-project")


def test_gcp_variables_come_before_gce_ones(key, tmp_path):
    info = key[1]
    path = tmp_path / "gcp.json"
    path.write_text(json.dumps(info))
    result = resolve(env={"GCP_SERVICE_ACCOUNT_FILE": str(path), "GCE_CREDENTIALS_FILE_PATH": "/nonexistent",
                          "GCP_PROJECT": "gcp", "GCE_PROJECT": "gce", "GCP_SCOPES": "a, b"})
    assert (result.project, result.scopes) == ("gcp", ["a", "b"])


def test_project_falls_back_to_the_keys_project(key):
    info = key[1]
    result = resolve({"service_account_contents": json.dumps(info)})
    assert result.project == "key-project"
    assert result.scopes == ["https://www.googleapis.com/auth/compute"]


def test_inference_of_the_auth_kind():
    assert resolve({"access_token": "t", "project": "p"}).kind == "accesstoken"
    assert resolve(env={"GCP_ACCESS_TOKEN": "t", "GCP_PROJECT": "p"}).kind == "accesstoken"
    assert resolve({"project": "p"}).kind == "application"
    machine = resolve({"auth_kind": "machineaccount", "project": "p"})
    assert (machine.kind, machine.service_account_email) == ("machineaccount", "default")


@pytest.mark.parametrize("params, env, message", [
    ({"auth_kind": "serviceaccount", "project": "p"}, {},
     "auth_kind=serviceaccount needs service_account_file or service_account_contents"),
    ({"auth_kind": "accesstoken", "project": "p"}, {}, "auth_kind=accesstoken needs access_token"),
    ({"project": "p"}, {"GCP_AUTH_KIND": "oauth"}, "GCP_AUTH_KIND=oauth is not a known auth_kind"),
    ({"auth_kind": "application", "access_token": "t", "project": "p"}, {},
     "access_token needs auth_kind=accesstoken, not application"),
    ({"auth_kind": "accesstoken", "service_account_file": "/x", "access_token": "t", "project": "p"}, {},
     "service_account_file and service_account_contents need auth_kind=serviceaccount, not accesstoken"),
    ({"project": "p"}, {"GCP_SERVICE_ACCOUNT_CONTENTS": "{}", "GCP_SERVICE_ACCOUNT_FILE": "/x"},
     "both GCP_SERVICE_ACCOUNT_CONTENTS and GCP_SERVICE_ACCOUNT_FILE are set"),
    ({"service_account_contents": "{not json", "project": "p"}, {}, "is not valid JSON"),
    ({"service_account_contents": '{"type": "authorized_user"}', "project": "p"}, {},
     "is not a service account JSON key"),
    ({"service_account_contents": '{"type": "service_account"}', "project": "p"}, {},
     "lacks client_email, private_key, token_uri"),
    ({"service_account_file": "/nonexistent/sa.json", "project": "p"}, {},
     "cannot read the service account key /nonexistent/sa.json (service_account_file): No such file"),
    ({"access_token": "t"}, {}, "no project: set the project option (or GCP_PROJECT / GCE_PROJECT)"),
])
def test_bad_auth_input_is_named(params, env, message):
    with pytest.raises(GceError) as caught:
        resolve(params, env)
    assert message in str(caught.value)


def test_service_account_key_signs_its_own_token_without_a_token_exchange(key):
    """A self-signed JWT, as Google's client libraries send: signed with the key, the scope as a claim, short-lived."""
    private, info = key
    http = HttpMockSequence([
        ({"status": "200", "content-type": "application/json"}, json.dumps({"name": "europe-west1-b"})),
        ({"status": "200", "content-type": "application/json"}, json.dumps({"name": "europe-west1-c"})),
    ])
    resolved = resolve({"service_account_contents": json.dumps(info)})
    import google_auth_httplib2

    authed = google_auth_httplib2.AuthorizedHttp(auth.credentials_for(resolved), http=http)
    api = ComputeApi(authed, resolved.project)
    assert api.call("zones", "get", zone="europe-west1-b") == {"name": "europe-west1-b"}
    assert api.call("zones", "get", zone="europe-west1-c") == {"name": "europe-west1-c"}

    # Both requests went to the Compute API (none to the token endpoint), with the same token.
    uris = [request[0] for request in http.request_sequence]
    assert [u.split("?")[0].rsplit("/", 1)[-1] for u in uris] == ["europe-west1-b", "europe-west1-c"]
    assert all(u.startswith("https://compute.googleapis.com/compute/v1/projects/key-project/zones/") for u in uris)
    tokens = {request[3]["authorization"] for request in http.request_sequence}
    assert len(tokens) == 1
    header, claims, signature = tokens.pop()[len("Bearer "):].split(".")

    def unb64(part):
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    private.public_key().verify(unb64(signature), ("%s.%s" % (header, claims)).encode(),
                                padding.PKCS1v15(), hashes.SHA256())
    assert json.loads(unb64(header))["kid"] == info["private_key_id"]
    payload = json.loads(unb64(claims))
    assert payload["iss"] == payload["sub"] == info["client_email"]
    assert payload["scope"] == "https://www.googleapis.com/auth/compute"
    assert 0 < payload["exp"] - payload["iat"] <= 3600
    assert not http._iterable  # both canned answers were asked for


def test_a_key_the_api_refuses_fails_with_a_clear_message(key):
    info = key[1]
    refused = ({"status": "401", "content-type": "application/json"}, json.dumps(
        {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                   "errors": [{"reason": "authError", "message": "Invalid Credentials"}], "status": "UNAUTHENTICATED"}}))
    # On a 401 google-auth signs a new token and tries again (google.auth.transport.DEFAULT_MAX_REFRESH_ATTEMPTS
    # times), without a token endpoint any time.
    http = HttpMockSequence([refused] * (1 + google.auth.transport.DEFAULT_MAX_REFRESH_ATTEMPTS))
    resolved = resolve({"service_account_contents": json.dumps(info)})
    import google_auth_httplib2

    api = ComputeApi(google_auth_httplib2.AuthorizedHttp(auth.credentials_for(resolved), http=http), resolved.project)
    with pytest.raises(GceError) as caught:
        api.call("zones", "get", zone="europe-west1-b")
    assert caught.value.kind == "credentials"
    assert "was refused (401" in str(caught.value) and "invalid authentication credentials" in str(caught.value)
    assert all(r[0].startswith("https://compute.googleapis.com/") for r in http.request_sequence)
    assert not http._iterable


def test_refused_credentials_fail_with_a_clear_message(tmp_path, monkeypatch):
    """Credentials that are exchanged for a token (a user's application default credentials): the token endpoint's
    refusal is named."""
    user = tmp_path / "adc.json"
    user.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r",
                                "quota_project_id": "p"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(user))
    http = HttpMockSequence([({"status": "400", "content-type": "application/json"},
                              json.dumps({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}))])
    resolved = resolve({"auth_kind": "application", "project": "p"})
    import google_auth_httplib2

    api = ComputeApi(google_auth_httplib2.AuthorizedHttp(auth.credentials_for(resolved), http=http), resolved.project)
    with pytest.raises(GceError) as caught:
        api.call("zones", "get", zone="europe-west1-b")
    assert str(caught.value).startswith("the credentials were refused by the token endpoint")
    assert "Token has been expired or revoked" in str(caught.value)
    assert not http._iterable
