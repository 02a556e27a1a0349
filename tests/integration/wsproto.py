"""Raw RFC 6455 helpers for tests that must send what no well-behaved client library would."""
import base64
import os
import socket
import struct
import time


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    """One frame; `length` overrides the encoded payload length (for broken frames)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode()


class RawClient:
    """A TCP client that does the upgrade by hand and then reads/writes raw frames."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def request(self, path="/echo", host="localhost", headers=None, omit=(), method="GET",
                version="HTTP/1.1", extra_lines=""):
        base = {
            "Host": host,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
        }
        base.update(headers or {})
        lines = [f"{method} {path} {version}"]
        lines += [f"{k}: {v}" for k, v in base.items() if k not in omit and v is not None]
        self.send("\r\n".join(lines) + "\r\n" + extra_lines + "\r\n")

    def read_response(self, timeout=10):
        """Returns (status, headers dict with lower-case names, body bytes)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            self._fill(deadline)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buffer) < n:
                self._fill(deadline)
            body, self.buffer = self.buffer[:n], self.buffer[n:]
        return status, headers, body

    def upgrade(self, path="/echo", **kwargs):
        self.request(path, **kwargs)
        status, headers, _ = self.read_response()
        assert status == 101, f"expected 101, got {status}"
        return headers

    def read_frame(self, timeout=10):
        """Returns (fin, rsv, opcode, payload); payload unmasked."""
        deadline = time.monotonic() + timeout
        while len(self.buffer) < 2:
            self._fill(deadline)
        b0, b1 = self.buffer[0], self.buffer[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            while len(self.buffer) < 4:
                self._fill(deadline)
            n = struct.unpack("!H", self.buffer[2:4])[0]
            pos = 4
        elif n == 127:
            while len(self.buffer) < 10:
                self._fill(deadline)
            n = struct.unpack("!Q", self.buffer[2:10])[0]
            pos = 10
        key = None
        if b1 & 0x80:
            while len(self.buffer) < pos + 4:
                self._fill(deadline)
            key = self.buffer[pos:pos + 4]
            pos += 4
        while len(self.buffer) < pos + n:
            self._fill(deadline)
        payload = self.buffer[pos:pos + n]
        self.buffer = self.buffer[pos + n:]
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload

    def read_close(self, timeout=10):
        """Reads frames until a close; returns (code, reason)."""
        deadline = time.monotonic() + timeout
        while True:
            _, _, opcode, payload = self.read_frame(max(0.1, deadline - time.monotonic()))
            if opcode == 8:
                if len(payload) < 2:
                    return 1005, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def at_eof(self, timeout=10):
        """True once the peer closed the connection (after any buffered bytes)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            return True
        except (TimeoutError, socket.timeout):
            return False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the gateway in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            raise EOFError("connection reset")
        if not chunk:
            raise EOFError("connection closed")
        self.buffer += chunk

    def close(self):
        self.sock.close()
