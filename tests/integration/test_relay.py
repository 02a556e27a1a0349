"""Messages, fragments, pings, closes and compression relayed end to end through wsgate, to the
built-in echo cluster and to python3-websockets backends."""
import asyncio
import time

import pytest

import wscompat
from conftest import app_config, gateway_config, run, wait_for
from wsproto import (BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawClient, close_payload,
                     encode_frame)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20]


def payloads(size):
    text = ("é" * (size // 2)) + ("x" * (size % 2))  # `size` bytes of UTF-8, multi-byte chars
    data = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    return text, data


async def echo_roundtrips(url, sizes):
    async with wscompat.connect(url, max_size=None, compression=None, open_timeout=5,
                                close_timeout=5) as ws:
        for size in sizes:
            text, data = payloads(size)
            await ws.send(text)
            got = await asyncio.wait_for(ws.recv(), 30)
            assert got == text, f"text message of {size} bytes came back changed"
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), 30)
            assert got == data, f"binary message of {size} bytes came back changed"


@pytest.mark.parametrize("path", ["/echo", "/app"])
def test_text_and_binary_messages_from_0_bytes_to_16_mib(start_gateway, backends, path):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    run(echo_roundtrips(f"ws://127.0.0.1:{gw.port}{path}", SIZES), timeout=150)
    route = path.strip("/")
    n = 2 * len(SIZES)
    # Counted live and exactly: two messages per size, each way.
    assert gw.wait_metric("wsgate_messages_total", n, route=route,
                          direction="client_to_upstream") == n
    assert gw.wait_metric("wsgate_messages_total", n, route=route,
                          direction="upstream_to_client") == n
    if path == "/app":
        expected = [m for size in SIZES for m in payloads(size)]
        assert len(record["messages"]) == n
        assert all(a == b for a, b in zip(record["messages"], expected)), \
            "the backend received different messages than the client sent"


@pytest.mark.parametrize("path", ["/echo", "/app"])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_fragmented_message_with_pings_between_fragments(start_gateway, backends, path,
                                                         opcode):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade(path)
    big = b"B" * 70000  # a 64-bit-length fragment in the middle
    c.send(encode_frame(opcode, "Hello, ", fin=False))
    c.send(encode_frame(PING, "ping-1"))
    c.send(encode_frame(CONTINUATION, big, fin=False))
    c.send(encode_frame(PING, "ping-2"))
    c.send(encode_frame(CONTINUATION, b"", fin=False))  # an empty fragment is legal
    c.send(encode_frame(CONTINUATION, " world", fin=True))
    whole = b"Hello, " + big + b" world"
    got_opcode, message, controls = c.read_message()
    for _ in range(2):
        if len(controls) < 2:
            controls.append(c.read_frame()[2:4])
    assert (got_opcode, message) == (opcode, whole)
    # Both pings were answered (by the backend, relayed back), with their payloads.
    assert sorted(controls) == [(PONG, b"ping-1"), (PONG, b"ping-2")]
    if path == "/app":
        assert record["messages"] == [whole.decode() if opcode == TEXT else whole]
    route = path.strip("/")
    assert gw.wait_metric("wsgate_messages_total", 1, route=route,
                          direction="client_to_upstream") == 1
    assert gw.metric("wsgate_frames_total", route=route, direction="client_to_upstream") == 6


def test_server_fragments_and_pings_reach_the_client(start_gateway, backends):
    async def handler(ws, record):
        await ws.recv()
        await ws.send(iter(["part one, ", "part two"]))  # a fragmented message
        await ws.ping(b"from-server")
        record["messages"].append(await ws.recv())
    port, record = backends.websocket(handler)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "go"))
    frames = []
    while len(frames) < 10 and (not frames or frames[-1][2] != PING):
        frames.append(c.read_frame())
    data, ping = frames[:-1], frames[-1]
    assert ping[2:4] == (PING, b"from-server")
    # Server frames are forwarded as they came: unmasked, fragmentation kept.
    assert len(data) >= 2 and data[0][2] == TEXT and not data[0][0]
    assert all(f[2] == CONTINUATION for f in data[1:]) and data[-1][0]
    assert not any(f[4] for f in frames)
    assert b"".join(f[3] for f in data) == b"part one, part two"
    c.send(encode_frame(PONG, b"from-server"))
    c.send(encode_frame(TEXT, "done"))
    assert wait_for(lambda: record["messages"] == ["done"])


def test_close_code_and_reason_from_client_reach_backend(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))

    async def client():
        async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app",
                                    close_timeout=5) as ws:
            await ws.send("hi")
            await ws.recv()
            await ws.close(4001, "bye")
            # The backend's answer completed the closing handshake.
            return ws.close_code, ws.close_reason
    code, reason = run(client())
    assert (code, reason) == (4001, "bye")
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"] == [(4001, "bye")]
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="client",
                          code="4xxx") == 1
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="upstream",
                          code="4xxx") == 1


def test_close_code_and_reason_from_backend_reach_client(start_gateway, backends):
    async def handler(ws, record):
        await ws.recv()
        await ws.close(4002, "server says bye")
    port, record = backends.websocket(handler)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "hi"))
    assert c.read_close() == (4002, "server says bye")
    c.send(encode_frame(CLOSE, close_payload(4002, "server says bye")))
    assert c.wait_end(5) == "fin"
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"] == [(4002, "server says bye")]
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="upstream",
                          code="4xxx") == 1


def test_close_without_status_code_is_relayed(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(CLOSE, b""))
    assert c.read_close() == (1005, "")
    assert c.wait_end(5) == "fin"
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1005


def test_echo_cluster_completes_the_closing_handshake(start_gateway):
    gw = start_gateway(app_config([1]))
    c = RawClient(gw.port)
    c.upgrade("/echo")
    c.send(encode_frame(CLOSE, close_payload(4003, "echo bye")))
    code, _ = c.read_close()
    assert code == 4003
    assert c.wait_end(5) == "fin"


def test_permessage_deflate_session_end_to_end(start_gateway, backends):
    port, record = backends.echo(compression="deflate")
    gw = start_gateway(app_config([port]))
    text = "compressible " * 5000
    data = bytes(range(256)) * 400

    async def client():
        async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app",
                                    compression="deflate", max_size=None) as ws:
            negotiated = wscompat.response_headers(ws).get("Sec-WebSocket-Extensions", "")
            names = wscompat.extensions(ws)
            for _ in range(3):
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), 10) == text
            await ws.send(data)
            assert await asyncio.wait_for(ws.recv(), 10) == data
            return negotiated, names
    negotiated, names = run(client())
    assert "permessage-deflate" in negotiated
    assert names == ["permessage-deflate"]
    assert record["extensions"] == [["permessage-deflate"]]
    assert record["messages"] == [text] * 3 + [data]
    # Compressed frames went through as they were: far fewer wire bytes than the payloads.
    sent = gw.wait_metric("wsgate_bytes_total", 1, route="app", direction="client_to_upstream")
    assert 0 < sent < len(text) + len(data)
    assert gw.wait_metric("wsgate_messages_total", 4, route="app",
                          direction="upstream_to_client") == 4


def test_deflate_offer_declined_by_backend_gives_a_plain_session(start_gateway, backends):
    port, record = backends.echo(compression=None)
    gw = start_gateway(app_config([port]))

    async def client():
        async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app",
                                    compression="deflate") as ws:
            await ws.send("plain " * 100)
            assert await ws.recv() == "plain " * 100
            return wscompat.extensions(ws)
    assert run(client()) == []
    assert "permessage-deflate" in record["headers"][0].get("Sec-WebSocket-Extensions", "")
    assert record["extensions"] == [[]]


def test_client_vanishing_without_close_gets_backend_a_1001(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "hello"))
    c.read_message()
    c.close()
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] in (1001, 1011)
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="gateway") >= 1
    assert gw.wait_idle() == 0


def test_backend_vanishing_without_close_gets_client_a_close(start_gateway, backends):
    port, _ = backends.hand_made(after_seconds=0.3)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    start = time.monotonic()
    code, reason = c.read_close(timeout=5)
    assert code in (1001, 1011)
    assert time.monotonic() - start < 3
    c.send(encode_frame(CLOSE, close_payload(code)))
    assert c.wait_end(5) == "fin"
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="gateway",
                          code=str(code)) == 1


def test_python_backend_aborting_mid_session_gets_client_a_close(start_gateway, backends):
    async def handler(ws, record):
        await ws.recv()
        ws.transport.abort()  # TCP reset, no close frame
    port, _ = backends.websocket(handler)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "bye?"))
    code, _ = c.read_close(timeout=5)
    assert code in (1001, 1011)


def test_idle_timeout_closes_both_sides_with_1001(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port], route_extra="        idle_timeout: 700ms\n"))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "still here"))
    assert c.read_message()[1] == b"still here"
    start = time.monotonic()
    code, _ = c.read_close(timeout=5)
    assert code == 1001
    assert 0.5 < time.monotonic() - start < 3
    c.send(encode_frame(CLOSE, close_payload(1001)))
    assert c.wait_end(5) == "fin"
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1001


def test_unanswered_close_ends_the_connection_at_close_timeout(start_gateway, backends):
    # Completes the upgrade, then ignores everything (never replies to a close).
    port, _ = backends.hand_made(after_seconds=10)
    gw = start_gateway(app_config([port], route_extra="        close_timeout: 1s\n"))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(CLOSE, close_payload(1000, "bye")))
    start = time.monotonic()
    assert c.wait_end(5) in ("fin", "reset"), "the gateway must give up on the closing handshake"
    assert 0.8 < time.monotonic() - start < 3
    assert gw.wait_idle() == 0


def test_routes_match_host_exact_and_wildcard_first_match_wins(start_gateway, backends):
    a, rec_a = backends.echo()
    b, rec_b = backends.echo()
    routes = """      - name: chat
        match: { host: chat.example.com, path_prefix: /chat }
        cluster: a
      - name: wild
        match: { host: "*.example.org", path: /chat }
        cluster: b
      - name: rest
        match: { path_prefix: /chat }
        cluster: echo
"""
    clusters = f"""  - name: a
    endpoints: ["127.0.0.1:{a}"]
  - name: b
    endpoints: ["127.0.0.1:{b}"]
"""
    gw = start_gateway(gateway_config(routes, clusters))

    def session(host, path):
        c = RawClient(gw.port)
        c.request(path, host=host)
        status, _, _ = c.read_response()
        if status == 101:
            c.send(encode_frame(TEXT, host))
            assert c.read_message()[1] == host.encode()
            c.send(encode_frame(CLOSE, close_payload(1000)))
            c.read_close()
        c.close()
        return status

    assert session("chat.example.com", "/chat/room") == 101
    assert session("CHAT.Example.com:8080", "/chat") == 101
    assert session("a.b.example.org", "/chat") == 101
    assert session("a.b.example.org", "/chat?x=1") == 101     # query ignored by `path`
    assert session("example.org", "/chat") == 101             # not *.example.org: → rest
    assert session("a.example.org", "/chat/x") == 101         # path is exact: → rest
    assert session("chat.example.com", "/other") == 404
    assert rec_a["messages"] == ["chat.example.com", "CHAT.Example.com:8080"]
    assert rec_b["messages"] == ["a.b.example.org", "a.b.example.org"]
    assert gw.wait_metric("wsgate_messages_total", 2, route="rest",
                          direction="client_to_upstream") == 2


def test_frames_the_backend_sends_right_behind_its_101_are_not_lost(start_gateway, backends):
    # The 101 and the first frames arrive in one TCP segment.
    early = encode_frame(TEXT, "early", mask=False) + encode_frame(BINARY, b"\x01\x02",
                                                                    mask=False)
    port, _ = backends.hand_made(then=early, after_seconds=2)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    assert c.read_message()[:2] == (TEXT, b"early")
    assert c.read_message()[:2] == (BINARY, b"\x01\x02")


def test_established_session_has_no_idle_timeout_by_default(start_gateway, backends):
    port, _ = backends.echo(ping_interval=None)
    gw = start_gateway(app_config([port], listener_extra="    request_timeout: 500ms"))
    c = RawClient(gw.port)
    c.upgrade("/app")
    assert c.wait_end(2) == "open", "a quiet session was ended (request_timeout or idle)"
    c.send(encode_frame(TEXT, "still there"))
    assert c.read_message()[1] == b"still there"


def test_control_frames_up_to_125_bytes_pass(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(PING, b"p" * 125))
    assert c.read_frame()[2:4] == (PONG, b"p" * 125)
    c.send(encode_frame(CLOSE, close_payload(1000, "r" * 123)))
    assert c.read_close() == (1000, "r" * 123)
    assert c.wait_end(5) == "fin"


def test_server_frames_split_at_every_byte_are_relayed(start_gateway, backends):
    frames = encode_frame(TEXT, "y" * 300, mask=False) + encode_frame(PING, "pp", mask=False)
    port, record = backends.hand_made(then=frames, trickle=True, after_seconds=2)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    assert c.read_message()[:2] == (TEXT, b"y" * 300)
    assert c.read_frame()[2:4] == (PING, b"pp")


@pytest.mark.parametrize("path", ["/echo", "/app"])
def test_a_thousand_pipelined_messages_come_back_whole_and_in_order(start_gateway, backends,
                                                                     path):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade(path)
    sizes = [(i * 37) % 300 for i in range(1000)]  # 0..299 bytes: 7- and 16-bit lengths
    batch = b"".join(encode_frame(BINARY, bytes([i % 256]) * n) for i, n in enumerate(sizes))
    c.send(batch)  # one write: many frames per read, frames split across reads
    for i, n in enumerate(sizes):
        opcode, message, _ = c.read_message(timeout=20)
        assert (opcode, message) == (BINARY, bytes([i % 256]) * n), f"message {i}"
    route = path.strip("/")
    assert gw.wait_metric("wsgate_messages_total", 1000, route=route,
                          direction="upstream_to_client") == 1000


@pytest.mark.parametrize("path", ["/echo", "/app"])
def test_large_fragmented_message_is_relayed_whole(start_gateway, backends, path):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade(path)
    parts = [bytes([k]) * (1 << 20) for k in range(4)]  # 4 MiB in four 1 MiB fragments
    c.send(encode_frame(BINARY, parts[0], fin=False))
    for k in (1, 2):
        c.send(encode_frame(CONTINUATION, parts[k], fin=False))
    c.send(encode_frame(CONTINUATION, parts[3], fin=True))
    opcode, message, _ = c.read_message(timeout=20)
    assert opcode == BINARY and message == b"".join(parts)


def test_busy_session_borrows_a_read_buffer_and_gives_it_back_when_quiet(start_gateway,
                                                                       backends):
    """A burst larger than a flow's landing slot makes the flow borrow a 64 KiB read buffer
    (counted in wsgate_relay_buffer_bytes); once the session goes quiet the sweep takes it back
    while the session stays open, and the session keeps relaying afterwards."""
    port, _ = backends.echo(ping_interval=None)
    gw = start_gateway(app_config([port], workers=1))
    assert gw.metric("wsgate_relay_buffer_bytes") == 0

    c = RawClient(gw.port)
    c.upgrade("/app")

    def burst(tag):
        frames = [encode_frame(BINARY, bytes([tag, i]) * 200) for i in range(30)]
        c.send(b"".join(frames))  # one write: the gateway sees ~12 KB in one wake-up
        for i in range(30):
            assert c.read_message()[1] == bytes([tag, i]) * 200

    burst(1)
    lent = gw.metric("wsgate_relay_buffer_bytes")
    assert lent >= 64 * 1024, "a burst bigger than the landing slot borrows a buffer"
    assert lent % (64 * 1024) == 0
    # Quiet: the sweep (once a second) takes buffers back after a full interval unused.
    assert wait_for(lambda: gw.metric("wsgate_relay_buffer_bytes") == 0, timeout=6), \
        "an idle session still holds a read buffer"
    assert gw.metric("wsgate_connections_active", listener="public") == 1

    # The reads that were cancelled to take the buffers back were re-armed on the slots.
    c.send(encode_frame(TEXT, "small"))
    assert c.read_message()[1] == b"small"
    burst(2)
    c.send(encode_frame(CLOSE, close_payload(1000)))
    assert c.read_close()[0] == 1000
    c.wait_end(5)
    assert wait_for(lambda: gw.metric("wsgate_relay_buffer_bytes") == 0, timeout=5)


def test_backend_that_sends_and_hangs_up_at_once_gets_client_the_message_and_a_close(
        start_gateway, backends):
    """A frame and the FIN behind it arrive together: the gateway relays the frame and still
    sees the end of the stream (a short read must not hide the pending FIN)."""
    last = encode_frame(TEXT, "last words", mask=False)
    port, _ = backends.hand_made(then=last, after_seconds=0)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    assert c.read_message(timeout=5)[1] == b"last words"
    started = time.monotonic()
    code, _ = c.read_close(timeout=5)
    assert code == 1001
    assert time.monotonic() - started < 2
