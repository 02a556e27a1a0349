"""A real browser as the WebSocket client: Debian's headless Chromium, driven by python3-selenium
and chromedriver, loads a page from a loopback HTTP server (so the page has a real origin) and
talks through wsgate to python3-websockets backends: echo with permessage-deflate negotiated end
to end, close codes both ways, and an origin the `origin` filter refuses; and over wss:// to a
TLS listener, with a subprotocol, the browser trusting the test certificate by its SPKI hash
alone (--ignore-certificate-errors-spki-list, never a flag that turns checks off)."""
import base64
import http.server
import os
import shutil
import sys
import tempfile
import threading

import pytest

from conftest import app_config, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
DIRECTIONS = ("client_to_upstream", "upstream_to_client")
TEXT = "héllo wsgate ✓ 🌍"  # multi-byte UTF-8, an astral character
BIG = bytes(range(256)) * 800  # 200 KiB, very compressible

# The page's `session`: one WebSocket at a time; what it receives is queued for `recv`.
# Binary messages cross the WebDriver boundary as base64.
PAGE = """<!doctype html>
<meta charset="utf-8"><title>wsgate browser test</title><link rel="icon" href="data:,">
<script>
"use strict";
function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000)
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
function fromBase64(b64) { return Uint8Array.from(atob(b64), c => c.charCodeAt(0)); }
function describe(data) {
  return typeof data === "string" ? {type: "text", data: data}
                                  : {type: "binary", b64: toBase64(new Uint8Array(data))};
}
window.session = {
  ws: null, inbox: [], events: [], wake: null, closed: null,
  // Resolves at open ({opened: true, extensions}) or, if it never opens, at close.
  open(url, protocols) {
    return new Promise(resolve => {
      const ws = this.ws = protocols === undefined ? new WebSocket(url)
                                                   : new WebSocket(url, protocols);
      ws.binaryType = "arraybuffer";
      this.inbox = []; this.events = [];
      this.closed = new Promise(closed => {
        ws.onclose = e => {
          this.events.push("close");
          const info = {code: e.code, reason: e.reason, wasClean: e.wasClean,
                        events: this.events.slice()};
          closed(info);
          resolve(Object.assign({opened: false}, info));
          this.poke();
        };
      });
      ws.onopen = () => {
        this.events.push("open");
        resolve({opened: true, extensions: ws.extensions, protocol: ws.protocol});
      };
      ws.onerror = () => this.events.push("error");
      ws.onmessage = e => { this.inbox.push(e.data); this.poke(); };
    });
  },
  poke() { const wake = this.wake; this.wake = null; if (wake) wake(); },
  send(message) {
    this.ws.send(message.type === "text" ? message.data : fromBase64(message.b64));
    return true;
  },
  recv() {
    return new Promise(resolve => {
      const check = () => {
        if (this.inbox.length) resolve(describe(this.inbox.shift()));
        else if (this.ws.readyState === WebSocket.CLOSED) resolve({type: "closed"});
        else this.wake = check;
      };
      check();
    });
  },
  close(code, reason) { this.ws.close(code, reason); return this.closed; },
  whenClosed() { return this.closed; },
};
</script>
"""

CALL = """const [method, args, done] = arguments;
Promise.resolve().then(() => window.session[method](...args))
  .then(done, e => done({js_error: String(e)}));"""


class Site:
    """An HTTP server on 127.0.0.1 (kernel-picked port) serving PAGE at `/`; its origin is
    `http://127.0.0.1:PORT`."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = PAGE.encode() if self.path == "/" else b"not found"
                self.send_response(200 if self.path == "/" else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def sites():
    """Two page servers: `allowed` (put in the gateway's allow list) and `other` (never)."""
    started = []
    try:
        started.append(Site())
        started.append(Site())
        yield dict(zip(("allowed", "other"), started))
    finally:
        for site in started:
            site.close()


@pytest.fixture(scope="module")
def browser(tls_certs):
    """Headless Chromium through chromedriver, with a fresh profile; quit at teardown. A missing
    chromium, chromedriver or selenium fails the tests, never skips them. It trusts one
    certificate besides the system's: the test `loopback` one, by the SHA-256 of its public key
    (the flag is honoured because the profile is given with --user-data-dir)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        assert os.access(path, os.X_OK), f"{path} is not installed (Debian package {package})"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"selenium is not importable by {sys.executable} ({e}); "
                    f"install Debian's python3-selenium")
    profile = tempfile.mkdtemp(prefix="wsgate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    trust = f"--ignore-certificate-errors-spki-list={tls_certs.spki(tls_certs.loopback)}"
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", trust]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(10)
        driver.set_script_timeout(10)  # bounds every session call below
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """PAGE loaded in the browser from `site`; each method runs the page's `session` method of
    the same name and waits (script timeout) for what it resolves to."""

    def __init__(self, driver, site):
        self.driver = driver
        driver.get(site.origin + "/")
        assert driver.execute_script("return typeof window.session") == "object"
        driver.get_log("browser")  # drop what earlier pages logged

    def call(self, method, *args):
        result = self.driver.execute_async_script(CALL, method, list(args))
        assert not (isinstance(result, dict) and "js_error" in result), result
        return result

    def open(self, url, protocols=None):
        if protocols is None:
            return self.call("open", url)
        return self.call("open", url, protocols)

    def send(self, message):
        if isinstance(message, str):
            return self.call("send", {"type": "text", "data": message})
        return self.call("send", {"type": "binary", "b64": base64.b64encode(message).decode()})

    def recv(self):
        got = self.call("recv")
        assert got["type"] != "closed", "the session closed instead of delivering a message"
        return got["data"] if got["type"] == "text" else base64.b64decode(got["b64"])

    def echo(self, message):
        self.send(message)
        return self.recv()

    def close(self, code, reason):
        return self.call("close", code, reason)

    def console(self):
        return [entry["message"] for entry in self.driver.get_log("browser")]


def gateway_allowing(start_gateway, port, site):
    """A gateway whose /app route leads to the backend on `port` and whose `origin` filter
    allows `site`'s origin, and no other."""
    return start_gateway(app_config([port], filters=[f'origin: {{ allow: ["{site.origin}"] }}']))


def extension_names(header):
    return [part.split(";")[0].strip() for part in header.split(",") if part.strip()]


def open_session(browser, site, gw):
    """The page from `site`, with a session open to the gateway's /app route."""
    page = Page(browser, site)
    opened = page.open(f"ws://127.0.0.1:{gw.port}/app")
    assert opened["opened"], f"the browser could not open the session: {opened}"
    return page, opened


def test_echo_from_the_browser_with_permessage_deflate(start_gateway, backends, browser, sites):
    port, record = backends.echo(compression="deflate")
    gw = gateway_allowing(start_gateway, port, sites["allowed"])
    page, opened = open_session(browser, sites["allowed"], gw)
    # Negotiated end to end: the browser's offer reached the backend, its answer came back.
    assert "permessage-deflate" in extension_names(opened["extensions"]), opened
    # The backend's handler records the connection once it runs, which can be after the 101
    # reached the browser.
    wait_for(lambda: record["extensions"], timeout=5)
    assert record["extensions"] == [["permessage-deflate"]]
    assert record["headers"][0].get("Origin") == sites["allowed"].origin

    assert page.echo(TEXT) == TEXT
    for direction in DIRECTIONS:
        assert gw.wait_metric("wsgate_messages_total", 1, route="app", direction=direction) == 1
    before = {d: gw.metric("wsgate_bytes_total", route="app", direction=d) for d in DIRECTIONS}

    assert page.echo(BIG) == BIG, "the 200 KiB binary message came back changed"
    assert record["messages"] == [TEXT, BIG], "the backend received other messages"
    for direction in DIRECTIONS:
        assert gw.wait_metric("wsgate_messages_total", 2, route="app", direction=direction) == 2
        wire = gw.metric("wsgate_bytes_total", route="app", direction=direction) - before[direction]
        # Compressed frames were relayed as they were: a fraction of the 200 KiB payload.
        assert 0 < wire < len(BIG) // 10, f"{direction}: {wire} wire bytes for {len(BIG)} B"

    closed = page.close(1000, "finished")
    assert (closed["code"], closed["reason"], closed["wasClean"]) == (1000, "finished", True)
    assert gw.wait_idle() == 0


def test_close_code_and_reason_from_the_browser_reach_the_backend(start_gateway, backends,
                                                                  browser, sites):
    port, record = backends.echo()
    gw = gateway_allowing(start_gateway, port, sites["allowed"])
    page, _ = open_session(browser, sites["allowed"], gw)
    assert page.echo("hi") == "hi"
    closed = page.close(4001, "bye")
    # The backend's answer to the close came back through the gateway to the browser.
    assert closed == {"code": 4001, "reason": "bye", "wasClean": True,
                      "events": ["open", "close"]}
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="upstream",
                          code="4xxx") == 1
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"] == [(4001, "bye")]
    assert gw.metric("wsgate_close_codes_total", route="app", side="client", code="4xxx") == 1


def test_close_code_and_reason_from_the_backend_reach_the_browser(start_gateway, backends,
                                                                  browser, sites):
    async def handler(ws, record):
        record["messages"].append(await ws.recv())
        await ws.close(4002, "done")
    port, record = backends.websocket(handler)
    gw = gateway_allowing(start_gateway, port, sites["allowed"])
    page, _ = open_session(browser, sites["allowed"], gw)
    page.send("go")
    closed = page.call("whenClosed")
    assert closed == {"code": 4002, "reason": "done", "wasClean": True,
                      "events": ["open", "close"]}
    assert gw.wait_metric("wsgate_close_codes_total", 1, route="app", side="client",
                          code="4xxx") == 1
    # The browser's answer (the same code and reason) completed the backend's handshake.
    assert record["messages"] == ["go"]
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"] == [(4002, "done")]
    assert gw.metric("wsgate_close_codes_total", route="app", side="upstream", code="4xxx") == 1


def test_page_from_an_origin_not_allowed_cannot_connect(start_gateway, backends, browser,
                                                        sites):
    port, record = backends.echo()
    gw = gateway_allowing(start_gateway, port, sites["allowed"])
    page = Page(browser, sites["other"])  # same host, another port: another origin
    result = page.open(f"ws://127.0.0.1:{gw.port}/app")
    assert result == {"opened": False, "code": 1006, "reason": "", "wasClean": False,
                      "events": ["error", "close"]}
    assert any("WebSocket" in line and "403" in line for line in page.console()), \
        "the browser did not report the 403"
    assert gw.wait_metric("wsgate_handshake_rejections_total", 1, listener="public",
                          reason="origin") == 1
    assert gw.metric("wsgate_filter_rejections_total", route="app", filter="origin") == 1
    assert gw.wait_metric("wsgate_connections_total", 1, listener="public",
                          outcome="rejected") == 1
    assert gw.metric("wsgate_connections_total", outcome="relayed") == 0
    assert record["connections"] == 0, "a refused origin never reaches the backend"


def test_browser_trusts_the_test_certificate_by_its_spki_hash_only(backends, browser, sites,
                                                                   tls_certs):
    """The browser fixture checked without wsgate: a page served over plain http opens wss://
    (mixed content blocks only ws:// from https pages) to a python3-websockets wss server
    presenting the `loopback` certificate, whose SPKI hash is listed, and echoes; the same
    server with `loopback2` (same names, same CA, another key) is refused as untrusted: the
    browser trusts that one key, not the test CA nor any certificate."""
    port, record = backends.wss_echo(tls_certs, cert=tls_certs.loopback)
    page = Page(browser, sites["allowed"])
    opened = page.open(f"wss://127.0.0.1:{port}/direct")
    assert opened["opened"], opened
    assert page.echo(TEXT) == TEXT
    assert page.close(1000, "ok")["code"] == 1000
    assert record["tls_versions"] == ["TLSv1.3"]

    other_port, other = backends.wss_echo(tls_certs, cert=tls_certs.loopback2)
    page = Page(browser, sites["allowed"])
    refused = page.open(f"wss://127.0.0.1:{other_port}/direct")
    assert (refused["opened"], refused["code"]) == (False, 1006), refused
    console = page.console()
    assert any("ERR_CERT_AUTHORITY_INVALID" in line for line in console), console
    assert other["connections"] == 0


def tls_listener(certs):
    """`listener_extra` for app_config: TLS on the `public` listener with the `loopback`
    certificate (no SNI from a browser going to an IP address: the first certificate)."""
    return (f'    tls:\n      certificates:\n        - {{ cert: "{certs.loopback.cert}", '
            f'key: "{certs.loopback.key}", server_names: ["localhost"] }}\n')


def test_wss_from_the_browser_through_a_tls_listener(start_gateway, backends, browser, sites,
                                                     tls_certs):
    """The page (served over plain http) opens wss:// to a TLS listener of wsgate with
    subprotocols chat.v2 and chat.v1 and permessage-deflate: the backend chose chat.v1 and
    deflate, and the browser sees both; a text and a 200 KiB binary message come back
    byte-identical, compressed on the wire; the backend was told `X-Forwarded-Proto: https` and
    the page's origin; `ws.close(4001, 'bye')` reaches the backend and comes back as a clean
    close; one TLS handshake is counted."""
    port, record = backends.echo(compression="deflate", subprotocols=["chat.v1"])
    site = sites["allowed"]
    gw = start_gateway(app_config([port], filters=[f'origin: {{ allow: ["{site.origin}"] }}'],
                                  listener_extra=tls_listener(tls_certs),
                                  route_extra="        require_tls: true\n"))
    page = Page(browser, site)
    opened = page.open(f"wss://127.0.0.1:{gw.port}/app", ["chat.v2", "chat.v1"])
    assert opened["opened"], f"the browser could not open the session: {opened}"
    assert opened["protocol"] == "chat.v1"
    assert "permessage-deflate" in extension_names(opened["extensions"]), opened
    assert record["subprotocols"] == ["chat.v1"]
    assert record["extensions"] == [["permessage-deflate"]]
    headers = record["headers"][0]
    assert headers.get("Origin") == site.origin
    assert headers.get_all("X-Forwarded-Proto") == ["https"]

    assert page.echo(TEXT) == TEXT
    before = gw.wait_metric("wsgate_bytes_total", 1, route="app", direction=DIRECTIONS[0])
    assert page.echo(BIG) == BIG, "the 200 KiB binary message came back changed"
    assert record["messages"] == [TEXT, BIG]
    assert gw.wait_metric("wsgate_messages_total", 2, route="app",
                          direction=DIRECTIONS[1]) == 2
    wire = gw.metric("wsgate_bytes_total", route="app", direction=DIRECTIONS[0]) - before
    assert 0 < wire < len(BIG) // 10, f"{wire} wire bytes for {len(BIG)} B"

    closed = page.close(4001, "bye")
    assert closed == {"code": 4001, "reason": "bye", "wasClean": True,
                      "events": ["open", "close"]}
    assert wait_for(lambda: record["close_codes"])
    assert record["close_codes"] == [(4001, "bye")]
    assert gw.wait_metric("wsgate_tls_handshakes_total", 1, listener="public",
                          version="TLSv1.3") >= 1
    assert gw.metric("wsgate_tls_handshake_failures_total") == 0
    assert gw.wait_idle() == 0
