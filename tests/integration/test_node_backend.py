"""wsgate in front of a real Node `ws` server (ws_backend.js, Debian's node-ws), with a
python3-websockets client: echo of both message types, a fragmented message, permessage-deflate,
subprotocol choice and close codes, as ws itself reports them."""
import asyncio
import json
import os
import subprocess
import tempfile
import threading

import pytest

import wscompat
from conftest import Gateway, app_config, run, tool, wait_for
from test_relay import echo_roundtrips, payloads

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_PATH = "/usr/share/nodejs"  # Debian's node-ws; works with Debian's and NodeSource's node
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20]


class NodeBackend:
    """ws_backend.js on 127.0.0.1, kernel-picked port. `events` are the JSON lines it printed
    (listening, connection, message, close), in order."""

    stop = Gateway.stop  # SIGTERM by PID, bounded wait, then SIGKILL

    def __init__(self):
        node = tool("node", "nodejs")
        assert os.path.isdir(os.path.join(NODE_PATH, "ws")), \
            f"no ws module in {NODE_PATH} (Debian package node-ws)"
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self.events = []
        self.proc = subprocess.Popen(
            [node, os.path.join(HERE, "ws_backend.js"), "0"],
            env={**os.environ, "NODE_PATH": NODE_PATH}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, encoding="utf-8")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        listening = self.wait_event("listening", timeout=10)
        if not listening:
            self.stop()
            raise AssertionError(f"ws_backend.js did not start (exit {self.proc.returncode}):"
                                 f"\n{self.log()}")
        self.port = listening["port"]

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "unparsed", "line": line})

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def of(self, kind, **fields):
        return [e for e in self.events
                if e["event"] == kind and all(e.get(k) == v for k, v in fields.items())]

    def wait_event(self, kind, timeout=5, **fields):
        """The first event of `kind` with `fields`, waiting up to `timeout`; None if none."""
        found = wait_for(lambda: self.of(kind, **fields), timeout)
        return found[0] if found else None


@pytest.fixture
def node_backend():
    backend = NodeBackend()
    yield backend
    code, _ = backend.stop()
    log = backend.log()
    backend.stderr.close()
    errors = [e for e in backend.events if e["event"] in ("error", "unparsed")]
    assert not errors, f"ws reported errors: {errors}\n{log}"
    assert code == 0, f"ws_backend.js exited with {code}:\n{log}"


@pytest.fixture
def gateway(start_gateway, node_backend):
    return start_gateway(app_config([node_backend.port]))


def url(gw):
    return f"ws://127.0.0.1:{gw.port}/app"


def test_text_and_binary_echo_from_0_bytes_to_1_mib(gateway, node_backend):
    run(echo_roundtrips(url(gateway), SIZES), timeout=60)
    # ws received each message whole and with the type the client sent.
    messages = [(e["binary"], e["bytes"]) for e in node_backend.of("message", id=1)]
    assert messages == [(binary, size) for size in SIZES for binary in (False, True)]
    assert gateway.wait_metric("wsgate_messages_total", 2 * len(SIZES), route="app",
                               direction="upstream_to_client") == 2 * len(SIZES)


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_fragmented_message_from_client_is_reassembled_by_ws(gateway, node_backend, kind):
    text, data = payloads(70000)
    parts = ["Hello, ", text, "", " world"]
    if kind == "binary":
        parts = [p.encode() for p in parts]
    whole = parts[0][:0].join(parts)

    async def client():
        async with wscompat.connect(url(gateway), max_size=None, compression=None,
                                    open_timeout=5, close_timeout=5) as ws:
            # Five frames: the four parts, then an empty final continuation (FIN set).
            await ws.send(parts)
            return await asyncio.wait_for(ws.recv(), 10)
    assert run(client()) == whole
    size = len(whole) if kind == "binary" else len(whole.encode())
    # The backend's record of it comes on its stdout, a moment after the echo.
    assert node_backend.wait_event("message") is not None
    assert node_backend.of("message") == [
        {"event": "message", "id": 1, "binary": kind == "binary", "bytes": size}]
    # The gateway relayed the fragments as they came (five data frames and the client's close
    # up, ws's one-frame echo and close down) and counted one message each way.
    assert gateway.wait_idle() == 0
    assert gateway.metric("wsgate_frames_total", route="app",
                          direction="client_to_upstream") == 5 + 1
    assert gateway.metric("wsgate_frames_total", route="app",
                          direction="upstream_to_client") == 1 + 1
    for direction in ("client_to_upstream", "upstream_to_client"):
        assert gateway.metric("wsgate_messages_total", route="app", direction=direction) == 1


def test_permessage_deflate_negotiated_with_ws_end_to_end(gateway, node_backend):
    text = "compressible " * 5000
    data = bytes(range(256)) * 400
    fragmented = ["deflated ", "fragments " * 3000, "end"]

    async def client():
        async with wscompat.connect(url(gateway), compression="deflate", max_size=None,
                                    open_timeout=5, close_timeout=5) as ws:
            negotiated = wscompat.response_headers(ws).get("Sec-WebSocket-Extensions", "")
            names = wscompat.extensions(ws)
            for message in (text, data, text):
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), 10) == message
            await ws.send(fragmented)
            assert await asyncio.wait_for(ws.recv(), 10) == "".join(fragmented)
            return negotiated, names
    negotiated, names = run(client())
    assert names == ["permessage-deflate"], negotiated
    assert negotiated.startswith("permessage-deflate")
    connection = node_backend.wait_event("connection")
    assert "permessage-deflate" in connection["offered_extensions"]
    assert connection["extensions"] == "permessage-deflate"
    sizes = [len(text), len(data), len(text), len("".join(fragmented))]
    assert [e["bytes"] for e in node_backend.of("message")] == sizes
    # Compressed both ways through the gateway: far fewer wire bytes than payload bytes.
    for direction in ("client_to_upstream", "upstream_to_client"):
        assert gateway.wait_metric("wsgate_messages_total", 4, route="app",
                                   direction=direction) == 4
        wire = gateway.metric("wsgate_bytes_total", route="app", direction=direction)
        assert 0 < wire < sum(sizes) // 4, (direction, wire)


@pytest.mark.parametrize("offer, chosen", [
    (["chat.v2", "chat.v1"], "chat.v1"),  # ws's preference, not the client's first offer
    (["chat.v2"], "chat.v2"),
    (["chat.v3"], None),                   # nothing ws supports: no subprotocol
    ([], None),
])
def test_subprotocol_chosen_by_ws_reaches_the_client(gateway, node_backend, offer, chosen):
    async def client():
        async with wscompat.connect(url(gateway), subprotocols=offer or None,
                                    open_timeout=5, close_timeout=5) as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "hi"
            return ws.subprotocol, wscompat.response_headers(ws).get("Sec-WebSocket-Protocol")
    assert run(client()) == (chosen, chosen)
    connection = node_backend.wait_event("connection")
    assert connection["offered_protocols"] == offer  # forwarded as offered, in order
    assert connection["protocol"] == (chosen or "")


@pytest.mark.parametrize("closer", ["client", "ws"])
def test_close_code_and_reason_both_ways(gateway, node_backend, closer):
    code, reason = (4001, "bye from the client") if closer == "client" else \
        (4002, "ws says bye — ünïcode")

    async def client():
        async with wscompat.connect(url(gateway), open_timeout=5, close_timeout=5) as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "hello"
            if closer == "client":
                await ws.close(code, reason)
            else:
                await ws.send(f"close:{code}:{reason}")
                with pytest.raises(wscompat.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
            await asyncio.wait_for(ws.wait_closed(), 5)
            return ws.close_code, ws.close_reason
    # The client's view: its own close echoed by ws, or the close ws started.
    assert run(client()) == (code, reason)
    # ws's view: the client's close, or the client's echo of its own.
    assert node_backend.wait_event("close") == \
        {"event": "close", "id": 1, "code": code, "reason": reason}
    first, second = ("client", "upstream") if closer == "client" else ("upstream", "client")
    for side in (first, second):
        assert gateway.wait_metric("wsgate_close_codes_total", 1, route="app", side=side,
                                   code="4xxx") == 1, side
    assert gateway.wait_idle() == 0
