"""Protocol violations close with 1002, limits with 1009, origins are checked."""
import time

import pytest

from conftest import app_config
from wsproto import RawClient, close_payload, encode_frame


def wait_for(predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


VIOLATIONS = {
    "unmasked_client_frame": encode_frame(1, "x", mask=False),
    "rsv1_without_extension": encode_frame(1, "x", rsv=4),
    "rsv2": encode_frame(1, "x", rsv=2),
    "rsv3": encode_frame(2, "x", rsv=1),
    "reserved_data_opcode": encode_frame(3, "x"),
    "reserved_control_opcode": encode_frame(11, "x"),
    "control_frame_over_125_bytes": encode_frame(9, b"p" * 126),
    "fragmented_control_frame": encode_frame(9, "p", fin=False),
    "continuation_without_start": encode_frame(0, "x"),
    "new_message_inside_fragmented": encode_frame(1, "a", fin=False) + encode_frame(2, "b"),
    "length_with_top_bit_set": bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]),
}


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_client_protocol_violation_closes_with_1002(start_gateway, backends, name):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(VIOLATIONS[name])
    code, reason = c.read_close()
    assert code == 1002 and reason
    c.send(encode_frame(8, close_payload(1002)))
    assert c.at_eof(5)
    # The backend saw a 1001 from the gateway, and none of the offending bytes as a message.
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1001
    assert record["messages"] == []
    assert gw.metric("wsgate_protocol_errors_total", route="app",
                     direction="client_to_upstream") == 1
    assert gw.metric("wsgate_close_codes_total", side="gateway", code="1002") == 1


def test_masked_server_frame_closes_client_side_with_1001_and_server_with_1002(start_gateway,
                                                                               backends):
    port, _ = backends.hand_made(then=encode_frame(1, "masked!", mask=True), after_seconds=2)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    code, _ = c.read_close()
    assert code == 1001
    assert gw.wait_metric("wsgate_protocol_errors_total", 1, route="app",
                          direction="upstream_to_client") == 1
    assert gw.metric("wsgate_close_codes_total", side="gateway", code="1002") == 1


def test_frame_split_at_every_byte_is_relayed(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    frame = encode_frame(1, "x" * 300)  # 16-bit length, masked: an 8-byte header
    for i in range(len(frame)):
        c.send(frame[i:i + 1])
        if i < 12:
            time.sleep(0.01)  # let each header byte arrive in its own read
    assert c.read_frame()[3] == b"x" * 300


SIZE_LIMIT = 'message_size: { max_message_bytes: 1KiB, max_frame_bytes: 800 }'


@pytest.mark.parametrize("frames,reason", [
    ([encode_frame(2, b"b" * 900)], "frame too big"),
    ([encode_frame(2, b"b" * 600, fin=False), encode_frame(0, b"b" * 600)], "message too big"),
    ([encode_frame(1, b"t" * 400, fin=False), encode_frame(9, "ping"),
      encode_frame(0, b"t" * 400, fin=False), encode_frame(0, b"t" * 400)], "message too big"),
])
def test_oversized_message_closes_sender_with_1009_and_backend_with_1001(
        start_gateway, backends, frames, reason):
    port, record = backends.echo()
    gw = start_gateway(app_config([port], filters=[SIZE_LIMIT]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(2, b"small"))
    assert c.read_frame()[3] == b"small"
    c.send(b"".join(frames))
    code, got_reason = c.read_close()
    assert (code, got_reason) == (1009, reason)
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1001
    assert record["messages"] == [b"small"]  # the oversized message never reached it
    assert gw.metric("wsgate_filter_rejections_total", route="app", filter="message_size") == 1


def test_oversized_backend_message_closes_backend_with_1009(start_gateway, backends):
    async def handler(ws, record):
        await ws.recv()
        await ws.send(b"z" * 5000)
        await ws.wait_closed()
    port, record = backends.websocket(handler)
    gw = start_gateway(app_config([port], filters=[SIZE_LIMIT]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(1, "go"))
    code, _ = c.read_close()
    assert code == 1001
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1009


ORIGIN = 'origin: { allow: ["https://chat.example.com", "https://*.example.org"] }'


@pytest.mark.parametrize("origin,status", [
    ("https://chat.example.com", 101), ("https://a.b.example.org", 101), (None, 101),
    ("https://evil.example.com", 403), ("http://chat.example.com", 403),
    ("https://example.org", 403), ("null", 403)])
def test_origin_allow_list(start_gateway, backends, origin, status):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port], filters=[ORIGIN]))
    c = RawClient(gw.port)
    c.request("/app", headers={"Origin": origin})
    got, headers, _ = c.read_response()
    assert got == status
    if status == 403:
        assert headers["connection"] == "close"
        assert gw.metric("wsgate_filter_rejections_total", route="app", filter="origin") == 1
        assert gw.metric("wsgate_handshake_rejections_total", reason="origin") == 1


def test_origin_required_rejects_request_without_origin(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(app_config(
        [port], filters=['origin: { allow: ["https://chat.example.com"], require: true }']))
    c = RawClient(gw.port)
    c.request("/app")
    assert c.read_response()[0] == 403
