"""Upstream selection, failures and the rule that only a valid 101 opens a tunnel."""
import asyncio
import socket
import time

import pytest
import websockets

from conftest import app_config, free_port, run
from wsproto import RawClient, encode_frame


def test_backend_down_gets_502(start_gateway):
    gw = start_gateway(app_config([free_port(), free_port()]))
    c = RawClient(gw.port)
    c.request("/app")
    status, headers, body = c.read_response()
    assert status == 502 and headers["connection"] == "close"
    assert c.at_eof(5)
    # One attempt per endpoint, each counted.
    assert gw.wait_metric("wsgate_upstream_connect_failures_total", 2, cluster="app") == 2
    assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_unavailable") == 1
    assert gw.metric("wsgate_connections_total", outcome="upstream_error") == 1


def test_dead_endpoint_is_skipped_for_the_next_one(start_gateway, backends):
    live, record = backends.echo()
    gw = start_gateway(app_config([free_port(), live], workers=1))

    async def clients():
        for i in range(6):
            async with websockets.connect(f"ws://127.0.0.1:{gw.port}/app") as ws:
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
    run(clients())
    assert record["connections"] == 6
    assert gw.metric("wsgate_upstream_connect_failures_total", cluster="app") >= 3


def test_round_robin_spreads_connections_over_endpoints(start_gateway, backends):
    a, rec_a = backends.echo()
    b, rec_b = backends.echo()
    gw = start_gateway(app_config([a, b], workers=1))

    async def clients():
        for i in range(6):
            async with websockets.connect(f"ws://127.0.0.1:{gw.port}/app") as ws:
                await ws.send("x")
                await ws.recv()
    run(clients())
    assert rec_a["connections"] == 3 and rec_b["connections"] == 3


def test_connect_timeout_gets_504(start_gateway):
    # A listener whose accept queue is full drops further SYNs: connect hangs.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    try:
        gw = start_gateway(app_config([port]))
        c = RawClient(gw.port)
        start = time.monotonic()
        c.request("/app")
        status, _, _ = c.read_response(timeout=8)
        assert status == 504
        assert time.monotonic() - start < 3
        assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_timeout") == 1
    finally:
        for s in fillers:
            s.close()
        blackhole.close()


def test_backend_that_never_answers_the_upgrade_gets_504(start_gateway, backends):
    async def silent(reader, writer, record):
        await asyncio.sleep(6)
    port, _ = backends.raw(silent)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")
    status, _, _ = c.read_response(timeout=8)
    assert status == 504


def refusing_backend(backends, status_line, body):
    async def respond(reader, writer, record):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(status_line + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        # Keep reading: anything that arrives now would be a smuggled tunnel.
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(4096), 3)
                if not chunk:
                    break
                record["received"] += chunk
        except asyncio.TimeoutError:
            pass
    return backends.raw(respond)


@pytest.mark.parametrize("status_line,status", [(b"HTTP/1.1 403 Forbidden", 403),
                                                (b"HTTP/1.1 200 OK", 200)])
def test_backend_refusal_is_passed_back_and_no_tunnel_opens(start_gateway, backends,
                                                             status_line, status):
    port, record = refusing_backend(backends, status_line, b"go away")
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")
    got, headers, body = c.read_response()
    assert got == status and body == b"go away"
    assert headers["connection"] == "close"
    # What the client sends after the refusal never reaches the backend.
    try:
        c.send(encode_frame(1, "SMUGGLED") + b"GET /internal HTTP/1.1\r\nHost: x\r\n\r\n")
    except OSError:
        pass
    assert c.at_eof(5)
    time.sleep(0.5)
    assert b"SMUGGLED" not in record["received"] and b"/internal" not in record["received"]
    assert gw.metric("wsgate_connections_total", outcome="upstream_declined") == 1


def test_101_with_wrong_accept_gets_502(start_gateway, backends):
    port, _ = backends.hand_made(accept=b"d3Jvbmc=", after_seconds=1)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")
    status, _, body = c.read_response()
    assert status == 502 and b"Accept" in body


def test_backend_selecting_unoffered_subprotocol_gets_502(start_gateway, backends):
    port, _ = backends.echo(subprotocols=["evil"],
                            select_subprotocol=lambda client, server: "evil")
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app", headers={"Sec-WebSocket-Protocol": "chat.v1"})
    status, _, body = c.read_response()
    assert status == 502 and b"subprotocol" in body
    assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_bad_handshake") == 1


def test_backend_selecting_unoffered_extension_gets_502(start_gateway, backends):
    port, _ = backends.hand_made(b"Sec-WebSocket-Extensions: permessage-deflate\r\n",
                                 after_seconds=1)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")  # offers no extension
    status, _, body = c.read_response()
    assert status == 502 and b"extension" in body
