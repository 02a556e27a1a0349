"""Messages, fragments, pings, closes and compression relayed end to end through wsgate."""
import asyncio
import time

import pytest
import websockets

from conftest import app_config, run
from wsproto import RawClient, close_payload, encode_frame

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]


async def echo_roundtrips(url, sizes):
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        for size in sizes:
            text = "é" * (size // 2)
            await ws.send(text)
            assert await ws.recv() == text
            data = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
            await ws.send(data)
            assert await ws.recv() == data


@pytest.mark.parametrize("path", ["/echo", "/app"])
def test_text_and_binary_messages_from_0_bytes_to_16_mib(start_gateway, backends, path):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    run(echo_roundtrips(f"ws://127.0.0.1:{gw.port}{path}", SIZES), timeout=120)
    route = path.strip("/")
    # Counted live and exactly: two messages per size, both ways.
    assert gw.wait_metric("wsgate_messages_total", 2 * len(SIZES), route=route,
                          direction="client_to_upstream") == 2 * len(SIZES)
    assert gw.metric("wsgate_messages_total", route=route,
                     direction="upstream_to_client") == 2 * len(SIZES)
    if path == "/app":
        assert len(record["messages"]) == 2 * len(SIZES)


def test_fragmented_message_with_pings_between_fragments(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(1, "Hello, ", fin=False))
    c.send(encode_frame(9, "ping-1"))
    c.send(encode_frame(0, "fragmented ", fin=False))
    c.send(encode_frame(9, "ping-2"))
    c.send(encode_frame(0, "world", fin=True))
    seen = []
    while len(seen) < 3:
        fin, _, opcode, payload = c.read_frame()
        seen.append((opcode, payload))
    # The backend answered both pings (pongs relayed back) and echoed the whole message.
    assert (10, b"ping-1") in seen and (10, b"ping-2") in seen
    assert (1, b"Hello, fragmented world") in seen
    assert record["messages"] == ["Hello, fragmented world"]
    assert gw.metric("wsgate_frames_total", route="app", direction="client_to_upstream") >= 5


def test_close_code_and_reason_from_client_reach_backend(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/app") as ws:
            await ws.send("hi")
            await ws.recv()
            await ws.close(4001, "bye")
            return ws.close_code
    assert run(client()) == 4001
    deadline = time.monotonic() + 5
    while not record["close_codes"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record["close_codes"] == [(4001, "bye")]
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="client",
                          code="4001") == 1


def test_close_code_and_reason_from_backend_reach_client(start_gateway, backends):
    async def handler(ws, record):
        await ws.recv()
        await ws.close(4002, "server says bye")
    port, _ = backends.websocket(handler)
    gw = start_gateway(app_config([port]))

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/app") as ws:
            await ws.send("hi")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason
    assert run(client()) == (4002, "server says bye")
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="upstream",
                          code="4002") == 1


def test_permessage_deflate_session_end_to_end(start_gateway, backends):
    port, record = backends.echo(compression="deflate")
    gw = start_gateway(app_config([port]))
    text = "compressible " * 5000

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/app",
                                      compression="deflate", max_size=None) as ws:
            assert "permessage-deflate" in ws.response_headers.get("Sec-WebSocket-Extensions", "")
            for _ in range(3):
                await ws.send(text)
                assert await ws.recv() == text
    run(client())
    assert record["messages"] == [text] * 3
    # Compressed frames went through unchanged: far fewer bytes than the text.
    assert gw.metric("wsgate_bytes_total", route="app", direction="client_to_upstream") < len(text)


def test_subprotocol_negotiation_passes_through(start_gateway, backends):
    port, record = backends.echo(subprotocols=["chat.v2"])
    gw = start_gateway(app_config([port]))

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/app",
                                      subprotocols=["chat.v1", "chat.v2"]) as ws:
            return ws.subprotocol
    assert run(client()) == "chat.v2"
    assert "chat.v1" in record["headers"][0]["Sec-WebSocket-Protocol"]


def test_backend_sees_forwarded_headers_and_no_hop_by_hop(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app", headers={"Connection": "keep-alive, Upgrade, X-Secret",
                               "X-Secret": "drop me", "X-Forwarded-For": "203.0.113.9",
                               "Keep-Alive": "timeout=5"})
    c.send(encode_frame(8, close_payload(1000)))
    assert c.read_close()[0] == 1000
    headers = record["headers"][0]
    assert headers["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"
    assert "X-Secret" not in headers and "Keep-Alive" not in headers
    assert headers["Host"] == "localhost"


def test_client_vanishing_without_close_gets_backend_a_1001(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(1, "hello"))
    c.read_frame()
    c.close()
    deadline = time.monotonic() + 5
    while not record["close_codes"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record["close_codes"] and record["close_codes"][0][0] == 1001
    assert gw.wait_metric("wsgate_close_codes_total", 1, side="gateway", code="1001") >= 1


def test_backend_vanishing_without_close_gets_client_a_close(start_gateway, backends):
    port, _ = backends.hand_made()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    code, reason = c.read_close()
    assert code in (1001, 1011)
    assert "upstream" in reason
    c.send(encode_frame(8, close_payload(code)))
    assert c.at_eof(5)


def test_idle_timeout_closes_both_sides_with_1001(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port], route_extra="        idle_timeout: 700ms\n"))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(1, "still here"))
    assert c.read_frame()[3] == b"still here"
    start = time.monotonic()
    code, reason = c.read_close(timeout=5)
    assert (code, reason) == (1001, "idle timeout")
    assert 0.5 < time.monotonic() - start < 3
    c.send(encode_frame(8, close_payload(1001)))
    assert c.at_eof(5)
    deadline = time.monotonic() + 5
    while not record["close_codes"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record["close_codes"][0][0] == 1001


def test_unanswered_close_ends_the_connection_at_close_timeout(start_gateway, backends):
    # Completes the upgrade, then ignores everything (never replies to a close).
    port, _ = backends.hand_made(after_seconds=10)
    gw = start_gateway(app_config([port], route_extra="        close_timeout: 1s\n"))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(8, close_payload(1000, "bye")))
    start = time.monotonic()
    assert c.at_eof(5), "the gateway must give up on the closing handshake"
    assert 0.8 < time.monotonic() - start < 3
    deadline = time.monotonic() + 3
    while gw.metric("wsgate_connections_active") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.metric("wsgate_connections_active") == 0
