"""Upstream selection and failures, and the rule that only a valid 101 opens a tunnel."""
import asyncio
import re
import socket
import subprocess
import time

import pytest

import wscompat
from conftest import WSGATE, app_config, dead_port, gateway_config, run, wait_for
from wsproto import TEXT, RawClient, encode_frame


def test_backend_down_gets_502(start_gateway):
    gw = start_gateway(app_config([dead_port(), dead_port()]))
    c = RawClient(gw.port)
    c.request("/app")
    status, headers, body = c.read_response()
    assert status == 502 and headers["connection"].lower() == "close" and body.strip()
    assert c.wait_end(5) == "fin"
    # One attempt per endpoint, each counted.
    assert gw.wait_metric("wsgate_upstream_connect_failures_total", 2, cluster="app") == 2
    assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_unavailable") == 1
    assert gw.wait_metric("wsgate_connections_total", 1, outcome="upstream_error") == 1


def test_dead_endpoint_is_skipped_for_the_next_one(start_gateway, backends):
    live, record = backends.echo()
    gw = start_gateway(app_config([dead_port(), live], workers=1))

    async def clients():
        for i in range(6):
            async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app",
                                        open_timeout=5) as ws:
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
    run(clients())
    assert record["connections"] == 6
    # Round-robin puts the dead endpoint first for about half the connections.
    assert gw.metric("wsgate_upstream_connect_failures_total", cluster="app") >= 1


def test_endpoint_named_by_host_name_is_resolved_when_the_config_is_loaded(start_gateway,
                                                                           backends, tmp_path):
    port, record = backends.echo()
    routes = """      - name: app
        match: { path_prefix: /app }
        cluster: app
"""
    clusters = f"""  - name: app
    endpoints: ["localhost:{port}"]
"""
    gw = start_gateway(gateway_config(routes, clusters, workers=1))
    assert re.search(rf"info cluster app: endpoint localhost:{port} \(127\.0\.0\.1\)", gw.log())
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "by name"))
    assert c.read_message()[1] == b"by name"
    c.close()
    assert wait_for(lambda: record["messages"] == ["by name"], timeout=5)

    # A name that does not resolve is a config error at its line: the gateway does not start.
    bad = tmp_path / "bad.yaml"
    bad.write_text(gateway_config(routes, clusters.replace(f"localhost:{port}",
                                                           "no-such-host.invalid:9000")))
    for args in (["--check"], []):
        out = subprocess.run([WSGATE, "--config", str(bad), *args], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 1, out.stderr
        assert re.search(r"bad\.yaml:\d+:\d+: clusters\[1\]\.endpoints\[0\]: cannot resolve "
                         r'"no-such-host\.invalid": \S', out.stderr), out.stderr


def test_round_robin_spreads_connections_over_endpoints(start_gateway, backends):
    a, rec_a = backends.echo()
    b, rec_b = backends.echo()
    gw = start_gateway(app_config([a, b], workers=1))

    async def clients():
        for i in range(6):
            async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app",
                                        open_timeout=5) as ws:
                await ws.send("x")
                await ws.recv()
    run(clients())
    assert rec_a["connections"] == 3 and rec_b["connections"] == 3


class Blackhole:
    """A loopback listener whose accept queue is full: the kernel drops further SYNs, so a
    connect to it neither succeeds nor fails until its timeout."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", self.port))
            self.works = False
        except socket.timeout:
            self.works = True
        except OSError:
            self.works = False
        finally:
            probe.close()

    def close(self):
        for s in self.fillers:
            s.close()
        self.listener.close()


def test_connect_timeout_gets_504(start_gateway):
    hole = Blackhole()
    try:
        assert hole.works, "could not make a loopback endpoint that drops SYNs"
        gw = start_gateway(app_config([hole.port]))  # connect_timeout: 1s
        c = RawClient(gw.port)
        start = time.monotonic()
        c.request("/app")
        status, headers, body = c.read_response(timeout=8)
        took = time.monotonic() - start
        assert status == 504 and headers["connection"].lower() == "close" and body.strip()
        assert 0.8 < took < 3, f"504 after {took:.2f} s with connect_timeout 1s"
        assert c.wait_end(5) == "fin"
        assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_timeout") == 1
        assert gw.metric("wsgate_upstream_connect_failures_total", cluster="app") == 1
    finally:
        hole.close()


def test_backend_that_never_answers_the_upgrade_gets_504(start_gateway, backends):
    async def silent(reader, writer, record):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(6)
    port, _ = backends.raw(silent)
    gw = start_gateway(app_config([port]))  # response_timeout: 3s
    c = RawClient(gw.port)
    start = time.monotonic()
    c.request("/app")
    status, _, _ = c.read_response(timeout=8)
    assert status == 504
    assert 2.5 < time.monotonic() - start < 5
    assert c.wait_end(5) == "fin"


@pytest.mark.parametrize("status_line,status", [(b"HTTP/1.1 403 Forbidden", 403),
                                                (b"HTTP/1.1 200 OK", 200)])
def test_backend_refusal_is_passed_back_and_no_tunnel_opens(start_gateway, backends,
                                                             status_line, status):
    port, record = backends.refusing(status_line, b"go away", extra=b"X-Backend: yes\r\n")
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")
    got, headers, body = c.read_response()
    assert got == status and body == b"go away"
    assert headers.get("x-backend") == "yes", "the backend's response is passed back"
    assert headers["connection"].lower() == "close"
    # What the client sends after the refusal never reaches the backend.
    try:
        c.send(encode_frame(1, "SMUGGLED") + b"GET /internal HTTP/1.1\r\nHost: x\r\n\r\n")
    except OSError:
        pass
    assert c.wait_end(5) in ("fin", "reset")
    c.close()
    assert wait_for(lambda: record.get("eof"), timeout=4), \
        "the gateway ends the backend connection after passing its answer back"
    assert b"SMUGGLED" not in record["received"] and b"/internal" not in record["received"]
    assert record["received"] == b""
    assert gw.wait_metric("wsgate_connections_total", 1, outcome="upstream_declined") == 1
    assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_declined") == 1


@pytest.mark.parametrize("coding,sent,passed_on", [
    # De-chunked: the client gets the body with its length.
    ("chunked", b"3\r\nno \r\n4\r\nway!\r\n0\r\n\r\n", None),
    # Another coding stays on the body, which then ends at the close; never with a length.
    ("gzip", b"\x1f\x8b-not-really", "gzip"),
    ("gzip, chunked", b"5\r\n\x1f\x8bzip\r\n0\r\n\r\n", "gzip"),
])
def test_refusal_with_a_transfer_encoding_is_passed_back_well_formed(start_gateway, backends,
                                                                     coding, sent, passed_on):
    async def respond(reader, writer, record):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: " + coding.encode() +
                     b"\r\n\r\n" + sent)
        await writer.drain()  # then the handler returns and the server closes: the body's end
    port, _ = backends.raw(respond)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")
    status, headers, body = c.read_response()
    assert status == 403
    assert headers.get("transfer-encoding") == passed_on
    if passed_on is None:
        assert (headers.get("content-length"), body) == ("7", b"no way!")
    else:
        assert "content-length" not in headers, "a length beside a Transfer-Encoding"
        assert c.wait_end(5) == "fin"
        assert bytes(c.buffer) == (b"\x1f\x8b-not-really" if coding == "gzip" else b"\x1f\x8bzip")
    assert gw.wait_metric("wsgate_connections_total", 1, outcome="upstream_declined") == 1


def test_bytes_pipelined_behind_the_upgrade_never_reach_a_refusing_backend(start_gateway,
                                                                           backends):
    # The smuggling attempt: request and "tunnel" bytes in one write, before any answer.
    port, record = backends.refusing(b"HTTP/1.1 403 Forbidden", b"no")
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app", body=encode_frame(1, "SMUGGLED") +
              b"GET /internal HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = c.read_response()
    assert status == 403 and body == b"no"
    c.wait_end(5)
    time.sleep(0.5)
    assert b"SMUGGLED" not in record["received"] and b"/internal" not in record["received"]
    assert b"SMUGGLED" not in record["request"]


def test_101_with_wrong_accept_gets_502(start_gateway, backends):
    port, record = backends.hand_made(accept=b"d3Jvbmc=", after_seconds=2)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")
    status, headers, body = c.read_response()
    assert status == 502 and headers["connection"].lower() == "close" and body.strip()
    # No tunnel: a frame sent now does not reach the backend.
    try:
        c.send(encode_frame(1, "SMUGGLED"))
    except OSError:
        pass
    c.wait_end(5)
    assert b"SMUGGLED" not in wait_for(lambda: record["received"], 0.5)
    assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_bad_handshake") == 1


def test_backend_selecting_unoffered_subprotocol_gets_502(start_gateway, backends):
    port, _ = backends.echo(subprotocols=["evil"],
                            select_subprotocol=lambda client, server: "evil")
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app", headers={"Sec-WebSocket-Protocol": "chat.v1"})
    status, headers, body = c.read_response()
    assert status == 502 and headers["connection"].lower() == "close" and body.strip()
    assert c.wait_end(5) == "fin"
    assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_bad_handshake") == 1


def test_backend_selecting_subprotocol_when_none_offered_gets_502(start_gateway, backends):
    port, _ = backends.hand_made(b"Sec-WebSocket-Protocol: evil\r\n", after_seconds=1)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")  # offers no subprotocol
    assert c.read_response()[0] == 502


def test_backend_selecting_unoffered_extension_gets_502(start_gateway, backends):
    port, _ = backends.hand_made(b"Sec-WebSocket-Extensions: permessage-deflate\r\n",
                                 after_seconds=1)
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.request("/app")  # offers no extension
    status, _, body = c.read_response()
    assert status == 502 and body.strip()
    assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_bad_handshake") == 1


def test_subprotocol_negotiation_passes_through(start_gateway, backends):
    port, record = backends.echo(subprotocols=["chat.v2"])
    gw = start_gateway(app_config([port]))

    async def client():
        async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app",
                                    subprotocols=["chat.v1", "chat.v2"]) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            return ws.subprotocol
    assert run(client()) == "chat.v2"
    offered = record["headers"][0].get_all("Sec-WebSocket-Protocol")
    assert "chat.v1" in ", ".join(offered) and "chat.v2" in ", ".join(offered)
    assert record["subprotocols"] == ["chat.v2"]


def test_backend_sees_x_forwarded_for_and_proto(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app/room?id=7", host="chat.example.com")
    c.send(encode_frame(1, "hi"))
    assert c.read_message()[1] == b"hi"
    headers = record["headers"][0]
    assert headers.get_all("X-Forwarded-For") == ["127.0.0.1"]
    assert headers.get_all("X-Forwarded-Proto") == ["http"]
    assert headers["Host"] == "chat.example.com"
    assert record["paths"] == ["/app/room?id=7"]


def test_incoming_x_forwarded_for_gets_the_client_ip_appended(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app", headers={"X-Forwarded-For": "203.0.113.9",
                               "X-Forwarded-Proto": "https"})
    c.send(encode_frame(1, "hi"))
    c.read_message()
    headers = record["headers"][0]
    hops = [h.strip() for v in headers.get_all("X-Forwarded-For") for h in v.split(",")]
    assert hops[-1] == "127.0.0.1", hops
    # The gateway speaks plain HTTP to the client: it says so, whatever the client claimed.
    assert headers.get_all("X-Forwarded-Proto") == ["http"]


def test_hop_by_hop_headers_are_not_forwarded(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port]))
    c = RawClient(gw.port)
    c.upgrade("/app", headers={"Connection": "keep-alive, Upgrade, X-Secret",
                               "X-Secret": "drop me", "Keep-Alive": "timeout=5",
                               "X-Kept": "yes"})
    c.send(encode_frame(1, "hi"))
    c.read_message()
    headers = record["headers"][0]
    assert "X-Secret" not in headers and "Keep-Alive" not in headers
    assert headers["X-Kept"] == "yes"
