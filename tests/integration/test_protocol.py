"""Protocol violations close with 1002 to the violator, size limits with 1009 to the sender and
1001 to the other side, and origins are checked before any backend is contacted."""
import time

import pytest

from conftest import app_config, wait_for
from wsproto import (BINARY, CLOSE, CONTINUATION, PING, TEXT, RawClient, close_codes_in,
                     close_payload, encode_frame)

VIOLATIONS = {
    "unmasked_client_frame": encode_frame(TEXT, "x", mask=False),
    "rsv1_without_extension": encode_frame(TEXT, "x", rsv=4),
    "rsv2": encode_frame(TEXT, "x", rsv=2),
    "rsv3": encode_frame(BINARY, "x", rsv=1),
    "rsv_on_a_control_frame": encode_frame(PING, "x", rsv=4),
    **{f"reserved_opcode_{op}": encode_frame(op, "x") for op in (3, 4, 5, 6, 7)},
    **{f"reserved_opcode_{op}": encode_frame(op, "x") for op in (11, 12, 13, 14, 15)},
    "ping_over_125_bytes": encode_frame(PING, b"p" * 126),
    "close_over_125_bytes": encode_frame(CLOSE, close_payload(1000, "r" * 124)),
    "fragmented_ping": encode_frame(PING, "p", fin=False),
    "fragmented_close": encode_frame(CLOSE, close_payload(1000), fin=False),
    "continuation_without_start": encode_frame(CONTINUATION, "x"),
    "text_inside_fragmented_message": encode_frame(TEXT, "a", fin=False) +
    encode_frame(TEXT, "b"),
    "binary_inside_fragmented_message": encode_frame(BINARY, "a", fin=False) +
    encode_frame(BINARY, "b", fin=False),
    "length_with_top_bit_set": bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]),
    # RFC 6455 §5.2: a length written with more bytes than it needs.
    "length_5_in_16_bits": bytes([0x81, 0xFE, 0, 5, 0, 0, 0, 0]) + b"hello",
    "length_5_in_64_bits": bytes([0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0]) + b"hello",
}


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_client_protocol_violation_closes_with_1002(start_gateway, backends, name):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "before"))
    assert c.read_message()[1] == b"before"
    c.send(VIOLATIONS[name])
    code, _ = c.read_close()
    assert code == 1002
    c.send(encode_frame(CLOSE, close_payload(1002)))
    assert c.wait_end(5) in ("fin", "reset")
    # The backend is told the session is over, and got none of the offending bytes as data.
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] in (1001, 1011)
    assert record["messages"] == ["before"]
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="gateway",
                          code="1002") == 1
    assert gw.metric("wsgate_protocol_errors_total", route="app",
                     direction="client_to_upstream") == 1
    assert gw.wait_idle() == 0


@pytest.mark.parametrize("name", ["unmasked_client_frame", "rsv2", "reserved_opcode_3",
                                  "continuation_without_start"])
def test_protocol_violation_on_echo_cluster_closes_with_1002(start_gateway, name):
    gw = start_gateway(app_config([1]))
    c = RawClient(gw.port)
    c.upgrade("/echo")
    c.send(VIOLATIONS[name])
    assert c.read_close()[0] == 1002


@pytest.mark.parametrize("frame", [encode_frame(TEXT, "masked!", mask=True),
                                   encode_frame(TEXT, "rsv", rsv=4, mask=False),
                                   encode_frame(5, "op", mask=False)],
                         ids=["masked", "rsv1", "reserved_opcode"])
def test_server_protocol_violation_closes_server_with_1002(start_gateway, backends, frame):
    port, record = backends.hand_made(then=frame, after_seconds=2)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    code, _ = c.read_close()
    assert code in (1001, 1011), "the client is told the session is over"
    # The backend (the violator) got a 1002 close.
    assert wait_for(lambda: close_codes_in(record["received"]), 3), record["received"]
    assert close_codes_in(record["received"])[0][0] == 1002
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="gateway",
                          code="1002") == 1


def test_frame_split_at_every_byte_is_relayed(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    frame = encode_frame(TEXT, "x" * 300)  # 16-bit length, masked: an 8-byte header
    for i in range(len(frame)):
        c.send(frame[i:i + 1])
        if i < 12:
            time.sleep(0.01)  # let each header byte arrive in its own read
    assert c.read_message()[1] == b"x" * 300
    assert record["messages"] == ["x" * 300]


SIZE_LIMIT = 'message_size: { max_message_bytes: 1KiB, max_frame_bytes: 800 }'


@pytest.mark.parametrize("frames", [
    [encode_frame(BINARY, b"b" * 900)],
    [encode_frame(BINARY, b"b" * 2000)],
    [encode_frame(BINARY, b"b" * 600, fin=False), encode_frame(CONTINUATION, b"b" * 600)],
    [encode_frame(TEXT, b"t" * 400, fin=False), encode_frame(PING, "ping"),
     encode_frame(CONTINUATION, b"t" * 400, fin=False), encode_frame(CONTINUATION, b"t" * 400)],
], ids=["single_frame_over_frame_limit", "single_frame_over_both", "fragmented_two",
        "fragmented_three_with_ping"])
def test_oversized_message_closes_sender_with_1009_and_backend_with_1001(
        start_gateway, backends, frames):
    port, record = backends.echo()
    gw = start_gateway(app_config([port], filters=[SIZE_LIMIT]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(BINARY, b"small"))
    assert c.read_message()[1] == b"small"
    c.send(b"".join(frames))
    code, _ = c.read_close()
    assert code == 1009
    c.send(encode_frame(CLOSE, close_payload(1009)))
    assert c.wait_end(5) in ("fin", "reset")
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1001
    assert record["messages"] == [b"small"], "no part of the oversized message was delivered"
    assert gw.wait_metric("wsgate_filter_rejections_total", 1, route="app",
                          filter="message_size") == 1
    assert gw.metric("wsgate_close_codes_total", route="app", side="gateway", code="1009") == 1
    assert gw.metric("wsgate_close_codes_total", route="app", side="gateway", code="1001") == 1


def test_messages_at_the_limits_pass(start_gateway, backends):
    # A recorder, not an echo: an echoed 1 KiB message would be one frame over 800 bytes.
    port, record = backends.recorder()
    gw = start_gateway(app_config([port], filters=[SIZE_LIMIT]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(BINARY, b"a" * 800))  # a frame at max_frame_bytes
    c.send(encode_frame(BINARY, b"b" * 624, fin=False) + encode_frame(PING, "p") +
           encode_frame(CONTINUATION, b"b" * 400))  # a message at max_message_bytes
    assert wait_for(lambda: len(record["messages"]) == 2)
    assert record["messages"] == [b"a" * 800, b"b" * 1024]
    assert c.read_frame()[2:4] == (10, b"p")  # the pong; no close
    assert c.wait_end(0.5) == "open"
    assert gw.metric("wsgate_filter_rejections_total", route="app", filter="message_size") == 0


def test_oversized_backend_message_closes_backend_with_1009_and_client_with_1001(
        start_gateway, backends):
    async def handler(ws, record):
        await ws.recv()
        await ws.send(b"z" * 5000)
        await ws.wait_closed()
    port, record = backends.websocket(handler)
    gw = start_gateway(app_config([port], filters=[SIZE_LIMIT]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "go"))
    code, _ = c.read_close()  # no data frame before it: the message was not forwarded
    assert code == 1001
    c.send(encode_frame(CLOSE, close_payload(1001)))
    assert c.wait_end(5) == "fin"
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1009
    assert gw.wait_metric("wsgate_filter_rejections_total", 1, route="app",
                          filter="message_size") == 1


def test_message_size_direction_limits_only_that_direction(start_gateway, backends):
    port, record = backends.echo()
    limit = 'message_size: { max_message_bytes: 100, direction: upstream_to_client }'
    gw = start_gateway(app_config([port], filters=[limit]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(BINARY, b"u" * 50))
    assert c.read_message()[1] == b"u" * 50
    c.send(encode_frame(BINARY, b"u" * 500))  # may go up, but its echo may not come down
    assert c.read_close()[0] == 1001
    c.send(encode_frame(CLOSE, close_payload(1001)))
    assert c.wait_end(5) == "fin"
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1009
    assert record["messages"] == [b"u" * 50, b"u" * 500]


ORIGIN = 'origin: { allow: ["https://chat.example.com", "https://*.example.org"] }'


@pytest.mark.parametrize("origin,status", [
    ("https://chat.example.com", 101), ("HTTPS://Chat.Example.COM", 101),
    ("https://a.example.org", 101), ("https://a.b.example.org", 101), (None, 101),
    ("https://evil.example.com", 403), ("http://chat.example.com", 403),
    ("https://chat.example.com.evil.net", 403), ("https://example.org", 403),
    ("https://evilexample.org", 403), ("null", 403)])
def test_origin_allow_list(start_gateway, backends, origin, status):
    port, record = backends.echo()
    gw = start_gateway(app_config([port], filters=[ORIGIN]))
    c = RawClient(gw.port)
    c.request("/app", headers={"Origin": origin})
    got, headers, body = c.read_response()
    assert got == status, body
    if status == 403:
        assert headers["connection"].lower() == "close" and body.strip()
        assert c.wait_end(5) == "fin"
        assert record["connections"] == 0, "a refused origin never reaches the backend"
        assert gw.metric("wsgate_filter_rejections_total", route="app", filter="origin") == 1
        assert gw.metric("wsgate_handshake_rejections_total", reason="origin") == 1
    else:
        c.send(encode_frame(TEXT, "welcome"))
        assert c.read_message()[1] == b"welcome"
        assert record["headers"][0].get("Origin") == origin


def test_origin_required_rejects_request_without_origin(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config(
        [port], filters=['origin: { allow: ["https://chat.example.com"], require: true }']))
    c = RawClient(gw.port)
    c.request("/app")
    assert c.read_response()[0] == 403
    c = RawClient(gw.port)
    c.upgrade("/app", headers={"Origin": "https://chat.example.com"})
    assert gw.metric("wsgate_filter_rejections_total", route="app", filter="origin") == 1


def test_oversized_frame_is_refused_from_its_header_alone(start_gateway, backends):
    # Only the header of a 10 MiB frame is sent: the limit is decided before any payload.
    port, record = backends.echo()
    gw = start_gateway(app_config([port], filters=[SIZE_LIMIT]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(BINARY, b"", length=10 << 20)[:14])  # 2 + 8 length + 4 mask key
    assert c.read_close(timeout=5)[0] == 1009
    c.close()  # a reply would be read as payload of the refused frame: just leave
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1001


def test_backend_leg_ends_as_soon_as_its_close_exchange_is_done(start_gateway, backends):
    """After a gateway close (1009 to the client, 1001 to the backend) the backend's connection
    ends once the backend has answered, not when the client finally answers or close_timeout
    (5 s) passes."""
    port, record = backends.echo()
    gw = start_gateway(app_config([port], filters=[SIZE_LIMIT]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(BINARY, b"b" * 2000))
    assert c.read_close()[0] == 1009
    started = time.monotonic()
    # The client does not answer yet; the backend's side completes on its own.
    assert wait_for(lambda: record["close_codes"], timeout=3), \
        "the backend's connection waited for the client's close"
    assert record["close_codes"][0][0] == 1001
    assert time.monotonic() - started < 2
    assert gw.metric("wsgate_connections_active", listener="public") == 1, \
        "the client's leg is still waiting for its answer"
    c.send(encode_frame(CLOSE, close_payload(1009)))
    assert c.wait_end(5) in ("fin", "reset")
    assert gw.wait_metric("wsgate_connections_total", 1, listener="public",
                          outcome="relayed") == 1
