# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import socket

import pytest

from ansible_collections.kubeha.gce.plugins.module_utils._etcd.client import (
    EtcdClient,
    EtcdError,
    check_url,
    connection_from_params,
)
from ansible_collections.kubeha.gce.plugins.module_utils._etcd.member import request_from_params


def params(**kw):
    base = {"endpoints": ["https://127.0.0.1:2379"], "ca_cert": None, "client_cert": None, "client_key": None,
            "timeout": 10}
    base.update(kw)
    return base


def test_urls_need_scheme_host_and_port():
    assert check_url(" https://10.0.0.1:2380/ ", "peer URL") == "https://10.0.0.1:2380"
    assert check_url("http://[fd00::1]:2379", "endpoint") == "http://[fd00::1]:2379"
    for bad in ("10.0.0.1:2380", "https://10.0.0.1", "unix:///run/etcd.sock", "https://10.0.0.1:2380/v3",
                "https://10.0.0.1:99999"):
        with pytest.raises(EtcdError):
            check_url(bad, "peer URL")


def test_connection_options_are_checked_before_any_call(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    conn = connection_from_params(params(ca_cert=str(ca), timeout=3))
    assert conn.endpoints == ["https://127.0.0.1:2379"] and conn.timeout == 3.0
    with pytest.raises(EtcdError, match="client_cert .*missing.crt does not exist"):
        connection_from_params(params(client_cert=str(tmp_path / "missing.crt")))
    with pytest.raises(EtcdError, match="client_key needs client_cert"):
        connection_from_params(params(client_key=str(ca)))
    with pytest.raises(EtcdError, match="at least one"):
        connection_from_params(params(endpoints=[]))
    with pytest.raises(EtcdError, match="timeout must be positive"):
        connection_from_params(params(timeout=0))


def test_an_unreachable_endpoint_is_an_etcd_error_that_says_so():
    client = EtcdClient(connection_from_params(params(endpoints=["http://127.0.0.1:1"], timeout=2)))
    with pytest.raises(EtcdError) as caught:
        client.member_list(client.connection.endpoints)
    assert caught.value.unreachable and "no etcd endpoint answered /v3/cluster/member/list" in str(caught.value)
    assert "cannot reach etcd at http://127.0.0.1:1" in str(caught.value)


def test_a_port_that_accepts_no_connection_in_time_is_named_as_such():
    # A listening socket whose queue is full drops new connections, as a host that is gone does.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    url = "https://127.0.0.1:%d" % server.getsockname()[1]
    client = EtcdClient(connection_from_params(params(timeout=1)))
    try:
        # The first connection is accepted by the kernel and takes the queue's one place.
        assert client.connect_error(url) is None
        assert client.connect_error(url) == "no TCP connection within 1 seconds"
    finally:
        server.close()
    assert client.connect_error(url) == "[Errno 111] Connection refused"


def request(**kw):
    base = {"state": "present", "name": None, "peer_urls": None, "member_id": None, "learner": False,
            "force": False, "promote_timeout": 120}
    base.update(kw)
    return request_from_params(base)


def test_requests_are_checked_before_any_call():
    assert request(name="d", peer_urls=["https://10.0.0.4:2380/"]).peer_urls == ["https://10.0.0.4:2380"]
    with pytest.raises(EtcdError, match="name the member"):
        request()
    with pytest.raises(EtcdError, match="twice"):
        request(peer_urls=["https://10.0.0.4:2380", "https://10.0.0.4:2380/"])
    with pytest.raises(EtcdError, match="neither a hex"):
        request(member_id="node-1")
    with pytest.raises(EtcdError, match="must not be negative"):
        request(name="d", promote_timeout=-1)
