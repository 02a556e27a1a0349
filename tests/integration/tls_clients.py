"""TLS clients for the tests that must do what no library client does: raw frames over TLS, TLS
records one byte at a time, a handshake that never ends, a refused handshake seen from the
client, ALPN as `openssl s_client` sees it. Every read has a deadline."""
import re
import socket
import ssl
import subprocess
import time

from conftest import tls_connect
from tls_certs import OPENSSL
from wsproto import RawClient, random_key


class TLSRawClient(RawClient):
    """wsproto.RawClient (upgrade by hand, raw frames) over TLS: on a TLS connection to `port`
    made with `context` and SNI `server_hostname`, or on `sock`, any object with sendall, recv,
    settimeout and close (such as TrickleTLSSocket)."""

    def __init__(self, port=None, context=None, server_hostname=None, timeout=10, sock=None):
        self.sock = sock if sock is not None else tls_connect(port, context, server_hostname,
                                                               timeout)
        self.buffer = bytearray()

    def tls_version(self):
        return self.sock.version()

    def peer_cert(self):
        return self.sock.getpeercert()


class TrickleTLSSocket:
    """A TLS client (ssl.SSLObject over two MemoryBIOs) that sends every byte of its outgoing
    TLS data, handshake and records alike, in a send of its own (TCP_NODELAY), `delay` seconds
    apart. `sends` counts the sends, `sent` the bytes: they are equal."""

    def __init__(self, port, context, server_hostname=None, delay=0.001, timeout=20):
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing,
                                    server_hostname=server_hostname)
        self.delay, self.timeout = delay, timeout
        self.sends = self.sent = 0
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._read_more(deadline)
        self._flush()  # the client's last flight (TLS 1.3: its Finished)

    def _flush(self):
        data = self.outgoing.read()
        for i in range(len(data)):
            self.raw.sendall(data[i:i + 1])
            self.sends += 1
            self.sent += 1
            time.sleep(self.delay)

    def _read_more(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no TLS data from the server in time")
        self.raw.settimeout(left)
        chunk = self.raw.recv(65536)
        if chunk:
            self.incoming.write(chunk)
        else:
            self.incoming.write_eof()

    def version(self):
        return self.tls.version()

    def getpeercert(self):
        return self.tls.getpeercert()

    def sendall(self, data):
        self.tls.write(data)
        self._flush()

    def settimeout(self, timeout):
        self.timeout = timeout

    def recv(self, n):
        deadline = time.monotonic() + (self.timeout or 10)
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                self._flush()  # a key update or an alert would go out here
                if self.incoming.eof:
                    return b""
                self._read_more(deadline)
            except ssl.SSLZeroReturnError:
                return b""

    def close(self):
        self.raw.close()


def upgrade_request(path="/", host="localhost", extra=()):
    """A valid WebSocket upgrade request (bytes), with `extra` header lines."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {random_key()}",
             "Sec-WebSocket-Version: 13", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def handshake_refused(port, context, server_hostname=None, timeout=5):
    """Connects with `context` and, if the handshake completes on the client's side (in TLS 1.3
    the server judges a client certificate after that), waits up to 1 s for an unprompted
    refusal (an alert), then sends an upgrade request and reads. (Sending at once would race
    the refusal: a server closing with the request unread sends a reset, which can overtake
    its alert.) Returns how the server refused: 'handshake: <SSLError>', 'after handshake:
    <error>' or 'eof'. Fails if the server answers the upgrade or says nothing within
    `timeout`."""
    try:
        sock = tls_connect(port, context, server_hostname, timeout)
    except (ssl.SSLError, ConnectionError) as e:
        return f"handshake: {e}"
    try:
        sock.settimeout(min(1, timeout))
        try:
            data = sock.recv(4096)
        except (socket.timeout, TimeoutError):
            sock.settimeout(timeout)
            sock.sendall(upgrade_request())
            data = sock.recv(4096)
    except (ssl.SSLError, ConnectionError) as e:
        return f"after handshake: {e}"
    except (socket.timeout, TimeoutError):
        raise AssertionError(f"neither refused nor answered within {timeout} s")
    finally:
        sock.close()
    assert not data, f"the server answered over a connection it should refuse: {data[:100]!r}"
    return "eof"


def client_hello(context, server_hostname=None):
    """The bytes of the ClientHello a client with `context` would send first."""
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                           server_hostname=server_hostname)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def wait_end(sock, timeout):
    """Reads (and keeps) until the peer ends the connection. Returns ('fin' | 'reset' |
    'open' at the deadline, the bytes received, the seconds it took)."""
    start = time.monotonic()
    deadline = start + timeout
    received = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "open", received, time.monotonic() - start
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                return "fin", received, time.monotonic() - start
            received += chunk
    except ConnectionResetError:
        return "reset", received, time.monotonic() - start
    except (socket.timeout, TimeoutError):
        return "open", received, time.monotonic() - start


def s_client(port, *args, servername=None, ca=None, timeout=10):
    """Runs `openssl s_client` against 127.0.0.1:`port` with `args`, stdin empty (it handshakes,
    prints the session and quits). Returns (exit code, stdout + stderr)."""
    cmd = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *args]
    if servername:
        cmd += ["-servername", servername]
    if ca:
        cmd += ["-CAfile", ca, "-verify_return_error"]
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            errors="replace", timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def s_client_alpn(port, offer="http/1.1,h2", **kwargs):
    """The ALPN protocol the server chose when `openssl s_client -alpn OFFER` connected (None
    if it chose none), and s_client's output."""
    code, out = s_client(port, "-alpn", offer, **kwargs)
    assert code == 0, f"s_client failed:\n{out}"
    m = re.search(r"^ALPN protocol: (\S+)$", out, re.M)
    if m:
        return m.group(1), out
    assert re.search(r"^No ALPN negotiated$", out, re.M), f"no ALPN line in:\n{out}"
    return None, out
