"""The `rate_limit` and `max_duration` message filters (issue 19) through the real gateway and a
real backend on loopback: a throttled sender is held to its rate with nothing lost, reordered or
buffered without bound; `action: close` ends the offender with 1008 and the other side with
1001; `max_duration` ends sessions with 1001 both ways around `max`, spread by the jitter."""
import socket
import struct
import threading
import time

from conftest import app_config, wait_for
from wsproto import BINARY, CLOSE, TEXT, RawClient, close_payload, encode_frame

RATE = 100
BURST = 100


def timed_recorder(backends):
    """A backend recording (arrival time, message) for each message; answers nothing."""
    async def handler(ws, record):
        async for message in ws:
            record["messages"].append((time.monotonic(), message))
    return backends.websocket(handler)


def flood(client, size, seconds):
    """Sends numbered binary messages of `size` bytes as fast as the socket takes them for
    `seconds`, in a thread; returns (thread, progress). A send blocked by backpressure finishes
    its message, so the stream stays whole."""
    progress = {"sent": 0, "done": False}

    def run():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            payload = struct.pack("!Q", progress["sent"]).ljust(size, b"p")
            client.sock.sendall(encode_frame(BINARY, payload))
            progress["sent"] += 1
        progress["done"] = True
    client.sock.settimeout(30)  # a send blocked this long would mean the gateway stopped reading
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, progress


def throttle_run(start_gateway, backends, size, seconds=5.0):
    """A client at full speed through a 100 msg/s throttle for `seconds` after its burst.
    Returns (arrival times, rss samples KiB, throttled seconds at half time and at the end)."""
    port, record = timed_recorder(backends)
    limit = (f"rate_limit: {{ client_to_upstream: {{ messages: {RATE}/s, "
             f"burst_messages: {BURST}, action: throttle }} }}")
    gw = start_gateway(app_config([port], filters=[limit], workers=1))
    c = RawClient(gw.port)
    c.upgrade("/app")
    # A small send buffer: what the client has queued (and must drain at the end) stays small.
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    rss = [gw.rss_kib()]
    thread, progress = flood(c, size, BURST / RATE + seconds)
    throttled_half = None
    half = time.monotonic() + (BURST / RATE + seconds) / 2
    while thread.is_alive() and time.monotonic() < half + seconds:
        time.sleep(0.1)
        rss.append(gw.rss_kib())
        if throttled_half is None and time.monotonic() >= half:
            throttled_half = gw.metric("wsgate_throttled_seconds_total", route="app",
                                       direction="client_to_upstream")
    thread.join(30)
    assert progress["done"], f"the sender never finished: {progress}"
    sent = progress["sent"]
    # What was queued in the sockets when the sender stopped arrives at the same rate.
    drain = (sent - BURST) / RATE - seconds + 5
    assert wait_for(lambda: len(record["messages"]) >= sent, timeout=drain, interval=0.1), \
        f"{len(record['messages'])} of {sent} messages arrived"
    throttled_end = gw.metric("wsgate_throttled_seconds_total", route="app",
                              direction="client_to_upstream")
    got = [struct.unpack("!Q", m[:8])[0] for _, m in record["messages"]]
    assert got == list(range(sent)), "every message arrives, once, in order"
    assert all(len(m) == size for _, m in record["messages"])
    c.send(encode_frame(CLOSE, close_payload(1000)))
    assert c.read_close()[0] == 1000
    c.close()
    return [t for t, _ in record["messages"]], rss, throttled_half, throttled_end


def rate_after_burst(times, seconds):
    """Messages per second that arrived over `seconds` from the arrival of the first one past
    the burst."""
    start = times[BURST]
    return sum(1 for t in times[BURST + 1:] if t <= start + seconds) / seconds


def test_throttle_holds_a_full_speed_sender_to_the_rate_with_nothing_lost(
        start_gateway, backends):
    times, rss, throttled_half, throttled_end = throttle_run(start_gateway, backends, 4096)
    rate = rate_after_burst(times, 5.0)
    print(f"{len(times)} messages, {rate:.1f}/s after the burst, rss {rss[0]} → {max(rss)} KiB, "
          f"throttled {throttled_half:.2f} s then {throttled_end:.2f} s")
    assert RATE * 0.85 <= rate <= RATE * 1.15
    # The burst went through at once, not at the rate.
    assert times[BURST - 1] - times[0] < 0.8  # at the rate it would take 1 s
    assert max(rss) - rss[0] < 8 * 1024, f"gateway RSS grew: {rss}"
    assert 0 < throttled_half < throttled_end
    assert throttled_end >= 3.0  # the sender was held most of the 5 s


def test_throttle_holds_small_messages_to_the_rate_without_lumps(start_gateway, backends):
    # One read brings hundreds of 64 B messages: the frames behind the one that drew the throttle
    # wait for their time instead of going on with it.
    times, rss, _, _ = throttle_run(start_gateway, backends, 64)
    rate = rate_after_burst(times, 5.0)
    assert RATE * 0.85 <= rate <= RATE * 1.15, rate
    start = times[BURST]
    windows = [sum(1 for t in times[BURST:] if start + i / 2 <= t < start + (i + 1) / 2)
               for i in range(10)]
    # Every half second carries about half a second's worth: no lump, no gap.
    assert all(RATE / 2 * 0.6 <= n <= RATE / 2 * 1.4 for n in windows), windows
    assert max(rss) - rss[0] < 8 * 1024, f"gateway RSS grew: {rss}"


def test_close_action_ends_the_sender_with_1008_and_the_backend_with_1001(
        start_gateway, backends):
    port, record = backends.recorder()
    limit = "rate_limit: { client_to_upstream: { messages: 1/s, burst_messages: 5, action: close } }"
    gw = start_gateway(app_config([port], filters=[limit]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(b"".join(encode_frame(TEXT, f"m{i}") for i in range(8)))
    code, reason = c.read_close()
    assert (code, reason) == (1008, "message rate exceeded")
    c.send(encode_frame(CLOSE, close_payload(1008)))
    assert c.wait_end(5) == "fin"
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1001
    assert record["messages"] == [f"m{i}" for i in range(5)], "the burst passed, nothing after"
    assert gw.wait_metric("wsgate_filter_rejections_total", 1, route="app", filter="rate_limit",
                          reason="message_rate") == 1
    assert gw.metric("wsgate_close_codes_total", route="app", side="gateway", code="1008") == 1
    assert gw.metric("wsgate_close_codes_total", route="app", side="gateway", code="1001") == 1
    assert gw.metric("wsgate_throttled_seconds_total") == 0


def test_close_action_on_bytes_from_the_backend(start_gateway, backends):
    async def handler(ws, record):
        await ws.recv()
        for _ in range(3):
            await ws.send(b"z" * 600)
        await ws.wait_closed()
    port, record = backends.websocket(handler)
    limit = ("rate_limit: { upstream_to_client: { bytes: 1KiB/s, burst_bytes: 1KiB, "
             "action: close } }")
    gw = start_gateway(app_config([port], filters=[limit]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "go"))
    assert c.read_message()[1] == b"z" * 600
    code, _ = c.read_close()  # the second 600 bytes found 424 tokens: not forwarded
    assert code == 1001
    c.send(encode_frame(CLOSE, close_payload(1001)))
    assert c.wait_end(5) == "fin"
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0] == (1008, "byte rate exceeded")
    assert gw.wait_metric("wsgate_filter_rejections_total", 1, route="app", filter="rate_limit",
                          reason="byte_rate") == 1


def test_within_the_limits_nothing_is_held_or_closed(start_gateway, backends):
    port, record = backends.echo()
    limit = ("rate_limit: { client_to_upstream: { messages: 1000/s, bytes: 1MiB/s }, "
             "upstream_to_client: { messages: 1000/s, action: close } }")
    gw = start_gateway(app_config([port], filters=[limit]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    for i in range(50):
        c.send(encode_frame(TEXT, f"hello {i}"))
        assert c.read_message()[1] == f"hello {i}".encode()
    c.send(encode_frame(CLOSE, close_payload(1000)))
    assert c.read_close()[0] == 1000
    assert gw.metric("wsgate_filter_rejections_total", filter="rate_limit") == 0
    assert gw.metric("wsgate_throttled_seconds_total") == 0


def test_max_duration_closes_sessions_with_1001_both_ways_spread_by_the_jitter(
        start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port], filters=["max_duration: { max: 1s, jitter: 20% }"]))
    sessions = 8
    lifetimes = [None] * sessions  # (from the upgrade's request, from its answer)
    closes = [None] * sessions
    errors = []

    def session(i):
        try:
            c = RawClient(gw.port)
            asked = time.monotonic()
            c.upgrade("/app")
            upgraded = time.monotonic()
            c.send(encode_frame(TEXT, f"s{i}"))
            assert c.read_message()[1] == f"s{i}".encode()
            closes[i] = c.read_close(timeout=5)
            closed = time.monotonic()
            lifetimes[i] = (closed - asked, closed - upgraded)
            c.send(encode_frame(CLOSE, close_payload(1001)))
            assert c.wait_end(5) == "fin"
            c.close()
        except Exception as e:  # reported by the test thread
            errors.append(f"session {i}: {e!r}")

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors, errors
    print("lifetimes:", sorted((round(a, 3), round(b, 3)) for a, b in lifetimes))
    assert all(code == (1001, "session too old") for code in closes), closes
    # 1 s ± 20% on the session's clock, which starts between the client's request and its
    # reading of the answer: from the request, never shorter than the session lived (none
    # before 0.8 s); from the answer, never longer (the bound leaves room for a loaded
    # machine's scheduling). A thread that reads the answer late must not look like an early
    # close.
    assert all(asked >= 0.78 for asked, _ in lifetimes), lifetimes
    assert all(upgraded <= 1.45 for _, upgraded in lifetimes), lifetimes
    # Uniform over 400 ms: 8 draws within 50 ms of each other have odds of about 4e-6.
    spread = [upgraded for _, upgraded in lifetimes]
    assert max(spread) - min(spread) > 0.05, lifetimes
    assert wait_for(lambda: len(record["close_codes"]) == sessions)
    assert all(code == 1001 for code, _ in record["close_codes"]), record["close_codes"]
    assert gw.wait_metric("wsgate_close_codes_total", 2 * sessions, route="app", side="gateway",
                          code="1001") == 2 * sessions
    assert gw.wait_idle() == 0


def test_max_duration_waits_for_the_frame_under_way(start_gateway, backends):
    """The deadline falls inside a fragmented message: its last fragment still reaches the
    backend, then both sides get 1001."""
    port, record = backends.recorder()
    gw = start_gateway(app_config([port], filters=["max_duration: { max: 300ms }"]))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "first half, ", fin=False))
    head = encode_frame(0, "second half", fin=True)
    c.send(head[:10])  # its header (6 bytes, masked) and 4 payload bytes: under way
    time.sleep(0.6)
    c.send(head[10:])
    assert c.read_close()[0] == 1001
    c.send(encode_frame(CLOSE, close_payload(1001)))
    assert c.wait_end(5) == "fin"
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"][0][0] == 1001
    assert record["messages"] == ["first half, second half"]


def test_a_throttled_sender_is_not_idle(start_gateway, backends):
    """Held longer than idle_timeout by a throttle, with messages waiting in its socket: the
    session is not closed as idle, and every message arrives."""
    port, record = backends.recorder()
    limit = ("rate_limit: { client_to_upstream: { messages: 10/s, burst_messages: 1, "
             "action: throttle } }")
    gw = start_gateway(app_config([port], filters=[limit],
                                  route_extra="        idle_timeout: 700ms\n"))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(b"".join(encode_frame(TEXT, f"a{i}") for i in range(20)))  # 2 s of debt
    time.sleep(0.2)
    c.send(b"".join(encode_frame(TEXT, f"b{i}") for i in range(5)))  # waits in the socket
    want = [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(5)]
    assert wait_for(lambda: len(record["messages"]) == len(want), timeout=6), record["messages"]
    assert record["messages"] == want
    assert c.wait_end(0.1) == "open"
    assert gw.metric("wsgate_close_codes_total", route="app", side="gateway") == 0
    c.send(encode_frame(CLOSE, close_payload(1000)))
    assert c.read_close()[0] == 1000
