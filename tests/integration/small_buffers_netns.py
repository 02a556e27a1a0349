"""Run by test_small_buffers.py inside a network namespace of its own (`unshare -n`), as root:
brings `lo` up, shrinks the namespace's TCP buffers (net.ipv4.tcp_rmem / tcp_wmem, per
namespace), then starts a gateway, an echo backend and SESSIONS clients in it. Each client does
small round trips, then sends a burst while the backend stops reading for a second. The gateway
is also stopped (SIGSTOP) for the burst's first half second, so that every session's receive
queue fills up while its reads are in the state the round trips left. Prints one JSON line:
what each session got back (and, if any stalled, the sockets with bytes queued); exits 0 when
every message came back in order.

Usage: small_buffers_netns.py SESSIONS ROUND_TRIPS BURST SECONDS (WSGATE_BIN from the
environment, as for conftest)."""
import asyncio
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402

from conftest import Backends, Gateway, app_config  # noqa: E402

BUFFERS = "4096 16384 16384"
BURST_MARK = "burst"


def shrink_buffers():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    for name in ("tcp_rmem", "tcp_wmem"):
        with open(f"/proc/sys/net/ipv4/{name}", "w") as f:
            f.write(BUFFERS)


def slow_once_echo(backends):
    """Echoes every message; on the burst mark it stops reading for a second first, so its
    receive queue, then the gateway's, fill up."""
    async def handler(ws, record):
        async for message in ws:
            if message == BURST_MARK:
                await asyncio.sleep(1)
            await ws.send(message)
    # A short queue: the backend stops taking bytes off its socket soon after it stops reading.
    return backends.websocket(handler, max_queue=4)


def payload(session, index):
    size = 64 + (index * 7919) % 961
    tag = f"{session}:{index}:"
    return tag + "x" * (size - len(tag))


async def session(port, number, round_trips, burst, got, ready, go):
    async with websockets.connect(f"ws://127.0.0.1:{port}/app", max_size=None,
                                  compression=None, open_timeout=5, close_timeout=2) as ws:
        for i in range(round_trips):
            message = payload(number, i)[:64]
            await ws.send(message)
            assert await ws.recv() == message, f"round trip {i}"
        ready.release()
        await go.wait()
        expected = [BURST_MARK] + [payload(number, i) for i in range(burst)]

        async def receive():
            for _ in expected:
                got[number].append(await ws.recv())

        receiver = asyncio.ensure_future(receive())
        for message in expected:
            await ws.send(message)
        await receiver
        return got[number] == expected


async def stopped_for_the_burst(gateway, sessions, ready, go):
    """Once every session is done with its round trips: the gateway stops, the bursts start,
    and half a second later the gateway goes on."""
    for _ in range(sessions):
        await ready.acquire()
    gateway.proc.send_signal(signal.SIGSTOP)
    try:
        go.set()
        await asyncio.sleep(0.5)
    finally:
        gateway.proc.send_signal(signal.SIGCONT)


async def all_sessions(gateway, sessions, round_trips, burst, seconds):
    got = {n: [] for n in range(sessions)}
    ready, go = asyncio.Semaphore(0), asyncio.Event()
    tasks = [asyncio.ensure_future(session(gateway.port, n, round_trips, burst, got, ready, go))
             for n in range(sessions)]
    pause = asyncio.ensure_future(stopped_for_the_burst(gateway, sessions, ready, go))
    done, pending = await asyncio.wait(tasks, timeout=seconds)
    if not pause.done():
        pause.cancel()
        gateway.proc.send_signal(signal.SIGCONT)
    # Where the stalled sessions' bytes sit: sockets with a receive queue nobody reads.
    queued = subprocess.run(["ss", "-Htn", "state", "established"], capture_output=True,
                            text=True, timeout=10).stdout.splitlines() if pending else []
    for task in pending:
        task.cancel()
    in_order = sum(1 for t in done if not t.exception() and t.result())
    errors = sorted({repr(t.exception()) for t in done if t.exception()})
    return {"sessions": sessions, "in_order": in_order, "stalled": len(pending),
            "errors": errors, "messages_back": [len(got[n]) for n in range(sessions)],
            "messages_sent": burst + 1,
            "queued": [line.split() for line in queued if line.split()[0] != "0"]}


def main():
    sessions, round_trips, burst, seconds = (int(a) for a in sys.argv[1:5])
    shrink_buffers()
    backends = Backends()
    port, _ = slow_once_echo(backends)
    gateway = Gateway(app_config([port], workers=2))
    try:
        result = asyncio.run(all_sessions(gateway, sessions, round_trips, burst, seconds))
    finally:
        code, _ = gateway.stop()
    result["gateway_exit"] = code
    result["crashed"] = gateway.crashed()
    print(json.dumps(result))
    ok = result["in_order"] == sessions and code == 0 and not result["crashed"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
