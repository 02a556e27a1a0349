"""Nothing a peer sends may create metric series or inflate counters: close codes become one of a
fixed set of labels, and bytes are counted as they are relayed, not as headers declare them."""
import struct

from conftest import app_config
from wsproto import BINARY, CLOSE, TEXT, RawClient, close_payload, encode_frame

# What wsgate_close_codes_total{code} may ever carry (docs/metrics.md).
CODE_LABELS = {str(c) for c in range(1000, 1016)} | {"3xxx", "4xxx", "invalid"}
C2U = "client_to_upstream"


def close_code_labels(gw):
    return {dict(labels)["code"]: value for (name, labels), value in gw.metrics().items()
            if name == "wsgate_close_codes_total"}


def test_close_codes_from_peers_map_onto_a_fixed_label_set(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port], workers=1))
    codes = [0, 1, 999, 1000, 1004, 1005, 1015, 1016, 2000, 2999, 3000, 3500, 3999, 4000,
             4321, 4999, 5000, 9999, 65535] + list(range(4100, 4140)) + list(range(1100, 1120))
    for code in codes:
        c = RawClient(gw.port)
        c.upgrade("/app")
        c.send(encode_frame(CLOSE, close_payload(code, "x")))
        c.wait_end(5)  # whatever the backend answers to a code it rejects
        c.close()
    assert gw.wait_metric("wsgate_close_codes_total", len(codes), route="app",
                          side="client") == len(codes)
    seen = close_code_labels(gw)
    assert set(seen) <= CODE_LABELS, sorted(set(seen) - CODE_LABELS)
    by_label = {}
    for code in codes:
        label = (str(code) if 1000 <= code <= 1015 else "3xxx" if 3000 <= code <= 3999
                 else "4xxx" if 4000 <= code <= 4999 else "invalid")
        by_label[label] = by_label.get(label, 0) + 1
    for label, count in by_label.items():
        assert gw.metric("wsgate_close_codes_total", route="app", side="client",
                         code=label) == count, label


def test_a_header_declaring_a_huge_length_counts_only_the_bytes_sent(start_gateway, backends):
    port, _ = backends.echo()
    gw = start_gateway(app_config([port], workers=1))
    c = RawClient(gw.port)
    c.upgrade("/app")
    c.send(encode_frame(TEXT, "warm up"))
    assert c.read_message()[1] == b"warm up"
    before = gw.wait_metric("wsgate_bytes_total", 6 + 7, route="app", direction=C2U)
    assert before == 6 + 7
    # A 64-bit length of 2^62, then 1,000 payload bytes, then the client vanishes.
    header = bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 62) + b"\x01\x02\x03\x04"
    sent = header + b"p" * 1000
    c.send(sent)
    assert gw.wait_metric("wsgate_frames_total", 2, route="app", direction=C2U) == 2
    c.close()
    assert gw.wait_idle() == 0
    assert gw.metric("wsgate_bytes_total", route="app", direction=C2U) - before == len(sent)
    # A counter that went through int64 could even turn negative: none does.
    assert all(v >= 0 for (name, _), v in gw.metrics().items() if name == "wsgate_bytes_total")


def test_each_frame_of_a_declared_size_counts_once(start_gateway, backends):
    """A message that arrives across many reads is counted exactly once, header and payload."""
    port, _ = backends.echo()
    gw = start_gateway(app_config([port], workers=1))
    c = RawClient(gw.port)
    c.upgrade("/app")
    frame = encode_frame(BINARY, b"z" * 70000)
    for i in range(0, len(frame), 997):
        c.send(frame[i:i + 997])
    assert c.read_message()[1] == b"z" * 70000
    assert gw.wait_metric("wsgate_bytes_total", len(frame), route="app",
                          direction=C2U) == len(frame)
    c.send(encode_frame(CLOSE, close_payload(1000)))
    assert c.read_close() == (1000, "")
    assert c.wait_end(5) == "fin"
