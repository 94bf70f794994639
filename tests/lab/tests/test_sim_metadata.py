# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The metadata server: what a guest reads at 169.254.169.254 (served here on loopback)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import PROJECT, ZONE, wait
from kubeha_lab.sim.metadata import MetadataServer
from test_sim_api import create_instance


@pytest.fixture
def metadata(lab, compute):
    create_instance(compute)
    instance = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()
    server = MetadataServer(("127.0.0.1", 0), lab.sim)
    server.aliases["127.0.0.1"] = instance["networkInterfaces"][0]["networkIP"]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def get(path, headers=None, timeout=10):
        request = urllib.request.Request("http://127.0.0.1:%d/computeMetadata/v1/%s" % (server.server_address[1], path),
                                         headers={"Metadata-Flavor": "Google"} if headers is None else headers)
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # nosec - loopback
            return answer.read().decode(), dict(answer.headers)

    yield get
    server.shutdown()
    server.server_close()


def test_needs_the_metadata_flavor_header(metadata):
    with pytest.raises(urllib.error.HTTPError) as caught:
        metadata("instance/name", headers={})
    assert caught.value.code == 403


def test_instance_values(metadata):
    body, headers = metadata("instance/name")
    assert body == "k-master" and headers["Metadata-Flavor"] == "Google"
    assert metadata("instance/attributes/a")[0] == "1"
    assert metadata("instance/network-interfaces/0/ip")[0].startswith("10.132.0.")
    assert metadata("instance/zone")[0].endswith("/zones/europe-west1-b")
    assert json.loads(metadata("instance/attributes/?recursive=true")[0]) == {"a": "1"}
    assert metadata("instance/attributes/")[0] == "a\n"
    assert metadata("project/project-id")[0] == PROJECT
    token = json.loads(metadata("instance/service-accounts/default/token")[0])
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    with pytest.raises(urllib.error.HTTPError) as caught:
        metadata("instance/attributes/missing")
    assert caught.value.code == 404


def test_wait_for_change_returns_when_metadata_changes(metadata, compute):
    _body, headers = metadata("instance/attributes/?recursive=true")
    etag = headers["ETag"]
    instance = compute.instances().get(project=PROJECT, zone=ZONE, instance="k-master").execute()

    def change():
        time.sleep(0.5)
        wait(compute, compute.instances().setMetadata(project=PROJECT, zone=ZONE, instance="k-master", body={
            "fingerprint": instance["metadata"]["fingerprint"], "items": [{"key": "ssh-keys", "value": "u:ssh-ed25519 AAAA"}]}).execute())

    threading.Thread(target=change, daemon=True).start()
    started = time.monotonic()
    body, headers = metadata("instance/attributes/?recursive=true&wait_for_change=true&timeout_sec=20&last_etag=%s" % etag,
                             timeout=30)
    assert json.loads(body) == {"ssh-keys": "u:ssh-ed25519 AAAA"}
    assert headers["ETag"] != etag
    assert 0.4 < time.monotonic() - started < 15


def test_wait_for_change_times_out_with_the_same_value(metadata):
    started = time.monotonic()
    body, _headers = metadata("instance/name?wait_for_change=true&timeout_sec=1")
    assert body == "k-master" and time.monotonic() - started >= 0.9
