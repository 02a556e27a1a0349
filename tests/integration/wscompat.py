"""The one place that knows python3-websockets' versions: Debian 12 ships 10.4, whose
`connect` and `serve` are what 14.0 moved to `websockets.legacy`; Debian 13 ships 15.0, whose
connections keep the handshake in `ws.request` / `ws.response` and the negotiated extensions in
`ws.protocol`. Tests reach websockets only through these names."""
import inspect

import websockets

# Both versions have these, with the keyword arguments the tests pass (open_timeout,
# close_timeout, max_size, compression, subprotocols, ping_interval, write_limit, max_queue)
# and a one-argument server handler.
serve = websockets.serve
ConnectionClosed = websockets.ConnectionClosed


def connect(uri, **kwargs):
    """websockets.connect, never through a proxy: 15.0 takes one from the environment."""
    if "proxy" in inspect.signature(websockets.connect).parameters:
        kwargs.setdefault("proxy", None)
    return websockets.connect(uri, **kwargs)

try:
    from websockets.asyncio.connection import Connection as _Connection  # 13.0 and later
except ImportError:
    _Connection = None


def _new(ws):
    return _Connection is not None and isinstance(ws, _Connection)


def request_path(ws):
    """The path (and query) of the upgrade request a server connection answered."""
    return ws.request.path if _new(ws) else ws.path


def request_headers(ws):
    """The upgrade request's headers, on a server connection."""
    return ws.request.headers if _new(ws) else ws.request_headers


def response_headers(ws):
    """The upgrade response's headers, on a client connection."""
    return ws.response.headers if _new(ws) else ws.response_headers


def extensions(ws):
    """The names of the extensions the handshake negotiated."""
    return [e.name for e in (ws.protocol.extensions if _new(ws) else ws.extensions)]
