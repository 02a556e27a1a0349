"""The `keepalive` filter: the gateway pings each silent leg and closes a leg that does not
answer, with 1001 to the other side; its own pongs never reach either peer, and pings and pongs
between the peers still pass end to end."""
import asyncio
import os
import signal
import socket
import subprocess
import time

from conftest import WSGATE, answer_upgrade, app_config, wait_for
from test_node_backend import NodeBackend
from wsproto import (BINARY, CLOSE, PING, PONG, TEXT, RawClient, close_payload, encode_frame,
                     parse_close, parse_frames)

FAST = "keepalive: { interval: 1s, timeout: 1s }"


def answering_backend(backends, record_frames=True):
    """A hand-made backend: completes the upgrade, answers pings with pongs of the same payload,
    echoes data frames, records every frame it gets (opcode, payload) and answers a close."""
    async def respond(reader, writer, record):
        await answer_upgrade(reader, writer)
        record.setdefault("frames", [])
        data, handled = b"", 0
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 30)
            except asyncio.TimeoutError:
                return
            if not chunk:
                return
            data += chunk
            frames = parse_frames(data)
            for _, _, opcode, payload, _ in frames[handled:]:
                record["frames"].append((opcode, payload))
                if opcode == PING:
                    writer.write(encode_frame(PONG, payload, mask=False))
                elif opcode in (TEXT, BINARY):
                    writer.write(encode_frame(opcode, payload, mask=False))
                elif opcode == CLOSE:
                    writer.write(encode_frame(CLOSE, payload[:2], mask=False))
                    await writer.drain()
                    return
            handled = len(frames)
            await writer.drain()
    return backends.raw(respond)


class AnsweringClient(RawClient):
    """A raw client that answers every ping (the gateway's included) with its pong and keeps
    what else it reads."""

    def __init__(self, port):
        super().__init__(port)
        self.pings = []
        self.pongs = []

    def pump(self, seconds):
        """Reads for `seconds`, answering pings; returns the data frames read."""
        deadline = time.monotonic() + seconds
        data = []
        while time.monotonic() < deadline:
            try:
                _, _, opcode, payload, _ = self.read_frame(max(0.05, deadline - time.monotonic()))
            except (TimeoutError, socket.timeout):
                break
            if opcode == PING:
                self.pings.append(payload)
                self.send(encode_frame(PONG, payload))
            elif opcode == PONG:
                self.pongs.append(payload)
            elif opcode == CLOSE:
                return data + [(CLOSE, payload)]
            else:
                data.append((opcode, payload))
        return data

    def until_close(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for opcode, payload in self.pump(min(0.5, deadline - time.monotonic())):
                if opcode == CLOSE:
                    return parse_close(payload)
        return None


def test_a_frozen_backend_is_found_dead_and_the_client_gets_1001(start_gateway):
    backend = NodeBackend()
    try:
        gw = start_gateway(app_config([backend.port], filters=[FAST]))
        c = AnsweringClient(gw.port)
        c.upgrade("/app")
        c.send(encode_frame(TEXT, b"hello"))
        assert (TEXT, b"hello") in c.pump(0.5)
        os.kill(backend.proc.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        code = c.until_close(timeout=6)
        waited = time.monotonic() - frozen
        assert code is not None, "the client got no close"
        assert code[0] == 1001 and "upstream" in code[1], code
        # interval + timeout, + 1 s of slack
        assert waited <= 3.0, f"found dead after {waited:.1f}s"
        assert gw.wait_metric("wsgate_keepalive_timeouts_total", 1, route="app",
                              side="upstream") == 1
        assert gw.metric("wsgate_keepalive_timeouts_total", route="app", side="client") == 0
    finally:
        os.kill(backend.proc.pid, signal.SIGCONT)
        backend.stop()
        backend.stderr.close()


def test_a_client_that_never_reads_nor_answers_is_closed_and_the_backend_gets_1001(
        start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port], filters=[FAST]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    start = time.monotonic()
    assert wait_for(lambda: record["close_codes"], timeout=6), "the backend got no close"
    waited = time.monotonic() - start
    assert record["close_codes"][0][0] == 1001, record["close_codes"]
    assert "client" in record["close_codes"][0][1]
    assert waited <= 3.5, f"found dead after {waited:.1f}s"
    assert gw.wait_metric("wsgate_keepalive_timeouts_total", 1, route="app", side="client") == 1
    assert c.wait_end(timeout=3) in ("fin", "reset")


def test_a_healthy_idle_session_outlives_many_intervals_and_no_one_sees_the_gateways_pongs(
        start_gateway, backends):
    port, record = answering_backend(backends)
    gw = start_gateway(app_config(
        [port], filters=["keepalive: { interval: 300ms, timeout: 500ms }"]))
    c = AnsweringClient(gw.port)
    c.upgrade("/app")
    c.pump(3.0)
    # Pinged about every 300 ms while silent, answered each time, never closed.
    assert len(c.pings) >= 5, c.pings
    assert all(len(p) == 8 for p in c.pings)
    c.send(encode_frame(TEXT, b"still here"))
    assert (TEXT, b"still here") in c.pump(0.5)
    backend_frames = record["frames"]
    # The backend was pinged too (and answered); it never got a pong: the client's answers to
    # the gateway's pings went no further.
    assert sum(1 for op, _ in backend_frames if op == PING) >= 5
    assert not [f for f in backend_frames if f[0] == PONG], backend_frames
    # Nor did the client get the backend's answers to the gateway.
    assert c.pongs == []
    assert gw.metric("wsgate_keepalive_timeouts_total", route="app") == 0
    c.send(encode_frame(CLOSE, close_payload(1000)))
    assert c.until_close(timeout=3)[0] == 1000


def test_the_clients_own_ping_still_gets_the_backends_pong(start_gateway, backends):
    port, record = answering_backend(backends)
    gw = start_gateway(app_config(
        [port], filters=["keepalive: { interval: 200ms, timeout: 2s }"]))
    c = AnsweringClient(gw.port)
    c.upgrade("/app")
    c.pump(0.5)  # the gateway's pings come and are answered meanwhile
    for i in range(5):
        payload = b"mine-%d" % i  # 6 bytes: not a gateway pong's size
        c.send(encode_frame(PING, payload))
        c.pump(0.3)
        assert payload in c.pongs, (payload, c.pongs)
    # An 8-byte ping of the client's own, the gateway's payload size, also comes back.
    c.send(encode_frame(PING, b"12345678"))
    assert wait_for(lambda: c.pump(0.2) is not None and b"12345678" in c.pongs, timeout=3)
    assert [p for op, p in record["frames"] if op == PING].count(b"12345678") == 1
    assert gw.metric("wsgate_keepalive_timeouts_total", route="app") == 0


def test_keepalive_settings_are_validated_at_load(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(app_config([1], filters=["keepalive: { interval: 0s, timeout: soon }"]))
    out = subprocess.run([WSGATE, "--check", "--config", str(path)], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode != 0
    assert "filters[0].keepalive.interval" in out.stderr and "greater than 0" in out.stderr
    assert "filters[0].keepalive.timeout" in out.stderr and "invalid duration" in out.stderr
