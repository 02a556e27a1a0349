"""The `utf8` filter: text messages (fragmented, split across frames and reads at any byte) and
close reasons must be valid UTF-8; otherwise the sender gets 1007 and the other side 1001, and
the bad text never reaches the other side when its frame came in one read."""
import subprocess
import time

import pytest

from conftest import WSGATE, app_config, wait_for
from wsproto import (CLOSE, CONTINUATION, TEXT, RawClient, close_payload, encode_frame)

VALID = "aé€😀z".encode()  # 1-, 2-, 3- and 4-byte sequences

INVALID = {
    "overlong": b"ok \xc0\xaf",
    "overlong_3_bytes": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above_10ffff": b"\xf4\x90\x80\x80",
    "lone_continuation": b"abc\x80",
    "bad_lead_byte": b"\xff",
    "truncated_at_the_end": b"price: \xe2\x82",
}


@pytest.fixture
def gateway(start_gateway, backends):
    port, record = backends.echo()
    return start_gateway(app_config([port], filters=["utf8: {}"])), record


def test_valid_text_split_at_every_byte_across_two_frames_passes(gateway):
    gw, record = gateway
    c = RawClient(gw.port)
    c.upgrade("/app")
    for i in range(1, len(VALID)):
        c.send(encode_frame(TEXT, VALID[:i], fin=False))
        time.sleep(0.002)  # another read, often
        c.send(encode_frame(CONTINUATION, VALID[i:]))
        opcode, payload, _ = c.read_message()
        assert (opcode, payload) == (TEXT, VALID), i
    assert len(record["messages"]) == len(VALID) - 1


def test_valid_text_split_at_every_byte_across_two_reads_passes(gateway):
    gw, _ = gateway
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.sock.setsockopt(6, 1, 1)  # TCP_NODELAY: each send its own segment
    for i in range(1, len(VALID)):
        frame = encode_frame(TEXT, VALID)
        cut = len(frame) - len(VALID) + i
        c.send(frame[:cut])
        time.sleep(0.005)
        c.send(frame[cut:])
        assert c.read_message()[:2] == (TEXT, VALID), i


@pytest.mark.parametrize("kind", sorted(INVALID))
def test_invalid_text_gets_1007_and_the_backend_1001_without_the_text(gateway, kind):
    gw, record = gateway
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, b"fine"))
    assert c.read_message()[:2] == (TEXT, b"fine")
    c.send(encode_frame(TEXT, INVALID[kind]))
    code, reason = c.read_close()
    assert code == 1007, (code, reason)
    assert "UTF-8" in reason
    assert wait_for(lambda: record["close_codes"], timeout=5)
    assert record["close_codes"][0][0] == 1001
    assert record["messages"] == ["fine"]
    assert gw.wait_metric("wsgate_filter_rejections_total", 1, route="app", filter="utf8",
                          reason="invalid_utf8") == 1


def test_a_bad_continuation_of_a_fragmented_text_gets_1007(gateway):
    gw, record = gateway
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "part one €".encode()[:-1], fin=False))  # ends mid-sequence
    time.sleep(0.05)
    c.send(encode_frame(CONTINUATION, b"\x41"))  # not the sequence's continuation byte
    assert c.read_close()[0] == 1007
    assert wait_for(lambda: record["close_codes"], timeout=5)
    assert record["close_codes"][0][0] == 1001
    assert record["messages"] == []


def test_binary_messages_are_not_checked(gateway):
    gw, _ = gateway
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(2, b"\xff\xfe\xc0\xaf"))
    assert c.read_message()[:2] == (2, b"\xff\xfe\xc0\xaf")


def test_a_close_reason_that_is_not_utf8_gets_1007(gateway):
    gw, _ = gateway
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(CLOSE, close_payload(1000) + b"bye \xed\xa0\x80"))
    assert c.read_close()[0] == 1007


def test_a_valid_close_reason_passes(gateway):
    gw, record = gateway
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(CLOSE, close_payload(1000, "au revoir, à bientôt")))
    assert c.read_close()[0] == 1000
    assert wait_for(lambda: record["close_codes"], timeout=5)
    assert record["close_codes"][0] == (1000, "au revoir, à bientôt")


def test_the_route_offers_the_backend_no_compression(start_gateway, backends):
    port, record = backends.echo(compression="deflate")
    gw = start_gateway(app_config([port], filters=["utf8: {}"]))
    c = RawClient(gw.port)
    headers = c.upgrade("/app", headers={
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    assert "sec-websocket-extensions" not in {k.lower() for k in headers}, headers
    c.send(encode_frame(TEXT, b"plain"))
    assert c.read_message()[:2] == (TEXT, b"plain")
    assert record["extensions"] == [[]]
    assert "sec-websocket-extensions" not in {k.lower() for k in record["headers"][0]}


def test_utf8_settings_are_validated_at_load(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(app_config([1], filters=["utf8: { direction: sideways, strict: true }"]))
    out = subprocess.run([WSGATE, "--check", "--config", str(path)], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode != 0
    assert "filters[0].utf8" in out.stderr and "strict" in out.stderr


def test_a_long_text_found_invalid_after_part_of_it_went_on_cuts_the_backend_off(gateway):
    # The first part of the frame was already relayed: the backend cannot get a close frame in
    # the middle of a frame, so its connection is closed (it sees 1006), and the client still
    # gets its 1007.
    gw, record = gateway
    c = RawClient(gw.port)
    c.upgrade("/app")
    text = b"x" * 150_000 + b"\xc0\xaf" + b"y" * 1000
    frame = encode_frame(TEXT, text)
    c.send(frame[:100_000])
    time.sleep(0.2)
    c.send(frame[100_000:])
    assert c.read_close()[0] == 1007
    assert wait_for(lambda: record["close_codes"], timeout=5)
    assert record["close_codes"][0][0] == 1006
    assert record["messages"] == []
