"""A close frame, valid or not, is the peer's last frame (RFC 6455 §7.1.1, §7.1.5): the gateway
answers it and ends the TCP connection at once, itself (the client sees the close frame, then
end of stream), and what a client sends after its close never costs it the gateway's reply."""
import asyncio
import socket
import struct
import time

import pytest

from conftest import answer_upgrade, app_config
from wsproto import CLOSE, TEXT, RawClient, close_payload, encode_frame

CLOSE_TIMEOUT = 5  # route.close_timeout's default: the wait these tests must never see
PROMPT = 1.5       # "at once", with room for a loaded machine

# Close frames the gateway itself refuses (1002), and ones it relays for the backend to refuse.
REFUSED = {
    "one_byte_payload": encode_frame(CLOSE, b"\x03"),
    "over_125_bytes": encode_frame(CLOSE, close_payload(1000, "r" * 124)),
    "fragmented": encode_frame(CLOSE, close_payload(1000), fin=False),
}
RELAYED = {
    "code_999": encode_frame(CLOSE, close_payload(999)),
    "code_1005": encode_frame(CLOSE, close_payload(1005)),
    "invalid_utf8_reason": encode_frame(CLOSE, struct.pack("!H", 1000) + b"\xff\xfe"),
}


def send_close_and_watch_the_end(start_gateway, backends, frame):
    """Through a gateway in front of an echo backend, sends `frame` (a close) and reads the
    close the client gets, then how its connection ends; returns (gateway, code, how, seconds
    from the close to the end)."""
    port, _ = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    started = time.monotonic()
    c.send(frame)
    code, _ = c.read_close(timeout=CLOSE_TIMEOUT + 2)
    how = c.wait_end(CLOSE_TIMEOUT + 2)
    return gw, code, how, time.monotonic() - started


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_close_frame_ends_the_connection_at_once(start_gateway, backends, name):
    gw, code, how, took = send_close_and_watch_the_end(start_gateway, backends, REFUSED[name])
    assert code == 1002
    # The gateway closed (the client has not), without waiting for a reply that cannot come.
    assert how == "fin"
    assert took < PROMPT, f"connection ended {took:.2f} s after the close"
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="client",
                          code="invalid") == 1
    assert gw.wait_idle(PROMPT) == 0


@pytest.mark.parametrize("name", sorted(RELAYED))
def test_a_close_frame_the_backend_refuses_ends_the_connection_at_once(start_gateway, backends,
                                                                       name):
    _, code, how, took = send_close_and_watch_the_end(start_gateway, backends, RELAYED[name])
    assert code in (1002, 1007)  # the backend's answer, relayed
    assert how == "fin"
    assert took < PROMPT, f"connection ended {took:.2f} s after the close"


def slow_closing_backend(backends, delay, watch_end=False):
    """A backend that answers the upgrade, reads frames until a close, answers it with the same
    payload after `delay` seconds, and closes the connection. It records the close payloads it
    got (unmasked) and, with `watch_end`, counts the connections that ended (end of stream)
    before it answered."""
    async def respond(reader, writer, record):
        await answer_upgrade(reader, writer)
        while True:
            b0, b1 = await asyncio.wait_for(reader.readexactly(2), 10)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await reader.readexactly(8))[0]
            key = await reader.readexactly(4) if b1 & 0x80 else b""
            payload = await reader.readexactly(n)
            if b0 & 0x0F == CLOSE:
                break
        record.setdefault("closes", []).append(
            bytes(p ^ key[i % 4] for i, p in enumerate(payload)) if key else payload)
        if watch_end:
            try:
                if await asyncio.wait_for(reader.read(1), delay) == b"":
                    record["ended_before_reply"] = record.get("ended_before_reply", 0) + 1
            except asyncio.TimeoutError:
                pass
        else:
            await asyncio.sleep(delay)
        writer.write(bytes([0x88, len(payload)]) + (
            bytes(p ^ key[i % 4] for i, p in enumerate(payload)) if key else payload))
        await writer.drain()  # then closes first, as a server does (RFC 6455 §7.1.1)
    return backends.raw(respond)


def test_frames_after_a_close_never_cost_the_client_its_reply(start_gateway, backends):
    """200 sessions whose client sends a text frame after its close: in the same write, a moment
    later (while the backend takes its time to answer), or after reading the reply. The reply
    always arrives before the connection ends: closing a socket with unread bytes would send a
    reset that destroys it."""
    port, _ = slow_closing_backend(backends, delay=0.02)
    gw = start_gateway(app_config([port], workers=1))
    deadline = time.monotonic() + 60
    for i in range(200):
        assert time.monotonic() < deadline, f"200 sessions took over 60 s (at {i})"
        c = RawClient(gw.port, timeout=5)
        # Each send leaves at once: Nagle would hold the late frame until the close is acked.
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.upgrade("/app")
        close = encode_frame(CLOSE, close_payload(4000 + i))
        late = encode_frame(TEXT, "after the close")
        kind = i % 3
        if kind == 0:
            c.send(close + late)
        elif kind == 1:
            c.send(close)
            time.sleep(0.002)
            c.send(late)
        else:
            c.send(close)
        try:
            code, _ = c.read_close(timeout=5)
        except ConnectionResetError:
            pytest.fail(f"session {i} (kind {kind}): reset before the close reply arrived")
        assert code == 4000 + i
        if kind == 2:
            try:
                c.send(late)
            except OSError:
                pass  # the gateway may already be gone: its reply came first, which is the point
        else:
            assert c.wait_end(PROMPT + 1) == "fin", f"session {i} (kind {kind})"
        c.close()
    assert gw.wait_idle(5) == 0


def test_a_client_that_keeps_sending_after_its_close_is_cut_off(start_gateway, backends):
    """The lingering after the gateway's reply is bounded: a client that never stops sending is
    not read for ever, and still gets the reply (its frames are unread when the reply goes)."""
    port, _ = slow_closing_backend(backends, delay=0.05)
    gw = start_gateway(app_config([port], workers=1))
    fds = gw.fd_count()
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(CLOSE, close_payload(1000)))
    started = time.monotonic()
    frame = encode_frame(TEXT, "x" * 1000)
    ended = None
    while time.monotonic() - started < CLOSE_TIMEOUT:
        try:
            c.sock.sendall(frame)
        except OSError:
            ended = time.monotonic() - started
            break
        time.sleep(0.001)
    assert ended is not None and ended < 4, "the gateway kept reading after its reply"
    # The reply was sent before the end, and is still there to read.
    assert c.read_close(timeout=2) == (1000, "")
    c.close()
    assert gw.wait_idle(5) == 0
    deadline = time.monotonic() + 5
    while gw.fd_count() > fds and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.fd_count() <= fds


@pytest.mark.parametrize("fin_after", [0, 0.005], ids=["fin_with_close", "fin_a_moment_later"])
def test_a_client_that_ends_its_connection_with_its_close_is_let_go_at_once(start_gateway,
                                                                            backends, fin_after):
    """A client that sends its close and ends the connection in the same breath (an app sent to
    the background, a crashed tab) takes no reply: its leg is closed at once, without waiting
    for the backend's answer and without writing one into a socket whose peer is gone. The
    backend gets the client's close and, right behind it, the end of the stream, as through a
    tunnel: the session does not wait for an answer that has nowhere to go."""
    port, record = slow_closing_backend(backends, delay=2, watch_end=True)
    gw = start_gateway(app_config([port], workers=1))
    for i in range(3):
        c = RawClient(gw.port)
        c.upgrade("/app")
        # The close frame and the FIN in one segment, or the FIN a moment later (after the
        # gateway has read the close): either way before the backend answers.
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags = 0 if fin_after else socket.MSG_MORE
        c.sock.send(encode_frame(CLOSE, close_payload(1000)), flags)
        started = time.monotonic()
        time.sleep(fin_after)
        c.sock.shutdown(socket.SHUT_WR)
        how = c.wait_end(PROMPT + 1)
        took = time.monotonic() - started
        assert how == "fin", f"session {i}"
        assert took < 1.0, f"session {i}: the client's leg stayed open {took:.2f} s"
        assert c.buffer == b"", f"session {i}: bytes written to a client that had left"
        c.close()
    assert gw.wait_metric("wsgate_close_codes_total", 3, route="app", side="client",
                          code="1000") == 3
    # Each session ended with its client, not when the backend would have answered (2 s on).
    assert gw.wait_idle(1) == 0
    deadline = time.monotonic() + 1
    while record.get("ended_before_reply", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record["closes"] == [close_payload(1000)] * 3
    assert record.get("ended_before_reply", 0) == 3
