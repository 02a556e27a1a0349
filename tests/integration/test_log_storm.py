"""A storm of failures must not serialize the workers: while a cluster is down and thousands of
handshakes to it fail, and stderr is drained slowly, a healthy route keeps its latency. The log
volume stays bounded: connect warnings are folded (at most one line per second per cluster per
worker, carrying the count of the folded ones), and lines that stderr cannot take are dropped
and counted in wsgate_log_messages_dropped_total instead of blocking a worker."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import CRASH_MARKERS, WSGATE, app_config, dead_port, sanitized
from wsproto import TEXT, RawClient, encode_frame

STDERR_RATE = 16 * 1024  # bytes/s the test reads of the gateway's stderr during the storm
HAMMERS = 3              # concurrent client processes on the dead route
PER_HAMMER = 1000        # handshakes each, at most
HAMMER_RATE = 200        # handshakes/s each (3000 over about 5 s)
HAMMER_SECONDS = 6       # and at most this long
IN_FLIGHT = 32           # handshakes each hammer has open at most
# s, handshake + one echo on the healthy route; a sanitizer build runs everything several
# times slower.
P99_BOUND = 0.6 if sanitized(WSGATE) else 0.25
PROBE_TIMEOUT = 5        # s; a probe that takes longer counts as this long

HAMMER = r"""
import asyncio, json, sys, time
port, count, rate, seconds, in_flight = (int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                                         float(sys.argv[4]), int(sys.argv[5]))
request = (b"GET /app HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
statuses = {}

async def handshake(slots):
    status = "error"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        try:
            writer.write(request)
            line = await asyncio.wait_for(reader.readline(), 5)
            if line.startswith(b"HTTP/1.1 "):
                status = line.split()[1].decode()
        finally:
            writer.close()
    except (OSError, asyncio.TimeoutError):
        pass
    statuses[status] = statuses.get(status, 0) + 1
    slots.release()

async def main():
    # Clients arrive at `rate` whatever the gateway's pace (up to `in_flight` waiting), as
    # they do in an outage: a slow gateway does not slow them down.
    slots = asyncio.Semaphore(in_flight)
    start = time.monotonic()
    tasks = []
    for i in range(count):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if time.monotonic() - start > seconds:
            break
        await slots.acquire()
        tasks.append(asyncio.ensure_future(handshake(slots)))
    await asyncio.gather(*tasks)

asyncio.run(asyncio.wait_for(main(), seconds + 6))
print(json.dumps(statuses))
"""


class SlowStderrGateway:
    """wsgate with its stderr on a pipe that a thread reads at STDERR_RATE until `drain_fast`
    is set; ports are read from the log as conftest's Gateway does."""

    def __init__(self, config_text, log_level):
        self.dir = tempfile.mkdtemp(prefix="wsgate-storm-")
        self.config_path = os.path.join(self.dir, "wsgate.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.log_bytes = bytearray()
        self.ports = {}
        self.admin_port = None
        self.ready = threading.Event()
        self.drain_fast = threading.Event()
        self.proc = subprocess.Popen(
            [WSGATE, "--config", self.config_path, "--log-level", log_level],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(10):
            self.stop()
            raise RuntimeError(f"wsgate did not log its listeners within 10 s:\n{self.log()}")

    def _read(self):
        fd = self.proc.stderr.fileno()
        while True:
            chunk = os.read(fd, 1024 if not self.drain_fast.is_set() else 65536)
            if not chunk:
                return
            self.log_bytes += chunk
            if not self.ready.is_set():
                text = self.log()
                for name, port in re.findall(r"listener (\S+) listening on [0-9.]+:(\d+)", text):
                    self.ports[name] = int(port)
                m = re.search(r"admin listening on \S+:(\d+)", text)
                if m and "public" in self.ports:
                    self.admin_port = int(m.group(1))
                    self.ready.set()
            if not self.drain_fast.is_set():
                time.sleep(len(chunk) / STDERR_RATE)

    def log(self):
        return self.log_bytes.decode(errors="replace")

    def metric(self, name, **labels):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total

    def stop(self):
        """SIGTERM by PID (stderr drained at full speed from then on), at most 10 s, then
        SIGKILL. Returns the exit code."""
        self.drain_fast.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(5)
        return self.proc.returncode


def probe(port):
    """Seconds for a handshake on /echo plus one echoed message; PROBE_TIMEOUT if it fails."""
    start = time.monotonic()
    try:
        c = RawClient(port, timeout=PROBE_TIMEOUT)
        try:
            c.upgrade("/echo")
            c.send(encode_frame(TEXT, "ping"))
            _, message, _ = c.read_message(timeout=PROBE_TIMEOUT)
            assert message == b"ping"
        finally:
            c.close()
    except (OSError, AssertionError):
        return PROBE_TIMEOUT
    return min(time.monotonic() - start, PROBE_TIMEOUT)


@pytest.mark.parametrize("log_level", ["info", "debug"])
def test_outage_storm_with_slow_stderr_keeps_healthy_route_fast(log_level):
    gw = SlowStderrGateway(app_config([dead_port()], workers=2), log_level)
    hammers = []
    try:
        port = gw.ports["public"]
        assert probe(port) < PROBE_TIMEOUT  # warm: the healthy route works before the storm
        hammers = [subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(port), str(PER_HAMMER), str(HAMMER_RATE),
             str(HAMMER_SECONDS), str(IN_FLIGHT)], stdout=subprocess.PIPE, text=True)
            for _ in range(HAMMERS)]
        samples = []
        storm_end = time.monotonic() + HAMMER_SECONDS + 4
        while any(h.poll() is None for h in hammers) and time.monotonic() < storm_end:
            samples.append(probe(port))
            time.sleep(0.01)
        statuses = {}
        for h in hammers:
            out, _ = h.communicate(timeout=15)
            for status, n in json.loads(out).items():
                statuses[status] = statuses.get(status, 0) + n
        failures = gw.metric("wsgate_upstream_connect_failures_total", cluster="app")
        dropped = gw.metric("wsgate_log_messages_dropped_total")
    finally:
        for h in hammers:
            if h.poll() is None:
                h.kill()
                h.wait(5)
        code = gw.stop()

    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    p50 = samples[len(samples) // 2]
    print(f"{log_level}: {len(samples)} probes, p50 {p50 * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms; dead route {statuses}; {failures:.0f} connect failures, "
          f"{dropped:.0f} log lines dropped")
    log = gw.log()
    assert code == 0, f"wsgate exited with {code}:\n{log[-3000:]}"
    assert not [m for m in CRASH_MARKERS if m in log], log[-3000:]
    assert p99 < P99_BOUND, \
        f"healthy route p99 {p99 * 1000:.0f} ms (p50 {p50 * 1000:.0f} ms) during the storm"
    assert len(samples) >= 100, f"only {len(samples)} probes during the storm"
    assert set(statuses) == {"502"} and statuses["502"] >= 2000, \
        f"dead route answers: {statuses}"

    if log_level == "info":
        # Bounded log volume, visibly folded: at most one line per second per worker, each
        # after a worker's first naming how many failures it stands for, none counted twice.
        warnings = re.findall(r"warning cluster app: connect to \S+ failed: .*?"
                              r"(?: \((\d+) more in the last [0-9.]+s\))?$", log, re.M)
        folded = sum(int(n) for n in warnings if n)
        assert 0 < len(warnings) <= 2 * (HAMMER_SECONDS + 3), f"{len(warnings)} connect warnings"
        assert folded > 0 and len(warnings) + folded <= failures, (len(warnings), folded)
    else:
        # One debug line per refused handshake is more than stderr takes at STDERR_RATE: the
        # lines it cannot take are dropped and counted, not waited for.
        assert dropped > 0, "no log line dropped at debug level"
