"""What an operator relies on: bounded memory, no descriptor leaks, metrics, admin, --check."""
import asyncio
import glob
import os
import re
import subprocess
import time

import websockets

from conftest import ROOT, WSGATE, app_config, gateway_config, run
from wsproto import RawClient, close_payload, encode_frame


def test_client_that_stops_reading_keeps_gateway_memory_bounded(start_gateway, backends):
    flooded = {"sent": 0}

    async def flood(ws, record):
        chunk = b"f" * (1 << 20)
        try:
            for _ in range(400):  # at most 400 MiB, bounded in time below
                await asyncio.wait_for(ws.send(chunk), 4)
                flooded["sent"] += 1
        except asyncio.TimeoutError:
            pass  # blocked by backpressure: what we want
    port, _ = backends.websocket(flood)
    gw = start_gateway(app_config([port], workers=1))
    before = gw.rss_kib()
    c = RawClient(gw.port)
    c.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 65536)
    c.upgrade("/app")  # then never reads
    deadline = time.monotonic() + 15
    last = -1
    while time.monotonic() < deadline:
        time.sleep(1)
        if flooded["sent"] == last:
            break  # the backend is blocked: backpressure reached it
        last = flooded["sent"]
    grown = gw.rss_kib() - before
    assert flooded["sent"] < 400, "the backend was never slowed down"
    assert grown < 30 * 1024, f"gateway RSS grew by {grown} KiB"
    assert gw.metric("wsgate_backpressure_pauses_total", route="app",
                     direction="upstream_to_client") >= 1
    c.close()


def test_hundreds_of_sessions_leak_no_file_descriptor(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port]))

    async def sessions(n, path):
        for i in range(n):
            async with websockets.connect(f"ws://127.0.0.1:{gw.port}{path}") as ws:
                await ws.send("x")
                await ws.recv()
    run(sessions(5, "/app"))
    run(sessions(5, "/echo"))
    time.sleep(0.3)
    baseline = gw.fd_count()
    run(sessions(150, "/app"), timeout=120)
    run(sessions(150, "/echo"), timeout=120)
    # Some clients also vanish mid-session and mid-handshake.
    for _ in range(20):
        c = RawClient(gw.port)
        c.upgrade("/app")
        c.close()
        c = RawClient(gw.port)
        c.send("GET /app HTTP/1.1\r\n")
        c.close()
    deadline = time.monotonic() + 10
    while gw.metric("wsgate_connections_active") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.metric("wsgate_connections_active") == 0
    assert gw.fd_count() <= baseline + 2, f"{gw.fd_count()} descriptors, {baseline} before"
    assert gw.metric("wsgate_connections_total", outcome="relayed") >= 330


def test_metrics_count_what_was_sent_and_pass_promtool(start_gateway):
    gw = start_gateway(app_config([1]))
    c = RawClient(gw.port)
    c.upgrade("/echo")
    for size in (10, 100, 1000):
        c.send(encode_frame(2, b"m" * size))
        assert len(c.read_frame()[3]) == size
        # Live: counted before the session ends.
    assert gw.metric("wsgate_messages_total", route="echo", direction="client_to_upstream") == 3
    # Masked client frames: 2 (+2 for 126..65535) + 4 mask bytes of header each.
    assert gw.metric("wsgate_bytes_total", route="echo", direction="client_to_upstream") == \
        (6 + 10) + (6 + 100) + (8 + 1000)
    assert gw.metric("wsgate_bytes_total", route="echo", direction="upstream_to_client") == \
        (2 + 10) + (2 + 100) + (4 + 1000)
    assert gw.metric("wsgate_connections_active", listener="public") == 1
    c.send(encode_frame(8, close_payload(1000, "done")))
    assert c.read_close() == (1000, "")
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="echo", side="client",
                          code="1000") == 1
    r = RawClient(gw.port)
    r.request("/none")
    assert r.read_response()[0] == 404
    _, text = gw.admin("/metrics")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    for name in ["wsgate_connections_active", "wsgate_connections_total",
                 "wsgate_handshake_rejections_total", "wsgate_messages_total",
                 "wsgate_bytes_total", "wsgate_close_codes_total",
                 "wsgate_upstream_connect_failures_total", "wsgate_filter_rejections_total"]:
        assert f"# TYPE {name} " in text


def test_admin_health_and_readiness(start_gateway):
    gw = start_gateway(app_config([1]))
    assert gw.admin("/healthz") == (200, "ok\n")
    assert gw.admin("/ready") == (200, "ready\n")


def test_ipv6_listener(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port], address="[::1]:0"))
    assert "listening on [::1]:" in gw.log()
    c = RawClient(gw.port, host="::1")
    c.upgrade("/app")
    c.send(encode_frame(1, "over v6"))
    assert c.read_frame()[3] == b"over v6"


def test_check_accepts_every_example_config():
    examples = sorted(glob.glob(os.path.join(ROOT, "config", "examples", "*.yaml")))
    assert examples
    for path in examples:
        result = subprocess.run([WSGATE, "--config", path, "--check"], capture_output=True,
                                text=True, timeout=10)
        assert result.returncode == 0, result.stderr


def test_check_reports_every_error_with_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(gateway_config("""      - name: r
        match: { path_prefix: nope }
        cluster: missing
""", "", workers=0).replace("address: 127.0.0.1:0 }", "adress: 127.0.0.1:0 }"))
    result = subprocess.run([WSGATE, "--config", str(bad), "--check"], capture_output=True,
                            text=True, timeout=10)
    assert result.returncode == 1
    lines = [l for l in result.stderr.splitlines() if re.match(r"^\S+:\d+:\d+: \S+: ", l)]
    text = "\n".join(lines)
    assert f"{bad}:2:10: workers: must be an integer from 1 to 256" in text
    assert 'admin.adress: unknown key "adress" (did you mean "address"?)' in text
    assert 'path_prefix: must start with "/"' in text
    assert 'cluster: unknown cluster "missing" (known: echo)' in text
    assert len(lines) == 4


def test_unreadable_config_is_reported(tmp_path):
    result = subprocess.run([WSGATE, "--config", str(tmp_path), "--check"], capture_output=True,
                            text=True, timeout=10)
    assert result.returncode != 0
