"""Fixtures: the real wsgate binary on loopback ports picked by the kernel, and python3-websockets
backends (plus raw asyncio TCP servers) running on a background asyncio loop.

Every wait is bounded; the only processes stopped are the ones started here, by PID."""
import asyncio
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

import wscompat
from tls_certs import tls_certs  # noqa: F401 (a session fixture, for every test module)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WSGATE = os.environ.get("WSGATE_BIN", os.path.join(ROOT, "build", "wsgate"))
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CRASH_MARKERS = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:",
                 "Segmentation fault", "terminate called", "Assertion `", "core dumped")


def tool(name, package=None):
    """The path of a required program: a missing one fails the test, never skips it."""
    path = shutil.which(name) or os.path.join("/usr/bin", name)
    assert os.access(path, os.X_OK), \
        f"{name} is not installed" + (f" (Debian package {package})" if package else "")
    return path


def wait_for(predicate, timeout=5, interval=0.05):
    """Polls `predicate` until it is true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Gateway:
    """One wsgate process started on `config_text`. `ports` maps listener names to the bound
    ports read from the log; `port` is the first listener's."""

    def __init__(self, config_text, listeners=("public",), extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="wsgate-test-")
        self.config_path = os.path.join(self.dir, "wsgate.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.log_lines = []
        self.ports = {}
        self.hosts = {}
        self.admin_port = None
        self.expected = set(listeners)
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [WSGATE, "--config", self.config_path, "--log-level", "debug", *extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, errors="replace")
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()
        if not self.ready.wait(10) or not self._listening():
            self.stop()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"wsgate did not log its listeners (exit "
                               f"{self.proc.returncode}, within 10 s):\n{self.log()}")
        self.port = self.ports[listeners[0]]

    def _read_log(self):
        for line in self.proc.stderr:
            self.log_lines.append(line)
            text = line.strip()
            m = re.search(r"listener (\S+) listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)$",
                          text)
            if m:
                self.ports[m.group(1)] = int(m.group(3))
                self.hosts[m.group(1)] = m.group(2).strip("[]")
            m = re.search(r"admin listening on (\S+):(\d+)$", text)
            if m:
                self.admin_port = int(m.group(2))
            if self._listening():
                self.ready.set()
        self.ready.set()  # the log ended: the process is gone, no need to wait any longer

    def _listening(self):
        return bool(self.admin_port) and self.expected <= set(self.ports)

    def log(self):
        return "".join(self.log_lines)

    def admin(self, path):
        """(status, body) of a GET on the admin listener; HTTP errors are returned, not
        raised."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}",
                                        timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics_text(self):
        status, text = self.admin("/metrics")
        assert status == 200, text
        return text

    def metrics(self):
        """Parsed /metrics: {(name, frozenset(labels.items())): value}."""
        out = {}
        for line in self.metrics_text().splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$", line)
            assert m, f"unparsable metrics line: {line!r}"
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
        return out

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, l), v in self.metrics().items() if n == name and want <= set(l))

    def wait_metric(self, name, at_least, timeout=5, **labels):
        """Waits until the metric reaches `at_least` (counters are live but a scrape may race
        the worker that counts); returns the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, **labels)
            if value >= at_least or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def wait_idle(self, timeout=10):
        """Waits until no client connection is open; returns the active count."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric("wsgate_connections_active")
            if value == 0 or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self, sig=signal.SIGTERM, drain_wait=1.5):
        """Signals the process (by PID); a gateway with live sessions drains, so after
        `drain_wait` s the signal is sent again (a second one stops at once, as an operator's
        would), then after 5 s more it is SIGKILLed. Returns (exit code, seconds it took to exit
        after the first signal)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(drain_wait)
            except subprocess.TimeoutExpired:
                if self.proc.poll() is None:
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        took = time.monotonic() - start
        self.reader.join(2)
        return self.proc.returncode, took

    def crashed(self):
        text = self.log()
        return [m for m in CRASH_MARKERS if m in text]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the tail of each wsgate log it produced."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for i, gw in enumerate(getattr(item, "wsgate_started", [])):
            report.sections.append((f"wsgate #{i} log (tail)", gw.log()[-6000:]))


@pytest.fixture
def start_gateway(request):
    """start_gateway(config_text, listeners=("public",)) → Gateway; each one is stopped at
    teardown with SIGTERM and must exit 0 within 5 s without a crash report."""
    started = []
    request.node.wsgate_started = started

    def start(config_text, **kwargs):
        gw = Gateway(config_text, **kwargs)
        started.append(gw)
        return gw

    yield start
    failures = []
    for gw in started:
        already_stopped = gw.proc.returncode is not None
        code, took = gw.stop()
        print(f"wsgate stopped in {took:.2f} s")
        shutil.rmtree(gw.dir, ignore_errors=True)  # its config; the log is kept in memory
        if not already_stopped and code != 0:
            failures.append(f"wsgate exited with {code} after SIGTERM ({took:.1f} s):\n"
                            f"{gw.log()[-4000:]}")
        if gw.crashed():
            failures.append(f"wsgate reported {gw.crashed()}:\n{gw.log()[-4000:]}")
    assert not failures, "\n".join(failures)


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


async def answer_upgrade(reader, writer):
    """For a hand-made backend: reads the gateway's upgrade request and answers it with a
    valid 101; returns the request's head."""
    head = await reader.readuntil(b"\r\n\r\n")
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(key)
                 + b"\r\n\r\n")
    await writer.drain()
    return head


class Backends:
    """python3-websockets servers (and raw asyncio TCP servers) on one background loop, all on
    127.0.0.1 with kernel-picked ports. Each returns (port, record); `record` is a dict the
    server fills with what it saw (read it from the test thread once the server is done)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = []

    def run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def websocket(self, handler, **kwargs):
        """A WebSocket server running `handler(ws, record)` per connection. `record` gets
        the request headers, close (code, reason) as the server saw it, and a connection
        count; handlers add what else they see."""
        record = {"headers": [], "paths": [], "messages": [], "close_codes": [],
                  "connections": 0, "extensions": [], "subprotocols": []}

        async def wrapped(ws):
            record["connections"] += 1
            record["headers"].append(wscompat.request_headers(ws))
            record["paths"].append(wscompat.request_path(ws))
            record["extensions"].append(wscompat.extensions(ws))
            record["subprotocols"].append(ws.subprotocol)
            try:
                await handler(ws, record)
            except wscompat.ConnectionClosed:
                pass
            finally:
                try:
                    await asyncio.wait_for(ws.wait_closed(), 10)
                except asyncio.TimeoutError:
                    pass
                record["close_codes"].append((ws.close_code, ws.close_reason))

        kwargs.setdefault("max_size", None)
        kwargs.setdefault("compression", None)

        async def serve():
            return await wscompat.serve(wrapped, "127.0.0.1", 0, **kwargs)
        server = self.run(serve())
        self.servers.append(server)
        return server.sockets[0].getsockname()[1], record

    def echo(self, **kwargs):
        """Echoes every message and records it."""
        async def handler(ws, record):
            async for message in ws:
                record["messages"].append(message)
                await ws.send(message)
        return self.websocket(handler, **kwargs)

    def wss_echo(self, certs, cert=None, context=None, **kwargs):
        """The echo server over TLS (wss://): it presents `cert` (default `certs.backend`, for
        backend.internal, with its chain) or uses a ready server `context`. Besides what
        `websocket` records, `record` gets each TLS handshake's SNI name (`sni`; None when the
        client sent none), and per session its TLS version (`tls_versions`) and the subject
        parts of the client's verified certificate (`client_subjects`; None without one)."""
        context = context or tls_server_context(cert or certs.backend)
        sni = []
        context.sni_callback = lambda _sslobj, name, _ctx: sni.append(name)

        async def handler(ws, record):
            info = ws.transport.get_extra_info
            record.setdefault("tls_versions", []).append(info("ssl_object").version())
            peer = info("peercert")
            record.setdefault("client_subjects", []).append(
                peer_subject_parts(peer) if peer else None)
            async for message in ws:
                record["messages"].append(message)
                await ws.send(message)
        port, record = self.websocket(handler, ssl=context, **kwargs)
        record["sni"] = sni
        return port, record

    def recorder(self, **kwargs):
        """Records every message, answers nothing."""
        async def handler(ws, record):
            async for message in ws:
                record["messages"].append(message)
        return self.websocket(handler, **kwargs)

    def raw(self, respond):
        """A plain TCP server: `respond(reader, writer, record)` coroutine per connection."""
        record = {"received": b"", "connections": 0}

        async def on_connect(reader, writer):
            record["connections"] += 1
            try:
                await respond(reader, writer, record)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = self.run(asyncio.start_server(on_connect, "127.0.0.1", 0))
        self.servers.append(server)
        return server.sockets[0].getsockname()[1], record

    def refusing(self, status_line, body, extra=b""):
        """Answers the upgrade with a plain HTTP response instead of 101, then keeps reading
        for 3 s: anything that arrives after its answer would be a smuggled tunnel."""
        async def respond(reader, writer, record):
            record["request"] = await reader.readuntil(b"\r\n\r\n")
            writer.write(status_line + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)
            await writer.drain()
            record["answered"] = True
            deadline = asyncio.get_running_loop().time() + 3
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), left)
                except asyncio.TimeoutError:
                    break
                if not chunk:
                    record["eof"] = True
                    break
                record["received"] += chunk
        return self.raw(respond)

    def hand_made(self, extra_headers=b"", accept=None, after_seconds=0.2, then=b"",
                  trickle=False):
        """A backend that answers the upgrade itself (with `extra_headers`, or a forced
        `accept`), sends `then` (one byte per write if `trickle`), records what it receives,
        and drops the TCP connection (no close frame) after `after_seconds`."""
        async def respond(reader, writer, record):
            head = await reader.readuntil(b"\r\n\r\n")
            record["request"] = head
            key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:")][0]
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                         (accept or accept_for(key)) + b"\r\n" + extra_headers + b"\r\n" +
                         (b"" if trickle else then))
            await writer.drain()
            for i in range(len(then) if trickle else 0):
                writer.write(then[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.01 if i < 16 else 0.001)  # headers: one read per byte
            deadline = asyncio.get_running_loop().time() + after_seconds
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), left)
                except asyncio.TimeoutError:
                    break
                if not chunk:
                    break
                record["received"] += chunk
        return self.raw(respond)

    def close(self):
        async def finish():
            for server in self.servers:
                server.close()
            await asyncio.wait_for(asyncio.gather(
                *(server.wait_closed() for server in self.servers), return_exceptions=True), 2)

        async def cancel_the_rest():
            # Handlers still running (sleepers, slow readers) are cancelled, not waited for.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        for step in (finish, cancel_the_rest):
            try:
                self.run(step(), timeout=10)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def backends():
    b = Backends()
    yield b
    b.close()


_dead_sockets = []  # held for the whole run: no process can be given these ports


def dead_port():
    """A loopback port with nothing listening: bound but never listened on, so connects are
    refused, and held, so that no later bind to port 0 (a gateway's own admin or listener) can
    be given it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _dead_sockets.append(s)
    return s.getsockname()[1]


def gateway_config(routes, clusters="", listener_extra="", workers=2, address="127.0.0.1:0"):
    """A one-listener (`public`) config with the built-in `echo` cluster and `clusters`."""
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


def app_config(endpoints, filters=None, route_extra="", listener_extra="", cluster_extra="",
               workers=2, address="127.0.0.1:0"):
    """Routes /echo → built-in `echo` and /app → cluster `app` on loopback `endpoints`
    (ports); `filters` and `route_extra` go on the /app route."""
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


TLS_VERSIONS = {"1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
                "1.3": ssl.TLSVersion.TLSv1_3}
SHORT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
               "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}


def _versions(context, min_version, max_version):
    """Sets a context's TLS version range ("1.1", "1.2", "1.3"). TLS 1.1 needs OpenSSL 3's
    security level 0 (level 1 and up refuse its SHA-1 signatures), and Python warns that the
    version is deprecated: here it is on purpose."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if min_version:
            context.minimum_version = TLS_VERSIONS[min_version]
        if max_version:
            context.maximum_version = TLS_VERSIONS[max_version]
    if "1.1" in (min_version, max_version):
        context.set_ciphers("DEFAULT:@SECLEVEL=0")


def tls_server_context(cert, client_ca=None, require_client_cert=False, min_version=None,
                       max_version=None, alpn=None):
    """A server ssl.SSLContext presenting `cert` (a tls_certs.Cert, its whole chain); with
    `client_ca`, client certificates are asked for and verified against it (required if
    `require_client_cert`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    if client_ca:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    _versions(context, min_version, max_version)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def tls_client_context(ca=None, cert=None, min_version=None, max_version=None,
                       check_hostname=True, alpn=None):
    """A client ssl.SSLContext that verifies the server against `ca` (a PEM file; the chain
    must lead to it) and, if `check_hostname`, checks the name given as `server_hostname` (also
    the SNI name) against the certificate's SANs; `cert` (a tls_certs.Cert) is presented as
    the client certificate. Versions are "1.1", "1.2" or "1.3"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    if ca:
        context.load_verify_locations(cafile=ca)
    if cert:
        context.load_cert_chain(cert.cert, cert.key)
    _versions(context, min_version, max_version)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def tls_connect(port, context, server_hostname=None, timeout=10, host="127.0.0.1"):
    """A TCP connection with the TLS handshake done (SNI `server_hostname`; none when None),
    every step bounded by `timeout`. Raises ssl.SSLError if the handshake fails."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise


def peer_subject_parts(peercert):
    """The subject of a certificate as ssl's getpeercert() gives it, as tls_certs'
    subject_parts gives it (`KEY=value` strings)."""
    return frozenset(f"{SHORT_NAMES.get(k, k)}={v}" for rdn in peercert["subject"]
                     for k, v in rdn)


def run(coro, timeout=60):
    """Runs a client coroutine on a fresh loop in the test thread, bounded by `timeout`."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def sanitized(binary):
    """Whether `binary` was built with the sanitizers (`make test-sanitize`)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    return "libubsan" in out or "libasan" in out
