"""TLS on wsgate's listeners and toward its backends: wss:// echo of every message size and of
fragments with pings, SNI certificate choice, minimum TLS versions, client certificates (mTLS)
and the verified subject forwarded to the backend (a spoofed one never is), ALPN http/1.1, the
handshake timeout, plain HTTP on a TLS port, TLS records one byte at a time, bounded memory under
a reader that stops, `X-Forwarded-Proto: https`, the TLS metrics, backend TLS verification (502
when it fails), and a key that does not match its certificate at `--check`.

Every client and fixture used here is checked without wsgate in test_tls_fixtures.py."""
import asyncio
import json
import re
import socket
import subprocess
import time

import pytest

import wscompat
from conftest import (WSGATE, app_config, run, sanitized, tls_client_context, tls_connect,
                      wait_for)
from tls_certs import subject_parts
from tls_clients import (TLSRawClient, TrickleTLSSocket, client_hello, handshake_refused,
                         s_client_alpn, upgrade_request, wait_end)
from wsproto import BINARY, CONTINUATION, PING, PONG, TEXT, RawClient, encode_frame

MIB = 1 << 20
SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]
CHAT = "chat.example.com"  # SNI name of the first certificate (ECDSA)
ROOM = "room.example.org"  # matches the second one, *.example.org (RSA)
SUBJECT_HEADER = "X-Client-Cert-Subject"


def secure_config(certs, endpoints, tls_extra="", route_extra="", certificates=None,
                  workers=2):
    """A one-listener (`secure`, TLS) config: route `app` (every path) to cluster `app` on
    loopback `endpoints`. `certificates` defaults to chat.example.com then *.example.org;
    `tls_extra` lines go in the listener's `tls` block (6 spaces in), `route_extra` lines in
    the route (8 spaces in). Certificate paths are absolute."""
    if certificates is None:
        certificates = [(certs.chat, [CHAT]), (certs.wild, ["*.example.org"])]
    entries = "".join(
        f'        - {{ cert: "{c.cert}", key: "{key or c.key}", server_names: '
        f'{json.dumps(names)} }}\n'
        for c, names, key in ((e + (None,))[:3] for e in certificates))
    eps = ", ".join(f'"127.0.0.1:{p}"' for p in endpoints)
    return f"""
workers: {workers}
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: secure
    address: 127.0.0.1:0
    tls:
      certificates:
{entries}      handshake_timeout: 10s
{tls_extra}    routes:
      - name: app
        match: {{ path_prefix: / }}
        cluster: app
        require_tls: true
{route_extra}clusters:
  - name: app
    endpoints: [{eps}]
    connect_timeout: 1s
    response_timeout: 3s
"""


def start_secure(start_gateway, certs, endpoints, **kwargs):
    return start_gateway(secure_config(certs, endpoints, **kwargs), listeners=("secure",))


def client_context(certs, **kwargs):
    return tls_client_context(ca=certs.root.cert, **kwargs)


def wss(gw, certs, path="/app", server_hostname=CHAT, context=None, **kwargs):
    """A python3-websockets client over wss:// to the gateway, trusting the test root and
    checking `server_hostname` (also its SNI name)."""
    kwargs.setdefault("max_size", None)
    kwargs.setdefault("compression", None)
    return wscompat.connect(f"wss://127.0.0.1:{gw.port}{path}",
                            ssl=context or client_context(certs),
                            server_hostname=server_hostname, open_timeout=5, close_timeout=5,
                            **kwargs)


def raw_client(gw, certs, server_hostname=CHAT, **kwargs):
    return TLSRawClient(gw.port, client_context(certs, **kwargs), server_hostname)


def echo_once(client, text="hi"):
    client.upgrade("/app")
    client.send(encode_frame(TEXT, text))
    assert client.read_message()[:2] == (TEXT, text.encode())


def failures(gw, reason):
    return gw.metric("wsgate_tls_handshake_failures_total", listener="secure", reason=reason)


def payloads(size):
    text = ("é" * (size // 2)) + ("x" * (size % 2))  # `size` bytes of UTF-8
    data = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    return text, data


def test_wss_echo_of_text_and_binary_from_0_bytes_to_16_mib_with_pings(start_gateway,
                                                                       backends, tls_certs):
    """Over wss:// (TLS 1.3, the chain verified against the test root for chat.example.com),
    text and binary messages of 0 B to 16 MiB come back unchanged, and a ping after each is
    answered; the backend received exactly what was sent, and each message is counted once
    each way."""
    port, record = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port])

    async def client():
        async with wss(gw, tls_certs) as ws:
            for size in SIZES:
                for message in payloads(size):
                    await ws.send(message)
                    got = await asyncio.wait_for(ws.recv(), 30)
                    assert got == message, f"a message of {size} bytes came back changed"
                pong = await ws.ping(f"after {size}".encode())
                await asyncio.wait_for(pong, 5)
    run(client(), timeout=150)
    n = 2 * len(SIZES)
    expected = [m for size in SIZES for m in payloads(size)]
    assert len(record["messages"]) == n
    assert all(a == b for a, b in zip(record["messages"], expected))
    for direction in ("client_to_upstream", "upstream_to_client"):
        assert gw.wait_metric("wsgate_messages_total", n, route="app",
                              direction=direction) == n


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_fragmented_message_with_pings_between_fragments_over_tls(start_gateway, backends,
                                                                  tls_certs, opcode):
    """Raw frames over TLS: a message in four fragments (one of 70,000 bytes, one empty) with a
    ping between fragments is relayed whole to the backend and echoed, and both pings are
    answered with their payloads."""
    port, record = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port])
    c = raw_client(gw, tls_certs)
    c.upgrade("/app")
    big = b"B" * 70000
    c.send(encode_frame(opcode, "Hello, ", fin=False))
    c.send(encode_frame(PING, "ping-1"))
    c.send(encode_frame(CONTINUATION, big, fin=False))
    c.send(encode_frame(PING, "ping-2"))
    c.send(encode_frame(CONTINUATION, b"", fin=False))
    c.send(encode_frame(CONTINUATION, " world", fin=True))
    whole = b"Hello, " + big + b" world"
    got_opcode, message, controls = c.read_message()
    while len(controls) < 2:
        controls.append(c.read_frame()[2:4])
    assert (got_opcode, message) == (opcode, whole)
    assert sorted(controls) == [(PONG, b"ping-1"), (PONG, b"ping-2")]
    assert record["messages"] == [whole.decode() if opcode == TEXT else whole]
    assert gw.wait_metric("wsgate_frames_total", 6, route="app",
                          direction="client_to_upstream") == 6
    c.close()


def test_each_host_name_gets_its_own_certificate_and_no_sni_gets_the_first(start_gateway,
                                                                           backends,
                                                                           tls_certs):
    """SNI chat.example.com gets the chat certificate, room.example.org the *.example.org one
    (each verified for that name against the root, so the intermediate was sent too); a client
    sending no SNI gets the first certificate in the list. Each session echoes."""
    port, _ = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port])
    seen = {}
    for name in (CHAT, ROOM, None):
        c = raw_client(gw, tls_certs, server_hostname=name, check_hostname=name is not None)
        cert = c.peer_cert()
        seen[name] = (sorted(v for k, v in cert["subjectAltName"]),
                      dict(rdn[0] for rdn in cert["subject"])["commonName"])
        echo_once(c, f"via {name}")
        c.close()
    assert seen == {CHAT: (["chat.example.com"], "chat.example.com"),
                    ROOM: (["*.example.org"], "*.example.org"),
                    None: (["chat.example.com"], "chat.example.com")}


@pytest.mark.parametrize("min_version,refused,accepted", [("1.2", "1.1", "1.2"),
                                                          ("1.3", "1.2", "1.3")])
def test_clients_below_min_version_are_refused(start_gateway, backends, tls_certs, min_version,
                                               refused, accepted):
    """With `min_version` 1.2 a TLS 1.1-only client (TLS 1.1 is possible here: OpenSSL 3 at
    security level 0; test_tls_fixtures shows it handshaking), and with 1.3 a TLS 1.2-only
    client, is refused in the handshake and counted as `protocol_version`; a client pinned to
    the minimum itself is served and counted under its version."""
    port, record = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port],
                      tls_extra=f'      min_version: "{min_version}"\n')
    ctx = client_context(tls_certs, min_version=refused, max_version=refused)
    why = handshake_refused(gw.port, ctx, CHAT)
    print(f"TLS {refused} client: {why}")
    assert why.startswith("handshake:"), why
    assert gw.wait_metric("wsgate_tls_handshake_failures_total", 1, listener="secure",
                          reason="protocol_version") == 1
    assert record["connections"] == 0
    c = raw_client(gw, tls_certs, min_version=accepted, max_version=accepted)
    assert c.tls_version() == f"TLSv{accepted}"
    echo_once(c)
    c.close()
    assert gw.wait_metric("wsgate_tls_handshakes_total", 1, listener="secure",
                          version=f"TLSv{accepted}") == 1
    assert gw.metric("wsgate_tls_handshakes_total", listener="secure",
                     version=f"TLSv{refused}") == 0


MTLS = """      client_ca: "{ca}"
      require_client_cert: {required}
"""
SUBJECT_ROUTE = f"        client_cert_header: {SUBJECT_HEADER}\n"


def start_mtls(start_gateway, certs, port, required):
    return start_secure(start_gateway, certs, [port], route_extra=SUBJECT_ROUTE,
                        tls_extra=MTLS.format(ca=certs.root.cert,
                                              required=str(required).lower()))


def test_mtls_refuses_a_client_without_a_certificate(start_gateway, backends, tls_certs):
    """With `require_client_cert: true`, a client presenting no certificate is refused (in TLS
    1.3 the refusal comes after the client's side of the handshake: no upgrade is ever
    answered), counted as `no_client_cert` (or `bad_client_cert`), and never reaches the
    backend."""
    port, record = backends.echo()
    gw = start_mtls(start_gateway, tls_certs, port, required=True)
    why = handshake_refused(gw.port, client_context(tls_certs), CHAT)
    print(f"no client certificate: {why}")
    assert wait_for(lambda: failures(gw, "no_client_cert") + failures(gw, "bad_client_cert"))
    assert failures(gw, "no_client_cert") + failures(gw, "bad_client_cert") == 1
    assert gw.metric("wsgate_tls_handshakes_total", listener="secure") == 0
    assert record["connections"] == 0


def test_mtls_refuses_a_certificate_from_another_ca(start_gateway, backends, tls_certs):
    """A client certificate issued by an unrelated CA is refused, counted as
    `bad_client_cert`, and never reaches the backend."""
    port, record = backends.echo()
    gw = start_mtls(start_gateway, tls_certs, port, required=True)
    why = handshake_refused(gw.port, client_context(tls_certs, cert=tls_certs.mallory), CHAT)
    print(f"mallory's certificate: {why}")
    assert gw.wait_metric("wsgate_tls_handshake_failures_total", 1, listener="secure",
                          reason="bad_client_cert") == 1
    assert record["connections"] == 0


def test_mtls_good_certificate_echoes_and_its_subject_reaches_the_backend(start_gateway,
                                                                          backends, tls_certs):
    """alice's certificate (from the configured client CA) is accepted: the echo works and the
    backend gets `X-Client-Cert-Subject` once, with her verified subject (CN, OU, O), even though
    the client sent its own value of that header."""
    port, record = backends.echo()
    gw = start_mtls(start_gateway, tls_certs, port, required=True)
    c = raw_client(gw, tls_certs, cert=tls_certs.alice)
    c.upgrade("/app", headers={SUBJECT_HEADER: "CN=admin,O=wsgate tests"})
    c.send(encode_frame(TEXT, "it is me"))
    assert c.read_message()[:2] == (TEXT, b"it is me")
    c.close()
    values = record["headers"][0].get_all(SUBJECT_HEADER)
    assert len(values) == 1, values
    assert subject_parts(values[0]) == tls_certs.alice.parts, values[0]
    assert gw.wait_metric("wsgate_tls_handshakes_total", 1, listener="secure") == 1


def test_spoofed_client_subject_header_never_reaches_the_backend(start_gateway, backends,
                                                                 tls_certs):
    """On a TLS listener that asks for, but does not require, a client certificate, a client
    without one that sends its own `X-Client-Cert-Subject` is served, and the backend gets no
    such header at all."""
    port, record = backends.echo()
    gw = start_mtls(start_gateway, tls_certs, port, required=False)
    c = raw_client(gw, tls_certs)
    c.upgrade("/app", headers={SUBJECT_HEADER: "CN=admin,O=wsgate tests",
                               SUBJECT_HEADER.lower(): "CN=root"})
    c.send(encode_frame(TEXT, "spoof"))
    assert c.read_message()[:2] == (TEXT, b"spoof")
    c.close()
    assert record["headers"][0].get_all(SUBJECT_HEADER) == []


def test_alpn_offer_of_http_1_1_and_h2_gets_http_1_1(start_gateway, backends, tls_certs):
    """`openssl s_client -alpn http/1.1,h2` (and a Python client preferring h2) get ALPN
    `http/1.1`, never h2: WebSocket upgrades are HTTP/1.1."""
    port, _ = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port])
    chosen, out = s_client_alpn(gw.port, servername=CHAT, ca=tls_certs.root.cert)
    assert chosen == "http/1.1", out
    c = raw_client(gw, tls_certs, alpn=["h2", "http/1.1"])
    assert c.sock.selected_alpn_protocol() == "http/1.1"
    echo_once(c)
    c.close()


@pytest.mark.parametrize("sends", ["nothing", "half_a_client_hello"])
def test_handshake_that_never_finishes_is_cut_at_handshake_timeout(start_gateway, backends,
                                                                   tls_certs, sends):
    """With `handshake_timeout: 1s`, a client that opens TCP and sends nothing, or half a
    ClientHello, is disconnected after about 1 s (not before 0.9 s, within 3 s), counted as
    `timeout`; the listener keeps serving."""
    port, record = backends.echo()
    gw = start_gateway(secure_config(tls_certs, [port]).replace("handshake_timeout: 10s",
                                                                "handshake_timeout: 1s"),
                       listeners=("secure",))
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    if sends != "nothing":
        hello = client_hello(client_context(tls_certs), CHAT)
        sock.sendall(hello[:len(hello) // 2])
    end, received, took = wait_end(sock, 5)
    sock.close()
    print(f"{sends}: {end} after {took:.2f} s, {len(received)} bytes")
    assert end in ("fin", "reset"), f"still open after {took:.1f} s"
    assert 0.9 <= took < 3, f"cut after {took:.2f} s, not at the 1 s handshake_timeout"
    assert gw.wait_metric("wsgate_tls_handshake_failures_total", 1, listener="secure",
                          reason="timeout") == 1
    c = raw_client(gw, tls_certs)
    echo_once(c)
    c.close()


def test_plain_http_upgrade_on_the_tls_listener_fails_cleanly(start_gateway, backends,
                                                              tls_certs):
    """A plain-text WebSocket upgrade sent to the TLS listener gets no HTTP answer and no
    tunnel: the connection is closed within 5 s (a FIN, or a reset if the gateway closes with
    the request unread), counted as `not_tls`, the backend never sees it, and the gateway keeps
    serving TLS clients."""
    port, record = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port])
    plain = RawClient(gw.port)
    plain.send(upgrade_request("/app"))
    end, received, took = wait_end(plain.sock, 5)
    plain.close()
    print(f"plain HTTP: {end} after {took:.2f} s, received {received[:60]!r}")
    assert end in ("fin", "reset"), "the connection was left open"
    assert b"HTTP/1.1 101" not in received
    assert gw.wait_metric("wsgate_tls_handshake_failures_total", 1, listener="secure",
                          reason="not_tls") == 1
    assert record["connections"] == 0
    c = raw_client(gw, tls_certs)
    echo_once(c)
    c.close()
    assert record["connections"] == 1


def test_tls_records_sent_one_byte_at_a_time_still_get_their_echo(start_gateway, backends,
                                                                  tls_certs):
    """A client that writes every byte of its TLS data (handshake, upgrade request, a
    WebSocket message) in a send of its own, about 1 ms apart, completes the handshake and
    gets its echo."""
    port, record = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port])
    sock = TrickleTLSSocket(gw.port, client_context(tls_certs), CHAT)
    c = TLSRawClient(sock=sock)
    text = "one byte at a time " * 10
    echo_once(c, text)
    assert sock.sends == sock.sent > 500
    print(f"{sock.sent} bytes of TLS data, each sent alone")
    c.close()
    assert record["messages"] == [text]


def test_client_that_stops_reading_over_tls_keeps_gateway_memory_bounded(start_gateway,
                                                                         backends, tls_certs):
    """test_operations' slow-reader test over TLS: the backend streams up to 64 MiB (1 MiB
    messages) to a TLS client that stops reading after the upgrade; the backend is slowed down
    (its sends block), the gateway's RSS grows by less than 8 MiB, and the client can then read
    whole messages, in order."""
    progress = {"sent": 0, "blocked": False}

    async def flood(ws, record):
        chunk = b"f" * MIB
        try:
            for _ in range(64):
                await asyncio.wait_for(ws.send(chunk), 4)
                progress["sent"] += 1
        except asyncio.TimeoutError:
            progress["blocked"] = True  # backpressure reached the backend
        await ws.wait_closed()
    port, _ = backends.websocket(flood, write_limit=MIB)
    gw = start_secure(start_gateway, tls_certs, [port], workers=1)
    before = gw.rss_kib()
    c = raw_client(gw, tls_certs)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.upgrade("/app")  # ... and then does not read
    peak = before
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and not progress["blocked"] and progress["sent"] < 64:
        time.sleep(0.25)
        peak = max(peak, gw.rss_kib())
    for _ in range(4):  # a little longer, to see growth that lags the flood
        time.sleep(0.25)
        peak = max(peak, gw.rss_kib())
    grown = peak - before
    print(f"flood over TLS: {progress}, rss before {before} KiB, peak {peak} KiB")
    assert progress["sent"] < 64, "the backend was never slowed down: nothing pushed back"
    # A sanitizer build keeps freed blocks in quarantine: what it frees still counts in its RSS.
    bound = 30 * 1024 if sanitized(WSGATE) else 8 * 1024
    assert grown < bound, f"gateway RSS grew by {grown} KiB while the TLS client did not " \
                             f"read ({progress['sent']} MiB sent by the backend)"
    assert gw.metric("wsgate_backpressure_pauses_total", route="app",
                     direction="upstream_to_client") >= 1
    for _ in range(3):
        opcode, message, _ = c.read_message(timeout=10)
        assert opcode == BINARY and message == b"f" * MIB
    c.close()


def test_backend_is_told_the_client_came_over_https(start_gateway, backends, tls_certs):
    """The upgrade forwarded from a TLS listener carries `X-Forwarded-Proto: https` (once, even
    when the client claimed `http`) and the client's address in `X-Forwarded-For`."""
    port, record = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port])
    c = raw_client(gw, tls_certs)
    c.upgrade("/app", headers={"X-Forwarded-Proto": "http"})
    c.send(encode_frame(TEXT, "hi"))
    c.read_message()
    c.close()
    headers = record["headers"][0]
    assert headers.get_all("X-Forwarded-Proto") == ["https"]
    assert headers.get_all("X-Forwarded-For")[-1].split(",")[-1].strip() == "127.0.0.1"


def test_tls_handshakes_are_counted_by_listener_and_version(start_gateway, backends,
                                                            tls_certs):
    """`wsgate_tls_handshakes_total{listener="secure",version="TLSv1.3"}` counts each completed
    TLS 1.3 handshake exactly, and a TLS 1.2 client is counted under `TLSv1.2`; no failure is
    counted."""
    port, _ = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port])
    for _ in range(2):
        c = raw_client(gw, tls_certs)
        assert c.tls_version() == "TLSv1.3"
        echo_once(c)
        c.close()
    c = raw_client(gw, tls_certs, max_version="1.2")
    echo_once(c)
    c.close()
    assert gw.wait_metric("wsgate_tls_handshakes_total", 2, listener="secure",
                          version="TLSv1.3") == 2
    assert gw.wait_metric("wsgate_tls_handshakes_total", 1, listener="secure",
                          version="TLSv1.2") == 1
    assert gw.metric("wsgate_tls_handshake_failures_total") == 0
    assert "wsgate_tls_handshakes_total" in gw.metrics_text()


def upgrade_over(sock):
    """Sends an upgrade for /app on an established TLS socket and reads the 101's head."""
    sock.sendall(b"GET /app HTTP/1.1\r\nHost: chat.example.com\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "connection ended before the 101"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_sessions_resume_by_ticket_whichever_worker_takes_the_connection(start_gateway, backends,
                                                                         tls_certs, version):
    """A client that kept the session of its first connection resumes it on the next ones (no
    full handshake), with `workers: 2`: the ticket keys are the listener's, not a worker's, so a
    ticket sealed by one worker opens on the other (SO_REUSEPORT spreads the connections)."""
    port, _ = backends.echo()
    gw = start_secure(start_gateway, tls_certs, [port], workers=2)
    context = client_context(tls_certs, max_version=version)
    first = tls_connect(gw.port, context, CHAT)
    upgrade_over(first)  # a TLS 1.3 ticket comes after the handshake: read past it
    session = first.session
    assert session is not None and session.has_ticket
    first.close()
    reused = 0
    for _ in range(12):
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        tls = context.wrap_socket(sock, server_hostname=CHAT, session=session)
        upgrade_over(tls)
        reused += tls.session_reused
        tls.close()
    assert reused == 12


def backend_tls(ca, server_name="backend.internal"):
    return f'    tls: {{ ca: "{ca}", server_name: {server_name}, verify: true }}\n'


def test_backend_tls_with_the_right_ca_and_name_echoes(start_gateway, backends, tls_certs):
    """A cluster with `tls` (the test root as `ca`, `server_name: backend.internal`) reaches the
    wss backend: the gateway sent SNI backend.internal, the echo works, the client (on a plain
    listener) is reported as `http`, and no upstream TLS failure is counted."""
    port, record = backends.wss_echo(tls_certs)
    gw = start_gateway(app_config([port], cluster_extra=backend_tls(tls_certs.root.cert)))

    async def client():
        async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app", open_timeout=5,
                                    close_timeout=5, max_size=None) as ws:
            for message in ("over tls", b"\x00" * 70000):
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), 5) == message
    run(client(), timeout=20)
    assert record["sni"] == ["backend.internal"]
    assert record["messages"] == ["over tls", b"\x00" * 70000]
    assert record["headers"][0].get_all("X-Forwarded-Proto") == ["http"]
    assert gw.metric("wsgate_upstream_tls_failures_total") == 0


@pytest.mark.parametrize("wrong", ["server_name", "ca"])
def test_backend_tls_verification_failure_is_a_502(start_gateway, backends, tls_certs, wrong):
    """A backend whose certificate does not verify, for the configured `server_name`
    (other.internal) or against the configured `ca` (an unrelated root), gets the client a 502
    and counts `wsgate_upstream_tls_failures_total{cluster="app",reason="verify_failed"}`; no
    upgrade reaches the backend."""
    port, record = backends.wss_echo(tls_certs)
    tls = (backend_tls(tls_certs.root.cert, "other.internal") if wrong == "server_name"
           else backend_tls(tls_certs.other_root.cert))
    gw = start_gateway(app_config([port], cluster_extra=tls))
    c = RawClient(gw.port)
    c.request("/app")
    status, _, body = c.read_response()
    assert status == 502, body
    c.close()
    assert gw.wait_metric("wsgate_upstream_tls_failures_total", 1, cluster="app",
                          reason="verify_failed") == 1
    assert record["connections"] == 0


def test_backend_tls_to_a_plain_backend_is_a_502(start_gateway, backends, tls_certs):
    """A cluster with `tls` whose backend speaks plain HTTP fails the TLS handshake: 502 to the
    client, counted once: as `handshake_failed` when the backend answers the ClientHello with
    HTTP (python3-websockets 10.4, Debian 12), as `closed` when it drops the connection
    (15.0, Debian 13)."""
    port, record = backends.echo()
    gw = start_gateway(app_config([port], cluster_extra=backend_tls(tls_certs.root.cert)))
    c = RawClient(gw.port)
    c.request("/app")
    status, _, body = c.read_response()
    assert status == 502, body
    c.close()
    assert gw.wait_metric("wsgate_upstream_tls_failures_total", 1, cluster="app") == 1
    counted = {reason: gw.metric("wsgate_upstream_tls_failures_total", cluster="app",
                                 reason=reason)
               for reason in ("handshake_failed", "closed", "verify_failed", "timeout")}
    assert counted["handshake_failed"] + counted["closed"] == 1, counted


def test_check_names_the_line_of_a_key_that_does_not_match_its_certificate(tmp_path,
                                                                           tls_certs):
    """`wsgate --check` accepts the TLS config, and with the second certificate's key swapped
    for a key of its own fails with exit 1, an error at that certificate entry's line of the
    config file naming the key file; `wsgate` itself does not start on it."""
    c = tls_certs
    good = tmp_path / "good.yaml"
    good.write_text(secure_config(c, [1]))
    result = subprocess.run([WSGATE, "--config", str(good), "--check"], capture_output=True,
                            text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    bad = tmp_path / "bad.yaml"
    text = secure_config(c, [1], certificates=[(c.chat, [CHAT]),
                                               (c.wild, ["*.example.org"], c.stray_key)])
    bad.write_text(text)
    line = 1 + text.splitlines().index(next(l for l in text.splitlines() if c.stray_key in l))
    for args in (["--check"], []):
        result = subprocess.run([WSGATE, "--config", str(bad), *args], capture_output=True,
                                text=True, timeout=10, stdin=subprocess.DEVNULL)
        assert result.returncode == 1, result.stderr
        errors = re.findall(rf"^{re.escape(str(bad))}:(\d+):\d+: (.*)$", result.stderr, re.M)
        assert any(int(n) == line and "stray.key" in message for n, message in errors), \
            f"no error at line {line} naming stray.key:\n{result.stderr}"
