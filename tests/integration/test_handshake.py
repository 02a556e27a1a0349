"""Every refusal of an upgrade request is a real HTTP answer with Connection: close, then EOF."""
import socket
import time

import pytest

from conftest import app_config
from wsproto import RawClient, encode_frame


def reject(gw, expect_status, expect_reason, **request):
    c = RawClient(gw.port)
    c.request(**request)
    status, headers, body = c.read_response()
    assert status == expect_status, body
    assert headers.get("connection", "").lower() == "close"
    assert body.strip(), "a short reason is sent as the body"
    assert c.at_eof(5), "the gateway closes after answering"
    assert gw.wait_metric("wsgate_handshake_rejections_total", 1, reason=expect_reason) >= 1
    return headers, body


@pytest.fixture
def gw(start_gateway, backends):
    port, _ = backends.echo()
    return start_gateway(app_config([port], listener_extra="    request_timeout: 1s\n"
                                    "    max_request_bytes: 4KiB\n    max_request_headers: 20"))


def test_accepts_firefox_style_connection_token_list_and_mixed_case(gw):
    c = RawClient(gw.port)
    c.request(headers={"Connection": "keep-alive, Upgrade", "Upgrade": "WebSocket"})
    status, headers, _ = c.read_response()
    assert status == 101
    assert headers["upgrade"].lower() == "websocket"
    c.send(encode_frame(1, "ping?"))
    assert c.read_frame()[3] == b"ping?"


def test_rejects_non_get_method(gw):
    reject(gw, 400, "bad_method", method="POST")


def test_rejects_http_1_0(gw):
    reject(gw, 400, "bad_http_version", version="HTTP/1.0")


def test_rejects_missing_host(gw):
    reject(gw, 400, "missing_host", omit=("Host",))


def test_rejects_missing_upgrade(gw):
    reject(gw, 400, "missing_upgrade", omit=("Upgrade",))


def test_rejects_h2c_upgrade(gw):
    reject(gw, 400, "unsupported_upgrade", headers={"Upgrade": "h2c"})


def test_rejects_connection_without_upgrade(gw):
    reject(gw, 400, "bad_connection", headers={"Connection": "keep-alive"})


@pytest.mark.parametrize("key", [None, "not base64!", "AAAAAAAAAAAAAAAAAAAAAA==AA",
                                 "AAAAAAAAAAAAAAAAAAAA", "YWJjZGVmZ2hpamtsbW5vcHE="])
def test_rejects_missing_or_invalid_key(gw, key):
    # The last one is valid base64 of 17 bytes.
    reject(gw, 400, "bad_key", headers={"Sec-WebSocket-Key": key})


def test_rejects_request_with_a_body(gw):
    reject(gw, 400, "has_body", headers={"Content-Length": "5"})


def test_wrong_websocket_version_gets_426_naming_13(gw):
    headers, _ = reject(gw, 426, "unsupported_ws_version",
                        headers={"Sec-WebSocket-Version": "8"})
    assert headers["sec-websocket-version"] == "13"


def test_unmatched_route_gets_404(gw):
    reject(gw, 404, "no_route", path="/nowhere")


def test_oversized_request_head_gets_431(gw):
    reject(gw, 431, "header_too_large", headers={"X-Big": "a" * 8000})


def test_too_many_header_fields_gets_431(gw):
    reject(gw, 431, "too_many_headers", headers={f"X-H{i}": "v" for i in range(30)})


def test_malformed_request_gets_400(gw):
    c = RawClient(gw.port)
    c.send("THIS IS NOT HTTP\r\n\r\n")
    status, headers, _ = c.read_response()
    assert status == 400 and headers["connection"] == "close"


def test_request_head_timeout_answers_408_and_closes(gw):
    c = RawClient(gw.port)
    c.send("GET /echo HTTP/1.1\r\nHost: x\r\n")  # never finished
    start = time.monotonic()
    status, headers, _ = c.read_response(timeout=5)
    assert status == 408 and headers["connection"] == "close"
    assert time.monotonic() - start < 3
    assert c.at_eof(2)


def test_silent_connection_is_closed_at_request_timeout(gw):
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.settimeout(5)
    start = time.monotonic()
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert time.monotonic() - start < 4
    assert data.startswith(b"HTTP/1.1 408")
