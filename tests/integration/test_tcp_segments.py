"""Segments the gateway saves by knowing where a connection's bytes begin and end: the upgrade
request sent to the backend carries the last ACK of the TCP handshake, the close that ends a
client's closing handshake carries the FIN, and so does the close relayed to the backend from a
client that has already gone. Counted by the receiving socket (TCP_INFO's
tcpi_segs_in), so a test fails if either goes back to a segment of its own."""
import asyncio
import socket
import struct
import time

from conftest import accept_for, answer_upgrade, app_config, wait_for
from wsproto import CLOSE, RawClient, close_payload, encode_frame, parse_frames, parse_close

# struct tcp_info (linux/tcp.h): tcpi_segs_in follows tcpi_segs_out at byte 136.
SEGS_IN_OFFSET = 140


def segments_received(sock):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, SEGS_IN_OFFSET)[0]


def test_upgrade_request_carries_the_connect_ack(start_gateway, backends):
    async def respond(reader, writer, record):
        head = await reader.readuntil(b"\r\n\r\n")
        # Everything this connection has received so far: its SYN, then the request.
        record["segments"] = segments_received(writer.get_extra_info("socket"))
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(key)
                     + b"\r\n\r\n")
        await reader.read(1 << 16)  # the client's close, relayed
        writer.write(encode_frame(CLOSE, close_payload(1000), mask=False))
        await writer.drain()

    port, record = backends.raw(respond)
    gw = start_gateway(app_config([port], workers=1))
    client = RawClient(gw.port)
    client.upgrade("/app")
    client.send(encode_frame(CLOSE, close_payload(1000)))
    assert client.read_close() == (1000, "")
    assert client.wait_end() == "fin"
    client.close()
    assert record["segments"] == 2, (
        f"the backend received {record['segments']} segments up to the end of the upgrade "
        "request, not 2 (SYN, request): the connect's last ACK went out on its own")


def test_close_that_ends_the_client_handshake_carries_the_fin(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port], workers=1))
    counts = []  # segments each client received from sending its close to the end
    for _ in range(5):
        client = RawClient(gw.port)
        client.upgrade("/app")
        before = segments_received(client.sock)
        client.send(encode_frame(CLOSE, close_payload(1000, "bye")))
        assert client.read_close() == (1000, "bye")
        assert client.wait_end() == "fin"
        counts.append(segments_received(client.sock) - before)
        client.close()
    # The FIN is part of the segment that brought the close: none arrives after it.
    # The close and the FIN need two segments unless they share one. The gateway's ACK of the
    # client's close rides along too, unless a slow machine made it go out on its own first.
    assert 1 in counts, f"segments after the client's close, per connection: {counts}"


def test_close_from_a_client_gone_carries_the_fin_to_the_backend(start_gateway, backends):
    async def respond(reader, writer, record):
        await answer_upgrade(reader, writer)
        sock = writer.get_extra_info("socket")
        await asyncio.sleep(0.1)  # the gateway's ACK of the 101, if it goes out on its own
        before = segments_received(sock)
        record["ready"] = record.get("ready", 0) + 1
        received = b""
        while chunk := await reader.read(1 << 16):  # until the gateway's FIN
            received += chunk
        record.setdefault("ends", []).append((segments_received(sock) - before, received))

    port, record = backends.raw(respond)
    gw = start_gateway(app_config([port], workers=1))
    for n in range(1, 6):
        client = RawClient(gw.port)
        client.upgrade("/app")
        assert wait_for(lambda: record.get("ready", 0) == n, timeout=5)
        # The close and the FIN in one segment, as a client that closes at once often sends them.
        client.sock.send(encode_frame(CLOSE, close_payload(1000, "gone")), socket.MSG_MORE)
        client.sock.shutdown(socket.SHUT_WR)
        client.wait_end()
        client.close()
    assert wait_for(lambda: len(record.get("ends", [])) == 5, timeout=5), record.get("ends")
    for _, received in record["ends"]:
        frames = parse_frames(received)
        assert [f[2] for f in frames] == [CLOSE] and parse_close(frames[0][3]) == (1000, "gone")
    counts = [count for count, _ in record["ends"]]
    # Two segments (the close, then the FIN) unless they share one; a slow machine may split
    # them now and then, so one connection in five is enough.
    assert 1 in counts, f"segments the backend received after its 101, per connection: {counts}"


def test_close_from_a_client_gone_reaches_a_backend_whose_bytes_were_unread(
        start_gateway, backends):
    """The close relayed from a client gone is written so that the FIN can join it. Here the
    backend has sent bytes the gateway has not read when the close comes (the client read
    nothing, so the gateway stopped reading the backend; then the backend sent one more message
    and fell silent, so no segment of its would push a held close out): the close must still
    reach the backend at once, whether the leg is closed behind it or kept open."""
    async def respond(reader, writer, record):
        await answer_upgrade(reader, writer)
        me = record["connections"]
        chunk = encode_frame(0x2, b"x" * 16384, mask=False)
        for _ in range(2000):  # at most 32 MiB, until the gateway has stopped reading
            if record.get("paused") == me:
                break
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(encode_frame(0x1, b"unread", mask=False))
        await writer.drain()
        record["silent"] = me
        received = b""
        while data := await reader.read(1 << 16):
            received += data
            if parse_frames(received):
                break
        record.setdefault("closes", []).append((time.monotonic(), parse_frames(received)))

    port, record = backends.raw(respond)
    gw = start_gateway(app_config([port], workers=1))
    delays = []
    for n in range(1, 4):
        before = gw.metric("wsgate_backpressure_pauses_total", direction="upstream_to_client")
        client = RawClient(gw.port)
        client.upgrade("/app")
        assert gw.wait_metric("wsgate_backpressure_pauses_total", before + 1, timeout=10,
                              direction="upstream_to_client") > before
        record["paused"] = n
        assert wait_for(lambda: record.get("silent") == n, timeout=5)
        time.sleep(0.05)  # the last message reaches the gateway's socket
        sent = time.monotonic()
        client.sock.send(encode_frame(CLOSE, close_payload(1000, "gone")), socket.MSG_MORE)
        client.sock.shutdown(socket.SHUT_WR)
        assert wait_for(lambda: len(record.get("closes", [])) == n, timeout=5), record.keys()
        arrived, frames = record["closes"][-1]
        assert [f[2] for f in frames] == [CLOSE] and parse_close(frames[0][3]) == (1000, "gone")
        delays.append(arrived - sent)
        client.close()
    # Held back, the close waits for the kernel's probe timer (at least 200 ms); pushed, it
    # takes well under a millisecond. Two runs in three allow for one hiccup of the machine.
    assert sum(d < 0.15 for d in delays) >= 2, f"the close reached the backend after {delays} s"
