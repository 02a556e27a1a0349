"""Handshake-side limits (issue 19): `connection_limit` caps sessions per route and per client
address and handshakes per second per address, with counts shared by every worker; a listener's
`max_connections` refuses at accept; `subprotocol` keeps a route to its subprotocols, on the
client's offer and on the backend's choice."""
import socket
import ssl
import time

import pytest

from conftest import gateway_config, tls_client_context, tls_connect, wait_for
from test_tls import CHAT, secure_config, upgrade_over
from wsproto import RawClient

FILTER = "wsgate_filter_rejections_total"


def client_from(port, source="127.0.0.1", timeout=10):
    """A RawClient whose connection comes from `source` (any address of 127.0.0.0/8 is ours)."""
    c = RawClient.__new__(RawClient)
    c.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                      source_address=(source, 0))
    c.buffer = bytearray()
    return c


def attempt(gw, path="/limited", source="127.0.0.1", headers=None):
    """One upgrade: (status, headers, body, client). The client is left open on a 101."""
    c = client_from(gw.port, source)
    c.request(path, headers=headers)
    status, head, body = c.read_response()
    if status != 101:
        assert c.wait_end(5) == "fin"
        c.close()
    return status, head, body, c


def config(filter_yaml, listener_extra="", workers=2):
    routes = f"""      - name: limited
        match: {{ path_prefix: /limited }}
        cluster: echo
        filters:
          - {filter_yaml}
      - name: free
        match: {{ path_prefix: /free }}
        cluster: echo
"""
    return gateway_config(routes, listener_extra=listener_extra, workers=workers)


def upgrade_until(gw, source="127.0.0.1", timeout=5):
    """Retries an upgrade until it is accepted (a slot given back is seen a moment after the
    session ends); returns the open client or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, _, c = attempt(gw, source=source)
        if status == 101:
            return c
        time.sleep(0.05)
    return None


def test_per_client_and_per_route_caps_hold_across_workers(start_gateway):
    gw = start_gateway(config("connection_limit: { per_route: 6, per_client_ip: 4 }"))
    held = []
    try:
        # SO_REUSEPORT spreads these over both workers; the caps are the route's, not a worker's.
        for _ in range(4):
            status, _, body, c = attempt(gw, source="127.0.0.1")
            assert status == 101, body
            held.append(c)
        for _ in range(3):
            status, head, _, _ = attempt(gw, source="127.0.0.1")
            assert status == 429
            assert head["retry-after"] == "1"
        for _ in range(2):
            status, _, body, c = attempt(gw, source="127.0.0.2")
            assert status == 101, body
            held.append(c)
        for source in ("127.0.0.2", "127.0.0.3"):
            status, head, _, _ = attempt(gw, source=source)
            assert status == 503
            assert head["retry-after"] == "1"
        # Another route of the same listener is not limited.
        status, _, _, c = attempt(gw, path="/free", source="127.0.0.1")
        assert status == 101
        held.append(c)

        labels = {"route": "limited", "filter": "connection_limit"}
        assert gw.wait_metric(FILTER, 3, reason="per_client_ip", **labels) == 3
        assert gw.wait_metric(FILTER, 2, reason="per_route", **labels) == 2
        assert gw.metric("wsgate_handshake_rejections_total", reason="connection_limit") == 5

        # A session of 127.0.0.1 ends: its slot goes back to the route and to that address.
        held.pop(0).close()
        c = upgrade_until(gw, source="127.0.0.3")
        assert c, "the route's slot was not given back"
        held.append(c)
        status, _, _, _ = attempt(gw, source="127.0.0.1")
        assert status == 503  # the route is full again
    finally:
        for c in held:
            c.close()


def test_slots_are_given_back_when_sessions_end(start_gateway):
    gw = start_gateway(config("connection_limit: { per_route: 3, per_client_ip: 3 }"))
    for round_ in range(3):
        held = []
        for i in range(3):
            status, _, body, c = attempt(gw)
            assert status == 101, f"round {round_}, session {i}: {status} {body!r}"
            held.append(c)
        assert attempt(gw)[0] == 429
        for c in held:
            c.close()
        assert gw.wait_idle() == 0
        # The release follows the session's end on its worker; give it a moment.
        c = upgrade_until(gw)
        assert c
        c.close()
        assert gw.wait_idle() == 0


def test_handshake_rate_per_address_answers_429_with_retry_after(start_gateway):
    # One token every 10 s, three at once: the fourth handshake waits about 10 s.
    gw = start_gateway(config("connection_limit: { handshakes_per_ip: { rate: 6/m, burst: 3 } }"))
    for _ in range(3):
        status, _, body, c = attempt(gw, source="127.0.0.1")
        assert status == 101, body
        c.close()  # sessions ending do not give tokens back
    status, head, body, _ = attempt(gw, source="127.0.0.1")
    assert status == 429, body
    assert 1 <= int(head["retry-after"]) <= 10
    # Another address has its own bucket.
    status, _, _, c = attempt(gw, source="127.0.0.2")
    assert status == 101
    c.close()
    assert gw.wait_metric(FILTER, 1, route="limited", filter="connection_limit",
                          reason="handshake_rate") == 1


def test_listener_max_connections_refuses_at_accept_across_workers(start_gateway):
    gw = start_gateway(config("connection_limit: { per_route: 100 }",
                              listener_extra="    max_connections: 3"))
    held = []
    try:
        for path in ("/limited", "/free", "/free"):
            status, _, body, c = attempt(gw, path=path)
            assert status == 101, body
            held.append(c)
        for path in ("/free", "/nowhere"):
            c = RawClient(gw.port)
            c.request(path)
            status, head, body = c.read_response()
            assert status == 503
            assert head["retry-after"] == "1"
            assert head["connection"].lower() == "close"
            assert c.wait_end(5) == "fin"
            c.close()
        assert gw.wait_metric("wsgate_handshake_rejections_total", 2, listener="public",
                              reason="max_connections") == 2
        # Refused at accept: never counted as connections, never routed.
        assert gw.metric("wsgate_connections_active", listener="public") == 3
        assert gw.metric("wsgate_handshake_rejections_total", reason="no_route") == 0

        held.pop().close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status, _, _, c = attempt(gw, path="/free")
            if status == 101:
                held.append(c)
                break
            time.sleep(0.05)
        assert status == 101, "the listener's place was not given back"
    finally:
        for c in held:
            c.close()
    assert gw.wait_idle() == 0


def test_tls_listener_over_max_connections_closes_without_an_answer(start_gateway, backends,
                                                                    tls_certs):
    port, _ = backends.echo()
    gw = start_gateway(secure_config(tls_certs, [port], tls_extra="    max_connections: 1\n"),
                       listeners=("secure",))
    context = tls_client_context(ca=tls_certs.root.cert)
    first = tls_connect(gw.port, context, server_hostname=CHAT)
    try:
        upgrade_over(first)
        # A plain 503 would mean nothing inside TLS: the connection just ends.
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            second = tls_connect(gw.port, context, server_hostname=CHAT)
            upgrade_over(second)  # TLS 1.3 may finish the client's side before the close
        assert gw.wait_metric("wsgate_handshake_rejections_total", 1, listener="secure",
                              reason="max_connections") == 1
    finally:
        first.close()
    assert gw.wait_idle() == 0


def test_handshakes_refused_after_accept_give_the_listener_place_back(start_gateway):
    gw = start_gateway(config("subprotocol: { allow: [chat.v1], require: true }",
                              listener_extra="    max_connections: 2"))
    for _ in range(6):
        assert attempt(gw)[0] == 400
        assert attempt(gw, path="/nowhere")[0] == 404
    assert gw.metric("wsgate_handshake_rejections_total", reason="max_connections") == 0


def subprotocol_config(backend_port, filter_yaml):
    routes = f"""      - name: app
        match: {{ path_prefix: /app }}
        cluster: app
        filters:
          - {filter_yaml}
"""
    clusters = f"""  - name: app
    endpoints: ["127.0.0.1:{backend_port}"]
    response_timeout: 3s
"""
    return gateway_config(routes, clusters)


def test_subprotocol_require_and_allow_answer_400_naming_the_accepted(start_gateway, backends):
    port, record = backends.echo(subprotocols=["chat.v1"])
    gw = start_gateway(subprotocol_config(
        port, 'subprotocol: { allow: ["chat.v2", "chat.v1"], require: true }'))
    for offer, label in ((None, "subprotocol_missing"),
                         ("legacy", "subprotocol_not_allowed"),
                         ("chat.v3, CHAT.V1", "subprotocol_not_allowed")):
        status, _, body, _ = attempt(gw, path="/app", headers={"Sec-WebSocket-Protocol": offer})
        assert status == 400, (offer, body)
        assert b"chat.v2, chat.v1" in body
        assert gw.wait_metric(FILTER, 1, route="app", filter="subprotocol", reason=label) >= 1
    assert record["connections"] == 0  # refused before any backend was contacted

    # Unlisted offers go on to the backend with the allowed one.
    status, head, body, c = attempt(gw, path="/app",
                                    headers={"Sec-WebSocket-Protocol": "legacy, chat.v1"})
    assert status == 101, body
    assert head["sec-websocket-protocol"] == "chat.v1"
    c.close()
    assert wait_for(lambda: record["subprotocols"] == ["chat.v1"])


def test_without_require_a_request_without_subprotocol_passes(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(subprotocol_config(port, 'subprotocol: { allow: ["chat.v1"] }'))
    status, head, body, c = attempt(gw, path="/app")
    assert status == 101, body
    assert "sec-websocket-protocol" not in head
    c.close()
    assert attempt(gw, path="/app", headers={"Sec-WebSocket-Protocol": "legacy"})[0] == 400


def test_backend_choosing_an_unlisted_subprotocol_gets_502(start_gateway, backends):
    # The client offers it, so the gateway's RFC 6455 check of the 101 passes; the filter's
    # allow-list is what refuses it.
    port, record = backends.hand_made(extra_headers=b"Sec-WebSocket-Protocol: legacy\r\n")
    gw = start_gateway(subprotocol_config(port, 'subprotocol: { allow: ["chat.v1"] }'))
    status, _, body, _ = attempt(gw, path="/app",
                                 headers={"Sec-WebSocket-Protocol": "chat.v1, legacy"})
    assert status == 502, body
    assert gw.wait_metric(FILTER, 1, route="app", filter="subprotocol",
                          reason="upstream_protocol") == 1
    assert gw.wait_metric("wsgate_connections_total", 1, outcome="upstream_error") == 1
    assert record["connections"] == 1
