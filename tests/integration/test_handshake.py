"""The RFC 6455 §4.2.1 upgrade as the gateway checks it: every refusal is a real HTTP answer with
`Connection: close` and a short text body, then an orderly close (FIN, never a hang or a reset),
counted in `wsgate_handshake_rejections_total{reason}` (reasons as in docs/metrics.md)."""
import socket
import time

import pytest

from conftest import app_config, wait_for
from wsproto import RawClient, encode_frame, random_key


def reject(gw, expect_status, expect_reason, backend=None, **request):
    c = RawClient(gw.port)
    c.request(**request)
    status, headers, body = c.read_response()
    assert status == expect_status, body
    assert headers.get("connection", "").lower() == "close"
    assert headers.get("content-type", "").startswith("text/plain")
    assert body.strip(), "a short reason is sent as the body"
    assert c.wait_end(5) == "fin", "after the answer the gateway closes, without a reset"
    c.close()
    assert gw.wait_metric("wsgate_handshake_rejections_total", 1, listener="public",
                          reason=expect_reason) == 1
    assert gw.wait_metric("wsgate_connections_total", 1, listener="public",
                          outcome="rejected") == 1
    if backend is not None:
        assert backend["connections"] == 0, "a refused upgrade never reaches the backend"
    return headers, body


@pytest.fixture
def echo_backend(backends):
    return backends.echo()


@pytest.fixture
def gw(start_gateway, echo_backend):
    port, _ = echo_backend
    return start_gateway(app_config([port], listener_extra="    request_timeout: 1s\n"
                                    "    max_request_bytes: 4KiB\n    max_request_headers: 20"))


@pytest.mark.parametrize("path", ["/echo", "/app"])
def test_accepts_valid_upgrade_and_answers_with_the_right_accept(gw, path):
    c = RawClient(gw.port)
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
    headers = c.upgrade(path, headers={"Sec-WebSocket-Key": key})
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    c.send(encode_frame(1, "hello"))
    assert c.read_message() == (1, b"hello", [])


def test_accepts_firefox_style_connection_token_list_and_mixed_case(gw):
    c = RawClient(gw.port)
    c.request("/app", headers={"Connection": "keep-alive, Upgrade", "Upgrade": "WebSocket"})
    status, headers, _ = c.read_response()
    assert status == 101
    c.send(encode_frame(1, "ping?"))
    assert c.read_message()[1] == b"ping?"


def test_accepts_lower_case_header_names(gw):
    c = RawClient(gw.port)
    c.send(f"GET /app HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\n"
           f"connection: upgrade\r\nsec-websocket-key: {random_key()}\r\n"
           f"sec-websocket-version: 13\r\n\r\n")
    assert c.read_response()[0] == 101
    c.send(encode_frame(2, b"\x00\x01"))
    assert c.read_message()[1] == b"\x00\x01"


def test_rejects_non_get_method(gw, echo_backend):
    reject(gw, 400, "bad_method", echo_backend[1], path="/app", method="POST")


def test_rejects_http_1_0(gw, echo_backend):
    reject(gw, 400, "bad_http_version", echo_backend[1], path="/app", version="HTTP/1.0")


@pytest.mark.parametrize("field,value", [("host", "other.example"),
                                         ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                         ("sec-websocket-version", "13")])
def test_rejects_a_repeated_host_key_or_version(gw, echo_backend, field, value):
    # The lower-case name is a second line beside the default one.
    _, body = reject(gw, 400, "repeated_header", echo_backend[1], path="/app",
                     headers={field: value})
    assert b"repeated" in body


def test_rejects_missing_host(gw, echo_backend):
    reject(gw, 400, "missing_host", echo_backend[1], path="/app", omit=("Host",))


def test_rejects_missing_upgrade(gw, echo_backend):
    reject(gw, 400, "missing_upgrade", echo_backend[1], path="/app", omit=("Upgrade",))


def test_rejects_h2c_upgrade(gw, echo_backend):
    reject(gw, 400, "unsupported_upgrade", echo_backend[1], path="/app",
           headers={"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings",
                    "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"})


def test_rejects_missing_connection(gw, echo_backend):
    reject(gw, 400, "bad_connection", echo_backend[1], path="/app", omit=("Connection",))


def test_rejects_connection_without_upgrade_token(gw, echo_backend):
    reject(gw, 400, "bad_connection", echo_backend[1], path="/app",
           headers={"Connection": "keep-alive"})


@pytest.mark.parametrize("key", [None, "", "not base64!", "AAAAAAAAAAAAAAAAAAAAAA==AA",
                                 "AAAAAAAAAAAAAAAAAAAA", "YWJjZGVmZ2hpamtsbW5vcHE=",
                                 "YWJjZGVmZ2hpamtsbW5v"],
                         ids=["missing", "empty", "not-base64", "trailing-garbage",
                              "15-bytes-unpadded", "17-bytes", "15-bytes"])
def test_rejects_missing_or_invalid_key(gw, echo_backend, key):
    reject(gw, 400, "bad_key", echo_backend[1], path="/app",
           headers={"Sec-WebSocket-Key": key})


def test_rejects_request_with_a_body(gw, echo_backend):
    reject(gw, 400, "has_body", echo_backend[1], path="/app",
           headers={"Content-Length": "5"}, body=b"hello")


def test_rejects_request_with_a_chunked_body(gw, echo_backend):
    reject(gw, 400, "has_body", echo_backend[1], path="/app",
           headers={"Transfer-Encoding": "chunked"}, body=b"5\r\nhello\r\n0\r\n\r\n")


@pytest.mark.parametrize("version", ["8", "14", "abc"])
def test_wrong_websocket_version_gets_426_naming_13(gw, echo_backend, version):
    headers, _ = reject(gw, 426, "unsupported_ws_version", echo_backend[1], path="/app",
                        headers={"Sec-WebSocket-Version": version})
    assert headers["sec-websocket-version"] == "13"


def test_missing_websocket_version_is_refused(gw, echo_backend):
    # RFC 6455 §4.2.1 requires the field; either 400 or 426 (naming 13) is a fair answer.
    c = RawClient(gw.port)
    c.request("/app", omit=("Sec-WebSocket-Version",))
    status, headers, body = c.read_response()
    assert status in (400, 426), body
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
    assert headers["connection"].lower() == "close"
    assert c.wait_end(5) == "fin"
    assert echo_backend[1]["connections"] == 0


def test_unmatched_route_gets_404(gw, echo_backend):
    reject(gw, 404, "no_route", echo_backend[1], path="/nowhere")


def test_oversized_request_head_gets_431(gw, echo_backend):
    # 8 KiB of one header against max_request_bytes: 4KiB.
    reject(gw, 431, "header_too_large", echo_backend[1], path="/app",
           headers={"X-Big": "a" * 8000})


def test_request_head_just_under_the_limit_is_accepted(gw):
    c = RawClient(gw.port)
    c.upgrade("/app", headers={"X-Big": "a" * 3500})


def test_too_many_header_fields_gets_431(gw, echo_backend):
    # 30 fields against max_request_headers: 20 (the request itself has 5).
    reject(gw, 431, "too_many_headers", echo_backend[1], path="/app",
           headers={f"X-H{i}": "v" for i in range(30)})


def test_malformed_request_gets_400(gw, echo_backend):
    c = RawClient(gw.port)
    c.send("THIS IS NOT HTTP\r\n\r\n")
    status, headers, body = c.read_response()
    assert status == 400 and headers["connection"].lower() == "close" and body.strip()
    assert c.wait_end(5) == "fin"
    assert gw.wait_metric("wsgate_handshake_rejections_total", 1, reason="malformed") == 1
    assert echo_backend[1]["connections"] == 0


def test_unfinished_request_head_is_answered_and_closed_at_request_timeout(gw):
    # request_timeout: 1s. An operator expects 408 + close, or at least a prompt close.
    c = RawClient(gw.port)
    c.send("GET /app HTTP/1.1\r\nHost: x\r\n")  # never finished
    start = time.monotonic()
    status, headers, _ = c.read_response(timeout=5)
    took = time.monotonic() - start
    assert status == 408 and headers["connection"].lower() == "close"
    assert 0.7 < took < 3, f"answered after {took:.2f} s with request_timeout 1s"
    assert c.wait_end(2) == "fin"
    assert gw.wait_metric("wsgate_handshake_rejections_total", 1, reason="timeout") == 1


def test_trickled_request_head_is_still_bounded_by_request_timeout(gw):
    # A byte every 200 ms keeps the socket busy but the whole head must arrive within 1 s.
    c = RawClient(gw.port)
    start = time.monotonic()
    data = "GET /app HTTP/1.1\r\nHost: x\r\nX-Slow: " + "s" * 40
    try:
        for ch in data:
            c.send(ch)
            time.sleep(0.2)
            if time.monotonic() - start > 4:
                break
    except OSError:
        pass
    ended = c.wait_end(5)
    assert ended in ("fin", "reset")
    took = time.monotonic() - start
    assert took < 4, f"a trickled request head held the connection for {took:.1f} s"


def test_accept_waits_for_the_first_bytes(gw):
    # TCP_DEFER_ACCEPT: the kernel hands a connection over once its first bytes are there, so the
    # gateway reads the request head in the wake-up that accepts it. A silent client is not a
    # gateway connection yet; one that speaks is, at once.
    silent = socket.create_connection(("127.0.0.1", gw.port))
    speaking = socket.create_connection(("127.0.0.1", gw.port))
    speaking.sendall(b"GET /app HTTP/1.1\r\n")  # unfinished: it stays in the handshake
    assert wait_for(lambda: gw.metric("wsgate_connections_active") >= 1, timeout=0.5) >= 1
    time.sleep(0.2)
    assert gw.metric("wsgate_connections_active") == 1, "the silent connection was accepted"
    silent.sendall(b"GET /app HTTP/1.1\r\n")
    assert wait_for(lambda: gw.metric("wsgate_connections_active") == 2, timeout=0.5)
    silent.close()
    speaking.close()


def test_silent_connection_is_closed_at_request_timeout(gw):
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.settimeout(5)
    start = time.monotonic()
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pytest.fail("a silent connection stayed open for 5 s with request_timeout 1s")
    assert time.monotonic() - start < 3
    # Nothing was requested: a 408 or a bare close are both fine, but never a hang.
    assert data == b"" or data.startswith(b"HTTP/1.1 408")
    assert wait_for(lambda: gw.metric("wsgate_connections_active") == 0)
