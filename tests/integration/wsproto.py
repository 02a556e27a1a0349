"""Raw RFC 6455 helpers for tests that must send what no well-behaved client library would:
a frame encoder (any opcode, RSV bits, FIN, length, masked or not) and a blocking TCP client
that does the upgrade by hand. Every read is bounded by a deadline."""
import base64
import os
import socket
import struct
import time

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    """One frame. `rsv` is the 3-bit RSV1..RSV3 field (4 = RSV1, 2 = RSV2, 1 = RSV3);
    `length` overrides the encoded payload length (for broken frames)."""
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
        payload = xor_mask(payload, key)
        head += key
    return head + payload


def xor_mask(data, key):
    """RFC 6455 §5.3 masking (its own inverse); fast enough for tens of MiB."""
    if not data:
        return b""
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode()


def random_key():
    return base64.b64encode(os.urandom(16)).decode()


class RawClient:
    """A TCP client that does the upgrade by hand and then reads/writes raw frames."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = bytearray()

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def request(self, path="/echo", host="localhost", headers=None, omit=(), method="GET",
                version="HTTP/1.1", body=b""):
        """Sends an upgrade request. `headers` adds or replaces fields (None removes one),
        `omit` drops default fields by name."""
        fields = {
            "Host": host,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": random_key(),
            "Sec-WebSocket-Version": "13",
        }
        fields.update(headers or {})
        lines = [f"{method} {path} {version}"]
        lines += [f"{k}: {v}" for k, v in fields.items() if k not in omit and v is not None]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def read_response(self, timeout=10):
        """Returns (status, headers dict with lower-case names, body bytes)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            self._fill(deadline)
        end = self.buffer.index(b"\r\n\r\n")
        head = bytes(self.buffer[:end])
        del self.buffer[:end + 4]
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split()[:2]
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buffer) < n:
                self._fill(deadline)
            body = bytes(self.buffer[:n])
            del self.buffer[:n]
        return int(status), headers, body

    def upgrade(self, path="/echo", **kwargs):
        self.request(path, **kwargs)
        status, headers, body = self.read_response()
        assert status == 101, f"expected 101, got {status}: {body!r}"
        return headers

    def read_frame(self, timeout=10):
        """Returns (fin, rsv, opcode, payload, masked); payload unmasked."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buffer[0], self.buffer[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buffer[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buffer[2:10])[0]
            pos = 10
        key = None
        if b1 & 0x80:
            self._need(pos + 4, deadline)
            key = bytes(self.buffer[pos:pos + 4])
            pos += 4
        self._need(pos + n, deadline)
        payload = bytes(self.buffer[pos:pos + n])
        del self.buffer[:pos + n]
        if key:
            payload = xor_mask(payload, key)
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload, key is not None

    def read_message(self, timeout=10):
        """Reads frames until a whole data message; control frames are collected, not answered.
        Returns (opcode, payload, controls)."""
        deadline = time.monotonic() + timeout
        opcode, parts, controls = None, [], []
        while True:
            fin, _, op, payload, _ = self.read_frame(max(0.1, deadline - time.monotonic()))
            if op >= 8:
                controls.append((op, payload))
                if op == CLOSE:
                    raise AssertionError(f"close {parse_close(payload)} inside a message")
                continue
            if opcode is None:
                opcode = op
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts), controls

    def read_close(self, timeout=10):
        """Reads frames until a close; returns (code, reason)."""
        deadline = time.monotonic() + timeout
        while True:
            _, _, opcode, payload, _ = self.read_frame(max(0.1, deadline - time.monotonic()))
            if opcode == CLOSE:
                return parse_close(payload)

    def wait_end(self, timeout=10):
        """Reads (and drops) until the peer ends the connection. Returns 'fin' for an orderly
        close, 'reset' for a TCP reset, 'open' if it is still open at the deadline."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            return "fin"
        except ConnectionResetError:
            return "reset"
        except (TimeoutError, socket.timeout):
            return "open"

    def _need(self, n, deadline):
        while len(self.buffer) < n:
            self._fill(deadline)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the gateway in time")
        self.sock.settimeout(left)
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed")
        self.buffer += chunk

    def close(self):
        self.sock.close()


def parse_close(payload):
    if len(payload) < 2:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def parse_frames(data):
    """Every whole frame in `data`: [(fin, rsv, opcode, payload unmasked, masked)]."""
    frames, pos = [], 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        n, head = b1 & 0x7F, 2
        if n == 126:
            if len(data) - pos < 4:
                break
            n, head = struct.unpack("!H", data[pos + 2:pos + 4])[0], 4
        elif n == 127:
            if len(data) - pos < 10:
                break
            n, head = struct.unpack("!Q", data[pos + 2:pos + 10])[0], 10
        key = None
        if b1 & 0x80:
            key = data[pos + head:pos + head + 4]
            head += 4
        if len(data) - pos < head + n:
            break
        payload = bytes(data[pos + head:pos + head + n])
        if key:
            payload = xor_mask(payload, key)
        frames.append((bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload, key is not None))
        pos += head + n
    return frames


def close_codes_in(data):
    """The (code, reason) of every close frame in `data`."""
    return [parse_close(f[3]) for f in parse_frames(data) if f[2] == CLOSE]
