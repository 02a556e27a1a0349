"""Relay reads that leave what they relay queued in the kernel until a later read, so that a
busy flow of small messages costs no ACK segment per read (io/held_read.h). Whatever they
hold, every byte is relayed once and in order, and the session still ends in a FIN: a socket
closed with unread bytes would send a reset instead."""
from conftest import app_config
from wsproto import CLOSE, TEXT, RawClient, close_payload, encode_frame


def test_small_messages_relay_once_and_the_session_ends_in_a_fin(start_gateway, backends):
    port, record = backends.echo()
    gw = start_gateway(app_config([port], workers=1))
    client = RawClient(gw.port)
    client.upgrade("/app")
    sent = []

    def round_trips(count, tag):
        # Small reads, each answered: both legs' reads hold.
        for i in range(count):
            payload = f"{tag}{i:05d}".encode() * 10
            client.send(encode_frame(TEXT, payload))
            assert client.read_message()[1] == payload, f"message {tag}{i}"
            sent.append(payload)

    round_trips(300, "a")
    # Bursts: several frames per read; then one large one, which reads take back and relay plainly.
    for burst in range(40):
        payloads = [f"b{burst:03d}-{k}".encode() * 8 for k in range(4)]
        client.send(b"".join(encode_frame(TEXT, p) for p in payloads))
        for k, payload in enumerate(payloads):
            assert client.read_message()[1] == payload, f"burst {burst}, message {k}"
        sent.extend(payloads)
    large = b"L" * 20000
    client.send(encode_frame(TEXT, large))
    assert client.read_message()[1] == large
    sent.append(large)
    round_trips(20, "c")
    # The close is itself a small read that holds: the gateway must release it before closing.
    client.send(encode_frame(CLOSE, close_payload(1000, "done")))
    assert client.read_close() == (1000, "done")
    assert client.wait_end() == "fin", "the gateway reset the connection instead of closing it"
    client.close()
    assert [m.encode() if isinstance(m, str) else m for m in record["messages"]] == sent
