"""Reload (issue 20): SIGHUP and POST /reload load the file again; a valid config serves new
connections at once while every live session keeps the route and cluster it started with and
loses nothing; an invalid one changes nothing, and says why."""
import asyncio
import json
import shutil
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

from conftest import app_config, run, tls_connect, wait_for
from test_tls import secure_config
import wscompat
from wsproto import TEXT, RawClient, encode_frame

SESSIONS = 200


def two_clusters(port_a, port_b, use="a", workers=2):
    """/app routed to cluster `use` (a or b); both clusters defined."""
    config = app_config([port_a], workers=workers).replace("cluster: app", f"cluster: {use}")
    config = config.replace("connect_timeout: 1s", "connect_timeout: 5s")
    config = config.replace("\n  - name: app\n    endpoints", "\n  - name: a\n    endpoints", 1)
    return config + f"""  - name: b
    endpoints: ["127.0.0.1:{port_b}"]
    connect_timeout: 5s
    response_timeout: 3s
"""


def post(gw, path):
    request = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}{path}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rewrite(gw, text):
    with open(gw.config_path, "w") as f:
        f.write(text)


async def chatter(url, stop, counts, errors, up):
    """One session sending a numbered message every 20 ms and checking each echo, until `stop`;
    it joins `up` once its first message has come back."""
    try:
        async with wscompat.connect(url) as ws:
            i = 0
            while not stop.is_set():
                await ws.send(f"m{i}")
                reply = await asyncio.wait_for(ws.recv(), 10)
                if reply != f"m{i}":
                    errors.append(f"sent m{i}, got {reply!r}")
                    return
                if i == 0:
                    up.append(1)
                i += 1
                counts.append(1)
                await asyncio.sleep(0.02)
    except Exception as e:  # a dropped session
        errors.append(repr(e))


def under_load(gw, during):
    """Runs SESSIONS chattering sessions, calls `during()` once they are all up, then stops them;
    returns (messages echoed, errors)."""
    url = f"ws://127.0.0.1:{gw.port}/app"

    async def main():
        stop = asyncio.Event()
        counts, errors, up = [], [], []
        tasks = []
        for _ in range(SESSIONS // 20):  # in steps: the backend's listen backlog is 100
            tasks += [asyncio.create_task(chatter(url, stop, counts, errors, up))
                      for _ in range(20)]
            await asyncio.sleep(0.05)
        # Every session through the gateway before `during()`: on a loaded machine the last
        # ones can still be connecting when the first have echoed many times.
        deadline = time.monotonic() + 30
        while (len(up) < SESSIONS or len(counts) < SESSIONS * 2) and not errors:
            assert time.monotonic() < deadline, f"{len(up)} of {SESSIONS} sessions up after 30 s"
            await asyncio.sleep(0.05)
        before = len(counts)
        await asyncio.get_running_loop().run_in_executor(None, during)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        return len(counts) - before, errors
    return run(main(), timeout=120)


def test_a_reload_moves_new_sessions_and_keeps_live_ones(start_gateway, backends):
    port_a, record_a = backends.echo()
    port_b, record_b = backends.echo()
    gw = start_gateway(two_clusters(port_a, port_b, "a"))

    def reload_to_b():
        rewrite(gw, two_clusters(port_a, port_b, "b"))
        assert post(gw, "/reload") == (200, "reloaded\n")
        # New sessions reach the new cluster at once.
        async def one():
            async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app") as ws:
                await ws.send("new")
                assert await ws.recv() == "new"
        run(one())
        assert record_b["connections"] == 1

    echoed, errors = under_load(gw, reload_to_b)
    assert not errors, errors[:5]
    assert echoed > SESSIONS, echoed
    # The live ones stayed on cluster a, every message answered.
    assert record_a["connections"] == SESSIONS
    assert record_b["connections"] == 1
    assert gw.metric("wsgate_config_reloads_total", result="success") == 1


def test_twenty_reloads_in_a_row_under_load_drop_nothing(start_gateway, backends):
    port_a, record_a = backends.echo()
    port_b, _ = backends.echo()
    gw = start_gateway(two_clusters(port_a, port_b, "a"))

    def reloads():
        for i in range(20):
            rewrite(gw, two_clusters(port_a, port_b, "b" if i % 2 == 0 else "a"))
            if i % 2 == 0:
                gw.proc.send_signal(signal.SIGHUP)
                assert wait_for(lambda: gw.metric("wsgate_config_reloads_total",
                                                  result="success") == i + 1, timeout=5)
            else:
                assert post(gw, "/reload")[0] == 200
    echoed, errors = under_load(gw, reloads)
    assert not errors, errors[:5]
    assert echoed > SESSIONS
    assert gw.metric("wsgate_config_reloads_total", result="success") == 20
    assert gw.metric("wsgate_config_reloads_total", result="failure") == 0
    assert record_a["connections"] == SESSIONS


def test_a_bad_file_changes_nothing_and_says_why(start_gateway, backends):
    port_a, record_a = backends.echo()
    port_b, record_b = backends.echo()
    good = two_clusters(port_a, port_b, "a")
    gw = start_gateway(good)
    hash_before = json.loads(gw.admin("/config")[1])["hash"]
    for bad, expect in [("listeners: [ {", "YAML syntax error"),
                        (good.replace("cluster: a", "cluster: nowhere"), "nowhere")]:
        rewrite(gw, bad)
        status, body = post(gw, "/reload")
        assert status == 400, body
        assert expect in body and "the old one serves" in body, body
        config = json.loads(gw.admin("/config")[1])
        assert expect in config["last_reload_error"]
        assert config["hash"] == hash_before

        async def still_a():
            async with wscompat.connect(f"ws://127.0.0.1:{gw.port}/app") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
        run(still_a())
    assert record_b["connections"] == 0 and record_a["connections"] == 2
    assert gw.metric("wsgate_config_reloads_total", result="failure") == 2
    assert "reload:" in gw.log()
    # SIGHUP with a bad file: the same, counted and logged.
    gw.proc.send_signal(signal.SIGHUP)
    assert gw.wait_metric("wsgate_config_reloads_total", 3, result="failure") == 3


def test_config_shows_the_active_file_with_secrets_redacted(start_gateway, backends):
    port_a, _ = backends.echo()
    port_b, _ = backends.echo()
    gw = start_gateway(two_clusters(port_a, port_b, "a"))
    config = json.loads(gw.admin("/config")[1])
    assert config["source"] == gw.config_path
    assert config["last_reload_error"] is None
    assert config["config"]["clusters"][1]["name"] == "a"
    assert gw.metric("wsgate_config_info", hash=config["hash"]) == 1
    before = gw.metric("wsgate_config_last_reload_success_timestamp_seconds")
    assert abs(before - time.time()) < 60
    rewrite(gw, two_clusters(port_a, port_b, "b") + "# api_token: kept out of sight\n")
    assert post(gw, "/reload")[0] == 200
    after = json.loads(gw.admin("/config")[1])
    assert after["hash"] != config["hash"]
    assert gw.metric("wsgate_config_info", hash=after["hash"]) == 1
    assert gw.metric("wsgate_config_info", hash=config["hash"]) == 0


def test_settings_that_cannot_change_live_are_reported(start_gateway, backends):
    port_a, _ = backends.echo()
    port_b, _ = backends.echo()
    gw = start_gateway(two_clusters(port_a, port_b, "a", workers=2))
    rewrite(gw, two_clusters(port_a, port_b, "b", workers=3))
    status, body = post(gw, "/reload")
    assert status == 200 and "workers: 2 → 3 needs a restart" in body, body


def listeners_config(port, listeners):
    """Routes /app to the echo backend on each listener of `listeners` [(name, address)]."""
    text = "workers: 2\nadmin: { address: 127.0.0.1:0 }\nlisteners:\n"
    for name, address in listeners:
        text += f"""  - name: {name}
    address: "{address}"
    routes:
      - name: app-{name}
        match: {{ path_prefix: / }}
        cluster: app
"""
    return text + f"""clusters:
  - name: app
    endpoints: ["127.0.0.1:{port}"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echoes(port, text="hi"):
    c = RawClient(port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, text))
    assert c.read_message()[1] == text.encode()
    return c


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_listeners_are_added_removed_and_moved_by_a_reload(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(listeners_config(port, [("public", "127.0.0.1:0"),
                                               ("second", "127.0.0.1:0")]),
                       listeners=("public", "second"))
    old_public, second = gw.ports["public"], gw.ports["second"]
    live_public, live_second = echoes(old_public), echoes(second)

    # Removed: stops accepting, its session lives on.
    rewrite(gw, listeners_config(port, [("public", "127.0.0.1:0")]))
    assert post(gw, "/reload") == (200, "reloaded\n")
    assert wait_for(lambda: refused(second), timeout=3)
    live_second.send(encode_frame(TEXT, "still"))
    assert live_second.read_message()[1] == b"still"

    # Added: accepts at once.
    rewrite(gw, listeners_config(port, [("public", "127.0.0.1:0"), ("third", "127.0.0.1:0")]))
    assert post(gw, "/reload") == (200, "reloaded\n")
    assert wait_for(lambda: "third" in gw.ports, timeout=3), gw.log()[-2000:]
    echoes(gw.ports["third"]).close()
    echoes(old_public).close()  # kept: the same sockets

    # Moved: accepts on its new address, no longer on its old one; its sessions live on.
    new_port = free_port()
    rewrite(gw, listeners_config(port, [("public", f"127.0.0.1:{new_port}"),
                                        ("third", "127.0.0.1:0")]))
    assert post(gw, "/reload") == (200, "reloaded\n")
    echoes(new_port).close()
    assert wait_for(lambda: refused(old_public), timeout=3)
    live_public.send(encode_frame(TEXT, "moved"))
    assert live_public.read_message()[1] == b"moved"

    # A port in use fails the whole reload: nothing changes.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        rewrite(gw, listeners_config(port, [("public", f"127.0.0.1:{new_port}"),
                                            ("fourth", f"127.0.0.1:{busy}")]))
        status, body = post(gw, "/reload")
        assert status == 400 and "listener fourth: cannot listen" in body, body
    echoes(gw.ports["third"]).close()


def test_a_renewed_certificate_is_served_after_a_reload(start_gateway, backends, tls_certs,
                                                        tmp_path):
    port, _ = backends.echo()
    live = SimpleNamespace(cert=str(tmp_path / "live.pem"), key=str(tmp_path / "live.key"))

    def install(cert):
        shutil.copyfile(cert.cert, live.cert)
        shutil.copyfile(cert.key, live.key)

    def served_leaf(gw):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = tls_connect(gw.ports["secure"], context, server_hostname="localhost")
        try:
            return sock.getpeercert(binary_form=True)
        finally:
            sock.close()

    def leaf_der(cert):
        with open(cert.leaf) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    install(tls_certs.loopback)
    gw = start_gateway(secure_config(tls_certs, [port], certificates=[(live, ["localhost"])]),
                       listeners=("secure",))
    assert served_leaf(gw) == leaf_der(tls_certs.loopback)
    install(tls_certs.loopback2)  # renewed on disk: nothing changes until a reload
    assert served_leaf(gw) == leaf_der(tls_certs.loopback)
    assert post(gw, "/reload") == (200, "reloaded\n")
    assert served_leaf(gw) == leaf_der(tls_certs.loopback2)


def test_connection_counts_carry_over_a_reload(start_gateway, backends):
    port_a, _ = backends.echo()
    port_b, _ = backends.echo()
    limited = two_clusters(port_a, port_b, "a").replace(
        "        cluster: a\n",
        "        cluster: a\n        filters:\n          - connection_limit: { per_route: 2 }\n")
    gw = start_gateway(limited)
    first, second = echoes(gw.port), echoes(gw.port)
    rewrite(gw, limited + "# reloaded\n")
    assert post(gw, "/reload") == (200, "reloaded\n")
    third = RawClient(gw.port)
    third.request("/app")
    status, headers, _ = third.read_response()
    assert status == 503, "the two sessions from before the reload no longer count"
    first.send(encode_frame(TEXT, "still here"))
    assert first.read_message()[1] == b"still here"
    first.close()
    assert wait_for(lambda: gw.metric("wsgate_connections_active") <= 2, timeout=5)
    echoes(gw.port).close()
    second.close()
