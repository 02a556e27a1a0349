"""A real Prometheus server (Debian's `prometheus`) scrapes the gateway's admin listener every
second and ends up with exactly what was sent, with the target up and no scrape error."""
import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request

import pytest

import wscompat
from conftest import Gateway, gateway_config, run, tool, wait_for
from wsproto import RawClient

JOB = "wsgate"
SESSIONS, MESSAGES_PER_SESSION, REJECTED = 3, 7, 2


def free_port():
    """A loopback port nothing listens on right now (Prometheus needs one given up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """`prometheus` on 127.0.0.1 with its storage in a temp dir, scraping `target` every 1 s."""

    stop = Gateway.stop  # SIGTERM by PID, bounded wait, then SIGKILL

    def __init__(self, target):
        binary = tool("prometheus", "prometheus")
        self.dir = tempfile.mkdtemp(prefix="wsgate-prometheus-")
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["{target}"]
""")
        self.log_lines = []
        for _ in range(3):  # the port was free a moment ago; another process may take it
            self.port = free_port()
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}",
                 f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, errors="replace")
            self.reader = threading.Thread(
                target=lambda proc=self.proc: self.log_lines.extend(proc.stderr), daemon=True)
            self.reader.start()
            if wait_for(lambda: self.ready() or self.proc.poll() is not None, timeout=15) \
                    and self.ready():
                return
            self.stop()
            if "address already in use" not in self.log():
                break
        shutil.rmtree(self.dir, ignore_errors=True)
        raise AssertionError(f"prometheus did not become ready (exit {self.proc.returncode}):"
                             f"\n{self.log()}")

    def log(self):
        return "".join(self.log_lines)

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path, **params):
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}{query}",
                                    timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def value(self, promql):
        """The value of a one-sample instant query, or None while it has no sample."""
        result = self.api("query", query=promql)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def targets(self):
        return [t for t in self.api("targets", state="active")["activeTargets"]
                if t["labels"].get("job") == JOB]


@pytest.fixture
def prometheus():
    """prometheus(target) → a started Prometheus; each is stopped at teardown and must exit 0
    on SIGTERM."""
    started = []

    def start(target):
        started.append(Prometheus(target))
        return started[-1]
    yield start
    for server in started:
        code, took = server.stop()
        print(f"prometheus stopped in {took:.2f} s")
        shutil.rmtree(server.dir, ignore_errors=True)
        assert code == 0, f"prometheus exited with {code}:\n{server.log()}"


def test_prometheus_scrapes_exactly_what_was_sent(start_gateway, prometheus):
    gw = start_gateway(gateway_config("""      - name: echo
        match: { path_prefix: /echo }
        cluster: echo
"""))
    prom = prometheus(f"127.0.0.1:{gw.admin_port}")

    async def sessions():
        for s in range(SESSIONS):
            async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/echo", open_timeout=5,
                                        close_timeout=5) as ws:
                for i in range(MESSAGES_PER_SESSION):
                    message = f"s{s}m{i}" if i % 2 else f"s{s}m{i}".encode()
                    await ws.send(message)
                    assert await asyncio.wait_for(ws.recv(), 5) == message
    run(sessions())
    for _ in range(REJECTED):
        c = RawClient(gw.port)
        c.request("/nowhere")
        assert c.read_response()[0] == 404
        c.wait_end(5)
    assert gw.wait_idle() == 0

    sent = SESSIONS * MESSAGES_PER_SESSION
    expected = {
        f'wsgate_messages_total{{job="{JOB}",route="echo",direction="client_to_upstream"}}':
            sent,
        f'wsgate_messages_total{{job="{JOB}",route="echo",direction="upstream_to_client"}}':
            sent,
        f'wsgate_connections_total{{job="{JOB}",listener="public",outcome="relayed"}}':
            SESSIONS,
        f'wsgate_connections_total{{job="{JOB}",listener="public",outcome="rejected"}}':
            REJECTED,
        f'wsgate_handshake_rejections_total{{job="{JOB}",listener="public",'
        f'reason="no_route"}}': REJECTED,
        f'wsgate_connections_active{{job="{JOB}",listener="public"}}': 0,
        f'up{{job="{JOB}"}}': 1,
    }
    # Scraped every second; the target itself shows up within Prometheus' 5 s discovery tick.
    got = {}

    def settled():
        got.update({q: prom.value(q) for q in expected})
        return got == expected
    wait_for(settled, timeout=30, interval=0.25)
    assert got == expected, f"prometheus log:\n{prom.log()}"

    [target] = prom.targets()
    assert target["health"] == "up", target
    assert target["lastError"] == "", target
    assert target["scrapeUrl"] == f"http://127.0.0.1:{gw.admin_port}/metrics"
    # Prometheus read the exposition's TYPE lines, and logged no failed scrape.
    metadata = prom.api("targets/metadata", match_target=f'{{job="{JOB}"}}')
    types = {m["metric"]: m["type"] for m in metadata}
    assert types["wsgate_messages_total"] == "counter"
    assert types["wsgate_connections_active"] == "gauge"
    assert prom.value(f'scrape_samples_scraped{{job="{JOB}"}}') > 0
    # Every scrape so far succeeded, not only the last one.
    assert prom.value(f'min_over_time(up{{job="{JOB}"}}[1m])') == 1
    assert "scrape" not in prom.log().lower(), prom.log()
