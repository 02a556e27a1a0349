"""Drain (issue 20): on SIGTERM/SIGINT or POST /drain the gateway stops accepting, /ready
answers 503 at once, and every live session gets 1001 Going Away, spread over two thirds of
drain.timeout so that clients do not all reconnect in the same second; both sides get their
close; the process exits 0 once none is left."""
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import WSGATE, app_config, wait_for
from wsproto import CLOSE, TEXT, RawClient, close_payload, encode_frame, parse_close


def drain_config(port, timeout="3s", workers=2):
    return "drain: { timeout: %s }\n" % timeout + app_config([port], workers=workers)


def open_sessions(gw, n):
    clients = []
    for i in range(n):
        c = RawClient(gw.port)
        c.upgrade("/app")
        c.send(encode_frame(TEXT, f"m{i}"))
        assert c.read_message()[1] == f"m{i}".encode()
        clients.append(c)
    return clients


def await_closes(clients, timeout):
    """Each client reads until its close, answers it (completing the closing handshake) and
    records (arrival time, code, reason); in threads, so that arrival times are true."""
    got = [None] * len(clients)

    def one(i, c):
        try:
            code, reason = c.read_close(timeout=timeout)
            got[i] = (time.monotonic(), code, reason)
            c.send(encode_frame(CLOSE, close_payload(code)))
        except Exception as e:  # recorded as missing
            got[i] = (time.monotonic(), None, repr(e))
    threads = [threading.Thread(target=one, args=(i, c), daemon=True)
               for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 2)
    return got


def post(gw, path):
    request = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}{path}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status, r.read().decode()


def test_sigterm_spreads_1001_over_the_drain_and_exits_0(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(drain_config(port, "3s"))
    clients = open_sessions(gw, 100)
    start = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: gw.admin("/ready")[0] == 503, timeout=0.5), "/ready still 200"
    got = await_closes(clients, timeout=4)
    missing = [g for g in got if g[1] != 1001]
    assert not missing, missing[:5]
    times = sorted(t - start for t, _, _ in got)
    assert times[-1] <= 3.0, f"the last close came {times[-1]:.2f} s after SIGTERM"
    # Spread over about 2 s: not all at once, and no half second carries most of them.
    assert times[-1] - times[0] >= 1.2, times
    windows = [sum(1 for t in times if w / 2 <= t < (w + 1) / 2) for w in range(6)]
    assert max(windows) <= 40, windows
    assert all(reason == "server shutting down" for _, _, reason in got)
    # The backend got its close too, for every session.
    assert wait_for(lambda: len(record["close_codes"]) == 100, timeout=3)
    assert all(code == 1001 for code, _ in record["close_codes"])
    gw.proc.wait(3)
    assert gw.proc.returncode == 0
    assert "draining" in gw.log()
    # Each worker said which listener and route its sessions were on, and they add up.
    drained = [int(n) for n in re.findall(
        r"worker \d+: draining (\d+) session\(s\) of listener public, route app", gw.log())]
    assert sum(drained) == 100, drained
    for c in clients:
        assert c.wait_end(2) in ("fin", "reset")


def test_new_connections_are_refused_while_draining(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(drain_config(port, "10s"))
    clients = open_sessions(gw, 2)
    assert post(gw, "/drain") == (200, "draining\n")
    assert wait_for(lambda: gw.admin("/ready")[0] == 503, timeout=1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=2).recv(1)
    got = await_closes(clients, timeout=8)
    assert [g[1] for g in got] == [1001, 1001]


def test_post_drain_closes_every_session_and_keeps_the_process_up(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(drain_config(port, "1500ms"))
    clients = open_sessions(gw, 20)
    assert gw.metric("wsgate_draining") == 0
    assert post(gw, "/drain") == (200, "draining\n")
    assert post(gw, "/drain") == (200, "already draining\n")
    got = await_closes(clients, timeout=3)
    assert all(g[1] == 1001 for g in got), got
    assert wait_for(lambda: len(record["close_codes"]) == 20, timeout=3)
    assert gw.proc.poll() is None, "POST /drain must not end the process"
    assert gw.admin("/healthz")[0] == 200
    assert gw.admin("/ready")[0] == 503
    assert gw.metric("wsgate_draining") == 1
    assert gw.wait_metric("wsgate_drain_closed_sessions_total", 20) == 20
    assert gw.wait_idle() == 0


def test_whatever_is_left_at_the_drain_timeout_is_closed(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(drain_config(port, "1s"))
    c = RawClient(gw.port)
    c.upgrade("/app")
    start = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    # The client never answers the 1001: the gateway waits out the drain, no longer.
    assert c.read_close(timeout=2)[0] == 1001
    gw.proc.wait(5)
    took = time.monotonic() - start
    assert gw.proc.returncode == 0
    assert took <= 2.0, f"exited {took:.2f} s after SIGTERM"
    assert c.wait_end(2) in ("fin", "reset")


def test_drain_timeout_0_stops_at_once(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(drain_config(port, "0s"))
    open_sessions(gw, 1)
    code, took = gw.stop(drain_wait=1)
    assert code == 0 and took < 1, took
    assert "a second signal stops at once" not in gw.log()


def test_drain_settings_are_validated_at_load(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("drain: { timeout: 2h, grace: 1s }\n" + app_config([1]))
    out = subprocess.run([WSGATE, "--check", "--config", str(path)], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode != 0
    assert "drain" in out.stderr and "grace" in out.stderr
    path.write_text("drain: { timeout: 2h }\n" + app_config([1]))
    out = subprocess.run([WSGATE, "--check", "--config", str(path)], capture_output=True,
                         text=True, timeout=10)
    assert "drain.timeout" in out.stderr and "at most 1h" in out.stderr
