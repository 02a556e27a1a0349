"""`/metrics` counts what was sent, live, with the names and labels operators alert on, and the
output passes `promtool check metrics`."""
import os
import re
import shutil
import subprocess

from conftest import ROOT, dead_port, gateway_config, wait_for
from wsproto import BINARY, CLOSE, CONTINUATION, TEXT, RawClient, close_payload, encode_frame

FAMILIES = {
    "wsgate_connections_active": ("gauge", {"listener"}),
    "wsgate_connections_total": ("counter", {"listener", "outcome"}),
    "wsgate_handshake_rejections_total": ("counter", {"listener", "reason"}),
    "wsgate_messages_total": ("counter", {"route", "direction"}),
    "wsgate_frames_total": ("counter", {"route", "direction"}),
    "wsgate_bytes_total": ("counter", {"route", "direction"}),
    "wsgate_close_codes_total": ("counter", {"route", "side", "code"}),
    "wsgate_upstream_connect_failures_total": ("counter", {"cluster"}),
    "wsgate_filter_rejections_total": ("counter", {"route", "filter", "reason"}),
    "wsgate_relay_buffer_bytes": ("gauge", set()),
}

C2U, U2C = "client_to_upstream", "upstream_to_client"


def config(backend_port):
    routes = """      - name: echo
        match: { path_prefix: /echo }
        cluster: echo
      - name: app
        match: { path_prefix: /app }
        cluster: app
        filters:
          - origin: { allow: ["https://ok.example.com"] }
          - message_size: { max_message_bytes: 2000 }
      - name: dead
        match: { path_prefix: /dead }
        cluster: dead
"""
    clusters = f"""  - name: app
    endpoints: ["127.0.0.1:{backend_port}"]
  - name: dead
    endpoints: ["127.0.0.1:{dead_port()}", "127.0.0.1:{dead_port()}"]
    connect_timeout: 1s
"""
    return gateway_config(routes, clusters)


def refuse(gw, status, path, **kwargs):
    c = RawClient(gw.port)
    c.request(path, **kwargs)
    assert c.read_response()[0] == status
    c.wait_end(5)


def test_metrics_count_what_was_sent_and_pass_promtool(start_gateway, backends):
    port, record = backends.echo(ping_interval=None)
    gw = start_gateway(config(port))
    ok = {"Origin": "https://ok.example.com"}
    m = gw.metric

    # A session on /app: three binary messages, one fragmented text message.
    c = RawClient(gw.port)
    c.upgrade("/app", headers=ok)
    for size in (10, 100, 1000):
        c.send(encode_frame(BINARY, b"m" * size))
        assert c.read_message()[1] == b"m" * size
    c.send(encode_frame(TEXT, "ab", fin=False) + encode_frame(CONTINUATION, "cd"))
    assert c.read_message()[1] == b"abcd"
    # Counted live: the session is still open. Client frames are masked (2 + 4 header bytes,
    # 4 + 4 from 126 bytes up); the backend's are not (2, or 4 from 126 bytes up).
    assert gw.wait_metric("wsgate_messages_total", 4, route="app", direction=U2C) == 4
    assert m("wsgate_messages_total", route="app", direction=C2U) == 4
    assert m("wsgate_frames_total", route="app", direction=C2U) == 5
    assert m("wsgate_frames_total", route="app", direction=U2C) == 4
    assert m("wsgate_bytes_total", route="app", direction=C2U) == \
        (6 + 10) + (6 + 100) + (8 + 1000) + (6 + 2) + (6 + 2)
    assert m("wsgate_bytes_total", route="app", direction=U2C) == \
        (2 + 10) + (2 + 100) + (4 + 1000) + (2 + 4)
    assert m("wsgate_connections_active", listener="public") == 1
    c.send(encode_frame(CLOSE, close_payload(4001, "bye")))
    assert c.read_close() == (4001, "bye")
    assert c.wait_end(5) == "fin"
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="client",
                          code="4xxx") == 1
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="upstream",
                          code="4xxx") == 1
    # Close frames are frames too: 2 + 4 + 5 bytes up, 2 + 5 down.
    assert m("wsgate_frames_total", route="app", direction=C2U) == 6
    assert gw.wait_metric("wsgate_bytes_total", 1146 + 11, route="app", direction=C2U) == \
        1146 + 11
    assert m("wsgate_bytes_total", route="app", direction=U2C) == 1124 + 7

    # A session on the built-in echo.
    c = RawClient(gw.port)
    c.upgrade("/echo")
    c.send(encode_frame(TEXT, "x" * 200))
    assert c.read_message()[1] == b"x" * 200
    assert gw.wait_metric("wsgate_messages_total", 1, route="echo", direction=U2C) == 1
    assert m("wsgate_bytes_total", route="echo", direction=C2U) == 8 + 200
    c.close()  # vanishes: the gateway ends the session

    # Handshake rejections, by reason.
    refuse(gw, 404, "/nowhere")
    refuse(gw, 404, "/nowhere/else")
    refuse(gw, 400, "/app", method="POST")
    refuse(gw, 426, "/app", headers={"Sec-WebSocket-Version": "7"})
    refuse(gw, 403, "/app", headers={"Origin": "https://evil.example.com"})
    refuse(gw, 502, "/dead")
    reasons = {"no_route": 2, "bad_method": 1, "unsupported_ws_version": 1, "origin": 1,
               "upstream_unavailable": 1}
    for reason, n in reasons.items():
        assert gw.wait_metric("wsgate_handshake_rejections_total", n, listener="public",
                              reason=reason) == n, reason
    assert m("wsgate_filter_rejections_total", route="app", filter="origin",
             reason="origin_not_allowed") == 1
    assert m("wsgate_upstream_connect_failures_total", cluster="dead") == 2
    assert m("wsgate_upstream_connect_failures_total", cluster="app") == 0

    # A message over the route's message_size limit.
    c = RawClient(gw.port)
    c.upgrade("/app", headers=ok)
    c.send(encode_frame(BINARY, b"o" * 3000))
    assert c.read_close()[0] == 1009
    assert gw.wait_metric("wsgate_filter_rejections_total", 1, route="app",
                          filter="message_size", reason="message_too_big") == 1
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="gateway",
                          code="1009") == 1
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="gateway",
                          code="1001") == 1
    c.close()

    assert gw.wait_idle() == 0
    assert gw.wait_metric("wsgate_connections_total", 3, listener="public",
                          outcome="relayed") == 3
    assert m("wsgate_connections_total", listener="public", outcome="rejected") == 5
    assert m("wsgate_connections_total", listener="public", outcome="upstream_error") == 1
    assert len(record["messages"]) == 4

    text = gw.metrics_text()
    check_families(text)
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    check = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr + text


def check_families(text):
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name, (kind, labels) in FAMILIES.items():
        assert types.get(name) == kind, f"{name}: TYPE {types.get(name)}, want {kind}"
        samples = re.findall(rf"^{name}(?:\{{([^}}]*)\}})? \S+$", text, re.M)
        assert samples, f"no sample of {name}"
        for sample in samples:
            have = set(re.findall(r'(\w+)="', sample))
            assert labels <= have, f"{name}{{{sample}}} lacks {labels - have}"
    for direction in re.findall(r'direction="([^"]*)"', text):
        assert direction in (C2U, U2C)
    for side in re.findall(r'side="([^"]*)"', text):
        assert side in ("client", "upstream", "gateway")


def test_docs_list_exactly_the_exported_families_with_their_types_and_labels(start_gateway):
    gw = start_gateway(gateway_config("""      - name: echo
        match: { path_prefix: /echo }
        cluster: echo
"""))
    c = RawClient(gw.port)  # one session, so that families with labels have a sample
    c.upgrade("/echo")
    c.send(encode_frame(TEXT, "x"))
    assert c.read_message()[1] == b"x"
    text = gw.metrics_text()
    exported = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    with open(os.path.join(ROOT, "docs", "metrics.md")) as f:
        rows = re.findall(r"^\| `(wsgate_\w+)` \| (\w+) \| ([^|]*) \|", f.read(), re.M)
    documented = {name: kind for name, kind, _ in rows}
    assert documented == exported, "docs/metrics.md and /metrics differ"
    for name, _, labels in rows:
        want = set(re.findall(r"`(\w+)`", labels))
        for sample in re.findall(rf"^{name}(?:\{{([^}}]*)\}})? \S+$", text, re.M):
            assert set(re.findall(r'(\w+)="', sample)) == want, f"{name}{{{sample}}}: want {want}"


def test_metrics_sum_sessions_on_every_worker(start_gateway):
    gw = start_gateway(gateway_config("""      - name: echo
        match: { path_prefix: /echo }
        cluster: echo
""", workers=2))
    clients = []
    for i in range(20):  # SO_REUSEPORT spreads these over both workers
        c = RawClient(gw.port)
        c.upgrade("/echo")
        c.send(encode_frame(TEXT, "x"))
        assert c.read_message()[1] == b"x"
        clients.append(c)
    assert gw.metric("wsgate_connections_active", listener="public") == 20
    assert gw.wait_metric("wsgate_messages_total", 20, route="echo", direction=C2U) == 20
    assert gw.metric("wsgate_messages_total", route="echo", direction=U2C) == 20
    for c in clients:
        c.close()
    assert gw.wait_idle() == 0
    assert wait_for(lambda: gw.metric("wsgate_connections_total", outcome="relayed") == 20)
