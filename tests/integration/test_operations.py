"""What an operator relies on: bounded memory, no descriptor leaks, admin endpoints, prompt
shutdown, the command line, and an IPv6 listener."""
import asyncio
import glob
import os
import re
import resource
import signal
import socket
import subprocess
import time

import pytest

import wscompat
from conftest import ROOT, WSGATE, app_config, dead_port, gateway_config, run, sanitized, wait_for
from wsproto import BINARY, TEXT, RawClient, encode_frame

MIB = 1 << 20


def test_client_that_stops_reading_keeps_gateway_memory_bounded(start_gateway, backends):
    progress = {"sent": 0, "blocked": False}

    async def flood(ws, record):
        chunk = b"f" * MIB
        try:
            for i in range(400):  # at most 400 MiB; each send bounded below
                await asyncio.wait_for(ws.send(chunk), 4)
                progress["sent"] += 1
        except asyncio.TimeoutError:
            progress["blocked"] = True  # backpressure reached the backend
        await ws.wait_closed()
    port, _ = backends.websocket(flood, write_limit=MIB)
    gw = start_gateway(app_config([port], workers=1))
    before = gw.rss_kib()
    c = RawClient(gw.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.upgrade("/app")  # ... and then does not read
    peak = before
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and not progress["blocked"] and progress["sent"] < 400:
        time.sleep(0.25)
        peak = max(peak, gw.rss_kib())
    for _ in range(4):  # a little longer, to see growth that lags the flood
        time.sleep(0.25)
        peak = max(peak, gw.rss_kib())
    grown = peak - before
    print(f"flood: {progress}, rss before {before} KiB, peak {peak} KiB")
    assert progress["sent"] < 400, "the backend was never slowed down: nothing pushed back"
    assert grown < 30 * 1024, f"gateway RSS grew by {grown} KiB while the client did not read " \
                              f"({progress['sent']} MiB sent by the backend)"
    assert gw.metric("wsgate_backpressure_pauses_total", route="app",
                     direction="upstream_to_client") >= 1
    # Nothing was lost or reordered: the client can still read whole 1 MiB messages.
    for _ in range(3):
        opcode, message, _ = c.read_message(timeout=10)
        assert opcode == BINARY and message == b"f" * MIB
    c.close()


def test_hundreds_of_sessions_leak_no_file_descriptor(start_gateway, backends):
    port, _ = backends.echo()
    routes = """      - name: echo
        match: { path_prefix: /echo }
        cluster: echo
      - name: app
        match: { path_prefix: /app }
        cluster: app
      - name: dead
        match: { path_prefix: /dead }
        cluster: dead
"""
    clusters = f"""  - name: app
    endpoints: ["127.0.0.1:{port}"]
  - name: dead
    endpoints: ["127.0.0.1:{dead_port()}"]
"""
    gw = start_gateway(gateway_config(routes, clusters,
                                      listener_extra="    request_timeout: 2s"))

    async def sessions(n, path):
        for i in range(n):
            async with wscompat.connect(f"ws://127.0.0.1:{gw.port}{path}", open_timeout=5,
                                        close_timeout=5) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"

    def refused(path, status):
        c = RawClient(gw.port)
        c.request(path)
        assert c.read_response()[0] == status
        c.close()

    run(sessions(5, "/app"))
    run(sessions(5, "/echo"))
    refused("/dead", 502)
    assert gw.wait_idle() == 0
    time.sleep(0.3)
    baseline = gw.fd_count()
    async def many():
        await asyncio.gather(sessions(75, "/app"), sessions(75, "/app"),
                             sessions(75, "/echo"), sessions(75, "/echo"))
    run(many(), timeout=150)
    for _ in range(10):
        c = RawClient(gw.port)  # vanishes mid-session
        c.upgrade("/app")
        c.send(encode_frame(TEXT, "x"))
        c.close()
        c = RawClient(gw.port)  # vanishes mid-handshake
        c.send("GET /app HTTP/1.1\r\n")
        c.close()
        refused("/nowhere", 404)
        refused("/dead", 502)
    assert gw.wait_idle(10) == 0
    assert wait_for(lambda: gw.fd_count() <= baseline + 2, timeout=5), \
        f"{gw.fd_count()} descriptors open, {baseline} before 340 sessions"
    assert gw.metric("wsgate_connections_total", outcome="relayed") >= 310


@pytest.mark.skipif(sanitized(WSGATE), reason="UBSan checks a polymorphic type the first time "
                    "it meets it through a pipe of its own (libsanitizer's "
                    "IsAccessibleMemoryRange), which a process out of descriptors cannot open: "
                    "the check fails and stops the process. `make test` runs this test")
def test_running_out_of_descriptors_answers_502_pauses_accepts_and_recovers(start_gateway,
                                                                            backends):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port], workers=1))

    def session(path):
        c = RawClient(gw.port)
        c.upgrade(path)
        c.send(encode_frame(TEXT, "up"))
        assert c.read_message()[1] == b"up"
        return c

    # Every path the test takes, once before the descriptors run out: what a path allocates or
    # initialises the first time must not be what fails.
    for path in ("/app", "/echo"):
        session(path).close()
    c = RawClient(gw.port)
    c.send("GET /nowhere HTTP/1.1\r\nHost: localhost\r\n")  # a head that waits, then a refusal
    time.sleep(0.1)
    c.send("Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert c.read_response()[0] == 404
    c.close()
    assert gw.wait_idle() == 0
    time.sleep(0.3)
    baseline = gw.fd_count()
    # Room for three proxied sessions (client + upstream socket each) and one descriptor more.
    limit = max(int(fd) for fd in os.listdir(f"/proc/{gw.proc.pid}/fd")) + 1 + 7
    original = resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, (limit, original[1]))
    held = [session("/app") for _ in range(3)]
    one_left = gw.fd_count()

    # The last descriptor goes to the accept: no socket left for the upstream, nor a pair for
    # the in-process echo. Each gets a 502 and a log line naming the cause.
    for path in ("/app", "/echo"):
        c = RawClient(gw.port)
        c.request(path)
        assert c.read_response()[0] == 502, path
        c.close()
        assert wait_for(lambda: gw.fd_count() == one_left, timeout=5)

    # The last descriptor held by a client still sending its head: the next accept fails, the
    # listener pauses and retries instead of spinning, and established sessions go on.
    stalled = RawClient(gw.port)
    stalled.send("GET /app HTTP/1.1\r\n")
    waiting = RawClient(gw.port)
    waiting.request("/app")
    assert wait_for(lambda: "accept failed: Too many open files" in gw.log(), timeout=5), \
        gw.log()[-2000:]
    cpu_before = sum(int(x) for x in open(f"/proc/{gw.proc.pid}/stat").read()
                     .rsplit(")", 1)[1].split()[11:13])
    time.sleep(1.0)
    cpu_after = sum(int(x) for x in open(f"/proc/{gw.proc.pid}/stat").read()
                    .rsplit(")", 1)[1].split()[11:13])
    ticks = os.sysconf("SC_CLK_TCK")
    assert (cpu_after - cpu_before) / ticks < 0.3, \
        f"{(cpu_after - cpu_before) / ticks:.2f} s of CPU in 1 s while out of descriptors"
    for c in held:
        c.send(encode_frame(BINARY, b"still here"))
        assert c.read_message()[1] == b"still here"

    # Descriptors come back (the limit is raised again; closing sessions frees them in steps,
    # which could hand the waiting connection a client socket but no upstream one): the
    # connection that waited in the backlog is served.
    resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, original)
    status, _, _ = waiting.read_response(timeout=5)
    assert status == 101
    waiting.send(encode_frame(TEXT, "served"))
    assert waiting.read_message()[1] == b"served"
    for c in held + [waiting, stalled]:
        c.close()
    assert gw.wait_idle(10) == 0

    log = gw.log()
    assert re.search(r"cluster app: connect to 127\.0\.0\.1:\d+ failed: Too many open files", log)
    assert "cluster echo: cannot open the in-process echo: socketpair: Too many open files" in log
    assert "listener public: accept failed: Too many open files; pausing accepts for 100ms" in log
    assert gw.metric("wsgate_accept_failures_total", listener="public") >= 1
    assert gw.metric("wsgate_handshake_rejections_total", reason="upstream_unavailable") == 2
    assert gw.metric("wsgate_upstream_connect_failures_total", cluster="app") >= 1
    assert wait_for(lambda: gw.fd_count() <= baseline + 1, timeout=5), \
        f"{gw.fd_count()} descriptors open, {baseline} before"


def test_admin_health_and_readiness(start_gateway):
    gw = start_gateway(app_config([1]))
    assert gw.admin("/healthz")[0] == 200
    assert gw.admin("/ready")[0] == 200
    assert gw.admin("/no-such-page")[0] == 404


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_stops_the_gateway_at_once_with_exit_0_even_with_live_sessions(
        start_gateway, backends, sig):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port]))  # drain.timeout 30 s by default
    clients = []
    for path in ("/app", "/echo"):
        c = RawClient(gw.port)
        c.upgrade(path)
        c.send(encode_frame(TEXT, "hi"))
        assert c.read_message()[1] == b"hi"
        clients.append(c)
    half = RawClient(gw.port)
    half.send("GET /app HTTP/1.1\r\n")  # mid-handshake
    # The clients never answer the drain's 1001: the first signal alone would wait for them.
    code, took = gw.stop(sig, drain_wait=0.3)
    assert code == 0, gw.log()[-3000:]
    assert took < 2, f"took {took:.1f} s to exit"
    assert "a second signal stops at once" in gw.log()
    for c in clients:
        assert c.wait_end(3) in ("fin", "reset"), "a live session survived the process"


def test_ipv6_listener(start_gateway, backends):
    port, record = backends.echo()
    config = app_config([port], address="[::1]:0")
    gw = start_gateway(config)
    assert re.search(r"listener public listening on \[::1\]:\d+", gw.log())
    assert gw.hosts["public"] == "::1"
    c = RawClient(gw.port, host="::1")
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "over v6"))
    assert c.read_message()[1] == b"over v6"
    c = RawClient(gw.port, host="::1")
    c.upgrade("/echo")
    c.send(encode_frame(BINARY, b"v6 echo"))
    assert c.read_message()[1] == b"v6 echo"
    # X-Forwarded-For names the IPv6 client.
    assert record["headers"][0]["X-Forwarded-For"] == "::1"


def test_two_listeners_each_log_their_port_and_serve(start_gateway):
    config = """
workers: 1
admin: { address: 127.0.0.1:0 }
listeners:
  - name: v4
    address: 127.0.0.1:0
    routes:
      - name: echo4
        match: { path_prefix: /echo }
        cluster: echo
  - name: v6
    address: "[::1]:0"
    routes:
      - name: echo6
        match: { path_prefix: /echo }
        cluster: echo
clusters:
  - name: echo
    type: echo
"""
    gw = start_gateway(config, listeners=("v4", "v6"))
    clients = []
    for name, host in (("v4", "127.0.0.1"), ("v6", "::1")):
        c = RawClient(gw.ports[name], host=host)
        clients.append(c)
        c.upgrade("/echo")
        c.send(encode_frame(TEXT, name))
        assert c.read_message()[1] == name.encode()
    assert gw.wait_metric("wsgate_messages_total", 1, route="echo6",
                          direction="client_to_upstream") == 1
    assert gw.metric("wsgate_connections_active", listener="v4") == 1
    assert gw.metric("wsgate_connections_active", listener="v6") == 1


def run_cli(*args, timeout=10):
    return subprocess.run([WSGATE, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_version_and_help():
    version = run_cli("--version")
    assert version.returncode == 0 and re.search(r"\d+\.\d+", version.stdout + version.stderr)
    usage = run_cli("--help")
    assert usage.returncode == 0
    text = usage.stdout + usage.stderr
    for option in ("--config", "--check", "--log-level", "--version"):
        assert option in text


def quickstart_certificate():
    """The quick start's self-signed certificate, made as `make run` makes it (run/tls/)."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "quickstart-cert.sh")],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_check_accepts_every_example_config():
    examples = sorted(glob.glob(os.path.join(ROOT, "config", "examples", "*.yaml")))
    assert examples
    quickstart_certificate()  # the quick start's TLS listener reads it
    for path in examples:
        result = run_cli("--config", path, "--check")
        assert result.returncode == 0, f"{path}: {result.stderr}"


def test_check_reports_every_error_with_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""workers: many
admin: { adress: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
    routes:
      - name: r
        match: { path_prefix: nope }
        cluster: missing
clusters:
  - name: echo
    type: echo
""")
    result = run_cli("--config", str(bad), "--check")
    assert result.returncode == 1
    errors = {}
    for line in result.stderr.splitlines():
        m = re.match(rf"^{re.escape(str(bad))}:(\d+):(\d+): (\S+): (.+)$", line)
        if m:
            errors[m.group(3)] = (int(m.group(1)), int(m.group(2)), m.group(4))
    # Every error, each pointing at its own line.
    assert errors.get("workers", (0,))[0] == 1, result.stderr
    assert errors.get("admin.adress", (0,))[0] == 2, result.stderr
    assert errors.get("listeners[0].routes[0].match.path_prefix", (0,))[0] == 8, result.stderr
    assert errors.get("listeners[0].routes[0].cluster", (0,))[0] == 9, result.stderr
    assert "missing" in errors["listeners[0].routes[0].cluster"][2]


def test_check_reports_yaml_syntax_error_with_position(tmp_path):
    bad = tmp_path / "syntax.yaml"
    bad.write_text("workers: 2\nlisteners: [\n  - name: x\n")
    result = run_cli("--config", str(bad), "--check")
    assert result.returncode == 1
    assert re.search(rf"^{re.escape(str(bad))}:\d+:\d+: ", result.stderr, re.M), result.stderr


def test_missing_or_unreadable_config_fails(tmp_path):
    for path in (tmp_path / "absent.yaml", tmp_path):
        result = run_cli("--config", str(path), "--check")
        assert result.returncode != 0
        assert result.stderr.strip()


def test_bad_config_does_not_start(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(gateway_config("""      - name: r
        match: { path_prefix: /r }
        cluster: nowhere
"""))
    result = run_cli("--config", str(bad))
    assert result.returncode == 1
    assert f"{bad}:" in result.stderr


def test_backend_that_stops_reading_keeps_gateway_memory_bounded(start_gateway, backends):
    async def sleeper(ws, record):
        await asyncio.wait_for(ws.wait_closed(), 30)  # never reads a message
    # max_queue=1: the backend library itself stops reading once one message is queued.
    port, _ = backends.websocket(sleeper, max_queue=1, close_timeout=1)
    gw = start_gateway(app_config([port], workers=1))
    before = gw.rss_kib()
    c = RawClient(gw.port)
    c.upgrade("/app")
    frame = encode_frame(BINARY, b"c" * MIB)
    sent, blocked, peak = 0, False, before
    c.sock.settimeout(2)
    deadline = time.monotonic() + 15
    try:
        while sent < 300 and time.monotonic() < deadline:
            c.sock.sendall(frame)
            sent += 1
            peak = max(peak, gw.rss_kib())
    except socket.timeout:
        blocked = True  # the gateway stopped reading from the client
    for _ in range(4):
        time.sleep(0.25)
        peak = max(peak, gw.rss_kib())
    grown = peak - before
    print(f"client sent {sent} MiB, blocked={blocked}, rss {before} → {peak} KiB")
    assert blocked and sent < 300, "the client was never slowed down: nothing pushed back"
    assert grown < 30 * 1024, f"gateway RSS grew by {grown} KiB while the backend did not read"
    assert gw.metric("wsgate_backpressure_pauses_total", route="app",
                     direction="client_to_upstream") >= 1
    c.close()


def test_the_quick_start_serves_ws_and_wss_with_its_own_certificate(start_gateway):
    """The shipped quick-start config (on free ports) with the certificate `make run` makes:
    ws:// and wss:// echo through the built-in echo upstream, and a client that trusts that
    certificate (as the run script tells) verifies it for 127.0.0.1."""
    import ssl
    cert = quickstart_certificate()
    with open(os.path.join(ROOT, "config", "examples", "quickstart.yaml")) as f:
        text = f.read()
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:0", text)
    text = text.replace("../../run/tls/", os.path.join(ROOT, "run", "tls") + "/")
    gw = start_gateway(text, listeners=("public", "secure"))
    context = ssl.create_default_context(cafile=cert)

    async def echo(url, **kwargs):
        async with wscompat.connect(url, open_timeout=5, **kwargs) as ws:
            await ws.send("over " + url.split(":")[0])
            return await asyncio.wait_for(ws.recv(), 5)

    assert run(echo(f"ws://127.0.0.1:{gw.ports['public']}/echo")) == "over ws"
    assert run(echo(f"wss://127.0.0.1:{gw.ports['secure']}/echo", ssl=context)) == "over wss"
