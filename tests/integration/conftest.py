"""Fixtures: the real wsgate binary on loopback ports picked by the kernel, and python3-websockets
backends running in a background asyncio loop."""
import asyncio
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WSGATE = os.environ.get("WSGATE_BIN", os.path.join(ROOT, "build", "wsgate"))


class Gateway:
    """One wsgate process. `port` is the first listener's bound port."""

    def __init__(self, config_text, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="wsgate-test-")
        self.config_path = os.path.join(self.dir, "wsgate.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.log_lines = []
        self.proc = subprocess.Popen(
            [WSGATE, "--config", self.config_path, "--log-level", "debug", *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.ready = threading.Event()
        self.ports = {}
        self.admin_port = None
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self.ready.wait(10):
            self.stop()
            raise RuntimeError("wsgate did not start:\n" + self.log())
        self.port = next(iter(self.ports.values()))

    def _read_log(self):
        for line in self.proc.stderr:
            self.log_lines.append(line)
            m = re.search(r"listener (\S+) listening on (\S+):(\d+)$", line.strip())
            if m:
                self.ports[m.group(1)] = int(m.group(3))
            m = re.search(r"admin listening on (\S+):(\d+)$", line.strip())
            if m:
                self.admin_port = int(m.group(2))
            if "started with" in line:
                self.ready.set()

    def log(self):
        return "".join(self.log_lines)

    def admin(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    def metrics(self):
        """Parsed /metrics: {(name, frozenset(labels.items())): value}."""
        _, text = self.admin("/metrics")
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
        return out

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, l), v in self.metrics().items() if n == name and want <= set(l))

    def wait_metric(self, name, at_least, timeout=5, **labels):
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, **labels)
            if value >= at_least or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def gateway_config(routes, clusters, listener_extra="", workers=2, address="127.0.0.1:0"):
    return f"""
workers: {workers}
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: public
    address: "{address}"
{listener_extra}
    routes:
{routes}
clusters:
  - name: echo
    type: echo
{clusters}
"""


@pytest.fixture
def start_gateway():
    started = []

    def start(config_text, **kwargs):
        gw = Gateway(config_text, **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        code = gw.stop()
        assert code == 0, f"wsgate exited with {code}:\n{gw.log()[-4000:]}"
        assert "AddressSanitizer" not in gw.log() and "runtime error" not in gw.log(), gw.log()


class Backends:
    """python3-websockets servers (and raw asyncio TCP servers) on one background loop."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = []

    def run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def websocket(self, handler, **kwargs):
        """Starts a WebSocket server; returns (port, record) where record collects what it saw."""
        record = {"headers": [], "messages": [], "close_codes": [], "connections": 0}

        async def wrapped(ws, path=None):
            record["connections"] += 1
            record["headers"].append(ws.request_headers)
            try:
                await handler(ws, record)
            except websockets.ConnectionClosed:
                pass
            finally:
                await ws.wait_closed()
                record["close_codes"].append((ws.close_code, ws.close_reason))

        kwargs.setdefault("max_size", None)
        kwargs.setdefault("compression", None)
        async def serve():
            return await websockets.serve(wrapped, "127.0.0.1", 0, **kwargs)
        server = self.run(serve())
        self.servers.append(server)
        return server.sockets[0].getsockname()[1], record

    def echo(self, **kwargs):
        async def handler(ws, record):
            async for message in ws:
                record["messages"].append(message)
                await ws.send(message)
        return self.websocket(handler, **kwargs)

    def raw(self, respond):
        """A TCP server: `respond(reader, writer, record)` coroutine per connection."""
        record = {"received": b"", "connections": 0}

        async def on_connect(reader, writer):
            record["connections"] += 1
            try:
                await respond(reader, writer, record)
            finally:
                writer.close()

        server = self.run(asyncio.start_server(on_connect, "127.0.0.1", 0))
        self.servers.append(server)
        return server.sockets[0].getsockname()[1], record

    def hand_made(self, extra_headers=b"", accept=None, after_seconds=0.2, then=b""):
        """A backend that answers the upgrade itself (with `extra_headers`, or a forced
        `accept`), sends `then`, and drops the TCP connection after `after_seconds`."""
        import base64
        import hashlib

        async def respond(reader, writer, record):
            head = await reader.readuntil(b"\r\n\r\n")
            key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key")][0]
            good = base64.b64encode(hashlib.sha1(
                key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + (accept or good) +
                         b"\r\n" + extra_headers + b"\r\n" + then)
            await writer.drain()
            await asyncio.sleep(after_seconds)
        return self.raw(respond)

    def close(self):
        for server in self.servers:
            server.close()
            try:
                self.run(server.wait_closed(), timeout=5)
            except Exception:
                pass

        async def cancel_the_rest():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.run(cancel_the_rest(), timeout=5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def backends():
    b = Backends()
    yield b
    b.close()


def free_port():
    """A loopback port with nothing listening (bound then released)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def app_config(endpoints, filters=None, route_extra="", listener_extra="", cluster_extra="",
               workers=2, address="127.0.0.1:0"):
    """Routes /echo → built-in echo and /app → cluster `app` on `endpoints` (ports)."""
    route = """      - name: echo
        match: { path_prefix: /echo }
        cluster: echo
      - name: app
        match: { path_prefix: /app }
        cluster: app
"""
    if route_extra:
        route += route_extra
    if filters:
        route += "        filters:\n" + "".join(f"          - {f}\n" for f in filters)
    eps = ", ".join(f'"127.0.0.1:{p}"' for p in endpoints)
    clusters = f"""  - name: app
    endpoints: [{eps}]
    connect_timeout: 1s
    response_timeout: 3s
{cluster_extra}"""
    return gateway_config(route, clusters, listener_extra=listener_extra, workers=workers,
                          address=address)


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))
