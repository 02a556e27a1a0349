"""The TLS test kit checked without wsgate, so that a failure in test_tls.py means the gateway:
the certificate factory (chains that `openssl verify` accepts, the SANs and key types asked
for, keys that match, the SPKI hash), and every client and fixture test_tls.py uses, run against
a python3-websockets `wss` server (Backends.wss_echo), a plain blocking Python TLS server or
`openssl s_server`: SNI picking, TLS 1.1/1.2/1.3-only clients, client certificates, raw frames
and one-byte TLS records, ALPN through `openssl s_client`, the ClientHello a stalled client sends
part of."""
import asyncio
import base64
import hashlib
import re
import socket
import ssl
import subprocess
import threading

import pytest

import wscompat
from conftest import (peer_subject_parts, run, tls_client_context, tls_server_context,
                      wait_for)
from tls_certs import OPENSSL
from tls_clients import (TLSRawClient, TrickleTLSSocket, client_hello, handshake_refused,
                         s_client_alpn)
from wsproto import BINARY, CONTINUATION, PING, PONG, TEXT, encode_frame

SERVERS = ("chat", "wild", "loopback", "loopback2", "backend")


def openssl(certs, *args, check=True):
    result = subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=30,
                            env=certs.factory.env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def der_pubkey_from_key(certs, key):
    return subprocess.run([OPENSSL, "pkey", "-in", key, "-pubout", "-outform", "DER"],
                          capture_output=True, timeout=30, check=True).stdout


def sans(peercert):
    return sorted(f"{kind}:{value}" for kind, value in peercert.get("subjectAltName", ()))


def test_factory_chains_verify_to_the_root_with_the_names_and_keys_asked_for(tls_certs):
    """Each server certificate file holds leaf + intermediate, and `openssl verify` accepts it
    for TLS servers against the root alone; the client certificates verify for TLS clients
    against their own root and not the other; the SANs, key types and subjects are the ones
    asked for, each key matches its certificate, and the stray key matches none."""
    c = tls_certs
    root = c.root.cert
    for name in SERVERS:
        cert = getattr(c, name)
        with open(cert.cert) as f:
            assert f.read().count("BEGIN CERTIFICATE") == 2, f"{name}: leaf + intermediate"
        # The intermediate taken from the certificate file itself: the chain is complete.
        out = openssl(c, "verify", "-purpose", "sslserver", "-CAfile", root,
                      "-untrusted", cert.cert, cert.leaf).stdout
        assert out.strip() == f"{cert.leaf}: OK"
        # Without the intermediate, the leaf does not verify: it is not signed by the root.
        assert openssl(c, "verify", "-CAfile", root, cert.leaf, check=False).returncode != 0
        san = openssl(c, "x509", "-in", cert.leaf, "-noout", "-ext", "subjectAltName").stdout
        found = re.findall(r"(DNS:[^,\s]+|IP Address:[0-9A-F:.]+)", san)
        assert [s.replace("IP Address:", "IP:") for s in found] == \
            [s.replace("IP:::1", "IP:0:0:0:0:0:0:0:1") for s in cert.sans], san
    for name, expect in (("chat", "ASN1 OID: prime256v1"), ("wild", "Public-Key: (2048 bit)"),
                         ("backend", "ASN1 OID: prime256v1")):
        text = openssl(c, "x509", "-in", getattr(c, name).leaf, "-noout", "-text").stdout
        assert expect in text, f"{name}: {expect} missing"
    assert "rsaEncryption" in openssl(c, "x509", "-in", c.wild.leaf, "-noout", "-text").stdout
    assert c.chat.parts == {"CN=chat.example.com", "O=wsgate tests"}
    assert c.alice.parts == {"CN=alice", "OU=clients", "O=wsgate tests"}
    assert openssl(c, "verify", "-purpose", "sslclient", "-CAfile", root,
                   c.alice.cert).returncode == 0
    assert openssl(c, "verify", "-CAfile", root, c.mallory.cert, check=False).returncode != 0
    assert openssl(c, "verify", "-purpose", "sslclient", "-CAfile", c.other_root.cert,
                   c.mallory.cert).returncode == 0
    # Server certificates are not client certificates, and the other way round.
    assert openssl(c, "verify", "-purpose", "sslclient", "-CAfile", root, "-untrusted",
                   c.chat.cert, c.chat.leaf, check=False).returncode != 0
    pubkeys = {}
    for name in SERVERS + ("alice", "mallory"):
        cert = getattr(c, name)
        from_cert = openssl(c, "x509", "-in", cert.leaf, "-noout", "-pubkey").stdout
        from_key = openssl(c, "pkey", "-in", cert.key, "-pubout").stdout
        assert from_cert == from_key, f"{name}: the key does not match the certificate"
        pubkeys[name] = from_cert
    stray = openssl(c, "pkey", "-in", c.stray_key, "-pubout").stdout
    assert stray not in pubkeys.values()


def test_spki_hash_is_the_sha256_of_the_public_key_and_tells_keys_apart(tls_certs):
    """The SPKI hash made from the certificate equals SHA-256 of the DER public key taken from
    the private key instead; two certificates for the same names with different keys get
    different hashes."""
    c = tls_certs
    for cert in (c.loopback, c.loopback2, c.wild):
        expect = base64.b64encode(hashlib.sha256(der_pubkey_from_key(c, cert.key)).digest())
        assert c.spki(cert) == expect.decode()
        assert len(base64.b64decode(c.spki(cert))) == 32
    assert c.spki(c.loopback) != c.spki(c.loopback2)


def test_wss_backend_and_client_contexts_verify_names_and_the_ca(backends, tls_certs):
    """Backends.wss_echo with the backend certificate echoes text and binary to a client that
    trusts the test root and checks `backend.internal`; it records the SNI name, the TLS
    version and no client certificate. The same client checking another name, or trusting
    another root, is refused by its own verification."""
    c = tls_certs
    port, record = backends.wss_echo(c)

    async def client(name, ca):
        async with wscompat.connect(f"wss://127.0.0.1:{port}/x", ssl=tls_client_context(ca=ca),
                                    server_hostname=name, open_timeout=5,
                                    close_timeout=5) as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "hello"
            await ws.send(b"\x00\xff")
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\xff"
    run(client("backend.internal", c.root.cert), timeout=20)
    assert record["messages"] == ["hello", b"\x00\xff"]
    assert record["sni"] == ["backend.internal"]
    assert record["tls_versions"] == ["TLSv1.3"] and record["client_subjects"] == [None]
    for name, ca in (("other.internal", c.root.cert), ("backend.internal", c.other_root.cert)):
        with pytest.raises(ssl.SSLCertVerificationError):
            run(client(name, ca), timeout=20)
    assert record["connections"] == 1


def test_sni_picks_certificates_on_openssl_s_server(tls_certs):
    """Against `openssl s_server` holding the chat certificate (default) and the wildcard one
    (for SNI room.example.org), the client helpers see, by their SANs, the chat certificate for
    SNI chat.example.com and for no SNI, the wildcard one for room.example.org, each verified:
    the peer-certificate checks in test_tls.py read what was served."""
    c = tls_certs
    proc = subprocess.Popen([OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-cert", c.chat.cert,
                             "-key", c.chat.key, "-servername", "room.example.org", "-cert2",
                             c.wild.cert, "-key2", c.wild.key, "-www", "-naccept", "3"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        port = wait_for(lambda: re.search(r"^ACCEPT 127\.0\.0\.1:(\d+)$", "".join(lines),
                                          re.M), 10)
        assert port, "".join(lines)
        port = int(port.group(1))
        seen = {}
        for name in ("chat.example.com", "room.example.org", None):
            ctx = tls_client_context(ca=c.root.cert, check_hostname=name is not None)
            # s_server sends the first certificate of a -cert file only, and -cert2 has no
            # chain option: the client holds the intermediate (under the root) itself.
            ctx.load_verify_locations(cafile=c.intermediate.cert)
            client = TLSRawClient(port, ctx, server_hostname=name)
            seen[name] = sans(client.peer_cert())
            client.close()
        assert seen == {"chat.example.com": ["DNS:chat.example.com"],
                        "room.example.org": ["DNS:*.example.org"],
                        None: ["DNS:chat.example.com"]}
    finally:
        proc.kill()
        proc.wait(5)


class BlockingTLSServer:
    """A plain blocking Python TLS server on 127.0.0.1 (kernel-picked port), one thread: each
    connection's handshake outcome goes to `outcomes`, as ('ok', version, client subject parts
    or None) or ('error', message); a failed handshake's alert reaches the client (ssl writes
    it to the socket before raising, which asyncio's servers do not guarantee)."""

    def __init__(self, context):
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.outcomes = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            conn.settimeout(5)
            try:
                tls = self.context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.outcomes.append(("error", str(e)))
                conn.close()
                continue
            peer = tls.getpeercert()
            self.outcomes.append(("ok", tls.version(), peer_subject_parts(peer) if peer else None))
            try:
                tls.recv(4096)  # the client's first bytes, then close with no answer
            except (ssl.SSLError, OSError):
                pass
            tls.close()

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def blocking_tls_server():
    started = []

    def start(context):
        server = BlockingTLSServer(context)
        started.append(server)
        return server
    yield start
    for server in started:
        server.close()


@pytest.mark.parametrize("server_min,client,accepted", [
    ("1.1", "1.1", "TLSv1.1"), ("1.1", "1.2", "TLSv1.2"), ("1.2", "1.1", None),
    ("1.3", "1.2", None), ("1.3", "1.3", "TLSv1.3")])
def test_version_pinned_clients(backends, blocking_tls_server, tls_certs, server_min, client,
                                accepted):
    """A client pinned to one TLS version (1.1 at OpenSSL security level 0, as this machine's
    OpenSSL allows) gets that version, and a WebSocket echo, from a python3-websockets server
    that allows it; a plain Python TLS server whose minimum is higher refuses it in the
    handshake with a protocol_version alert."""
    c = tls_certs
    ctx = tls_client_context(ca=c.root.cert, min_version=client, max_version=client)
    if accepted:
        port, record = backends.wss_echo(c, context=tls_server_context(c.backend,
                                                                       min_version=server_min))
        raw = TLSRawClient(port, ctx, "backend.internal")
        assert raw.tls_version() == accepted
        raw.upgrade("/")
        raw.send(encode_frame(TEXT, "v"))
        assert raw.read_message()[:2] == (TEXT, b"v")
        raw.close()
        assert record["tls_versions"] == [accepted]
    else:
        server = blocking_tls_server(tls_server_context(c.backend, min_version=server_min))
        why = handshake_refused(server.port, ctx, "backend.internal")
        assert why.startswith("handshake:") and "PROTOCOL_VERSION" in why.upper(), why
        assert wait_for(lambda: server.outcomes)
        assert server.outcomes[0][0] == "error"
        assert "UNSUPPORTED_PROTOCOL" in server.outcomes[0][1].upper(), server.outcomes


def test_client_certificates_where_they_are_required(backends, blocking_tls_server, tls_certs):
    """A python3-websockets server requiring a client certificate from the test root takes
    alice's (and sees her subject) for an echo. A plain Python TLS server with the same demand
    refuses mallory's (another root) and none at all, after the client's side of the TLS 1.3
    handshake: handshake_refused reports those refusals (alerts), never an answer."""
    c = tls_certs
    ctx = tls_server_context(c.backend, client_ca=c.root.cert, require_client_cert=True)
    port, record = backends.wss_echo(c, context=ctx)
    client = TLSRawClient(port, tls_client_context(ca=c.root.cert, cert=c.alice),
                          "backend.internal")
    client.upgrade("/")
    client.send(encode_frame(TEXT, "me"))
    assert client.read_message()[:2] == (TEXT, b"me")
    client.close()
    assert wait_for(lambda: record["client_subjects"] == [c.alice.parts])

    server = blocking_tls_server(tls_server_context(c.backend, client_ca=c.root.cert,
                                                    require_client_cert=True))
    for cert, alert in ((c.mallory, "UNKNOWN_CA"), (None, "CERTIFICATE_REQUIRED")):
        why = handshake_refused(server.port, tls_client_context(ca=c.root.cert, cert=cert),
                                "backend.internal")
        assert why.startswith("after handshake:") and alert in why.upper(), why
    assert wait_for(lambda: len(server.outcomes) == 2)
    assert [o[0] for o in server.outcomes] == ["error", "error"], server.outcomes
    # ... and the helper does not take a server that accepts and answers nothing for one
    # that refused: it says "eof", not an alert.
    why = handshake_refused(server.port, tls_client_context(ca=c.root.cert, cert=c.alice),
                            "backend.internal")
    assert why == "eof"
    assert wait_for(lambda: len(server.outcomes) == 3)
    assert server.outcomes[2] == ("ok", "TLSv1.3", c.alice.parts)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_raw_frames_over_tls_fragmented_with_pings(backends, tls_certs, opcode):
    """TLSRawClient writes a fragmented message with pings between fragments over TLS; the
    python3-websockets server reassembles it, answers both pings and echoes it."""
    c = tls_certs
    port, record = backends.wss_echo(c)
    client = TLSRawClient(port, tls_client_context(ca=c.root.cert), "backend.internal")
    client.upgrade("/")
    big = b"B" * 70000
    client.send(encode_frame(opcode, "Hello, ", fin=False))
    client.send(encode_frame(PING, "ping-1"))
    client.send(encode_frame(CONTINUATION, big, fin=False))
    client.send(encode_frame(PING, "ping-2"))
    client.send(encode_frame(CONTINUATION, " world", fin=True))
    whole = b"Hello, " + big + b" world"
    got_opcode, message, controls = client.read_message()
    while len(controls) < 2:
        controls.append(client.read_frame()[2:4])
    assert (got_opcode, message) == (opcode, whole)
    assert sorted(controls) == [(PONG, b"ping-1"), (PONG, b"ping-2")]
    assert record["messages"] == [whole.decode() if opcode == TEXT else whole]
    client.close()


def test_trickle_client_sends_every_tls_byte_alone(backends, tls_certs):
    """TrickleTLSSocket completes a TLS 1.3 handshake and a WebSocket echo with each byte of
    its TLS data in a send of its own."""
    c = tls_certs
    port, record = backends.wss_echo(c)
    sock = TrickleTLSSocket(port, tls_client_context(ca=c.root.cert), "backend.internal")
    assert sock.version() == "TLSv1.3"
    client = TLSRawClient(sock=sock)
    client.upgrade("/")
    client.send(encode_frame(TEXT, "drip " * 20))
    assert client.read_message()[:2] == (TEXT, b"drip " * 20)
    assert sock.sends == sock.sent > 500, (sock.sends, sock.sent)
    client.close()
    assert record["messages"] == ["drip " * 20]


@pytest.mark.parametrize("server_alpn,expect", [(["http/1.1"], "http/1.1"),
                                                (["h2", "http/1.1"], "h2"), (None, None)])
def test_s_client_alpn_reads_what_the_server_chose(backends, tls_certs, server_alpn, expect):
    """s_client_alpn reports the protocol a python server picked from `http/1.1,h2` (h2 too,
    so a gateway choosing it would be seen), and None when the server does no ALPN."""
    c = tls_certs
    port, _ = backends.wss_echo(c, context=tls_server_context(c.backend, alpn=server_alpn))
    chosen, out = s_client_alpn(port, servername="backend.internal", ca=c.root.cert)
    assert chosen == expect, out
    assert "Verify return code: 0 (ok)" in out


def test_client_hello_is_one_whole_handshake_record(tls_certs):
    """client_hello gives a whole TLS handshake record holding a ClientHello (what a stalled
    client sends half of)."""
    hello = client_hello(tls_client_context(ca=tls_certs.root.cert), "chat.example.com")
    assert hello[0] == 0x16 and hello[1] == 0x03 and hello[5] == 0x01
    assert len(hello) == 5 + int.from_bytes(hello[3:5], "big")
    assert b"chat.example.com" in hello  # the SNI name
