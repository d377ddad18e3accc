"""paho's reads served from one large read: the same bytes, in order, fewer passes.

The client half runs paho against a scripted broker on a local socket (a fake broker is pure
protocol here: the real one is in the integration tests, which run the source on this client).
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.buffered_reads import CHUNK, MAX_PACKETS_PER_PASS, BufferedClient, BufferedSocket

# The benchmark's publisher encodes PUBLISH packets (it has tests of its own).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from raw_publisher import publish_packet


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    with left, right:
        yield left, right


def _read_all(reader: BufferedSocket, sizes: list[int], total: int) -> bytes:
    got = bytearray()
    turn = 0
    while len(got) < total:
        chunk = reader.recv(sizes[turn % len(sizes)])
        assert chunk, "end of stream before every byte was read"
        got += chunk
        turn += 1
    return bytes(got)


@settings(max_examples=60, deadline=None)
@given(
    writes=st.lists(st.binary(min_size=1, max_size=3_000), min_size=1, max_size=40),
    sizes=st.lists(st.integers(min_value=1, max_value=5_000), min_size=1, max_size=8),
)
def test_reads_return_the_stream_in_order_whatever_the_sizes(
    writes: list[bytes], sizes: list[int]
) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"".join(writes))
        reader = BufferedSocket(right)
        assert _read_all(reader, sizes, sum(map(len, writes))) == b"".join(writes)
        assert reader.buffered() == 0


def test_small_reads_take_one_system_read(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    packets = [bytes([0x30, 5]) + b"hello" for _ in range(100)]
    left.sendall(b"".join(packets))
    calls: list[int] = []

    class Counting:
        def recv(self, size: int) -> bytes:
            calls.append(size)
            return right.recv(size)

    reader = BufferedSocket(Counting())
    for _ in packets:
        assert reader.recv(1) == b"\x30"
        assert reader.recv(1) == b"\x05"
        assert reader.recv(5) == b"hello"
    assert calls == [CHUNK]
    assert reader.pending() == 0


def test_a_read_larger_than_the_buffer_is_passed_through(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    body = bytes(range(256)) * 1_000  # 256,000 bytes, as a 200 KB hostile payload would be
    sender = threading.Thread(target=left.sendall, args=(body,))
    sender.start()
    reader = BufferedSocket(right)
    got = bytearray()
    while len(got) < len(body):
        got += reader.recv(len(body) - len(got))
    sender.join()
    assert bytes(got) == body
    assert reader.buffered() == 0


def test_end_of_stream_and_nothing_to_read_come_from_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    right.setblocking(False)
    reader = BufferedSocket(right)
    with pytest.raises(BlockingIOError):
        reader.recv(1)
    left.sendall(b"abc")
    assert reader.recv(1) == b"a"
    assert reader.pending() == 2
    left.close()
    assert reader.recv(10) == b"bc"
    assert reader.recv(1) == b""  # the peer closed: paho sees its connection lost
    assert reader.fileno() == right.fileno()  # the rest is the socket's own


class ScriptedBroker:
    """Accepts one MQTT client, answers CONNECT, then sends `stream` in one write."""

    def __init__(self, stream: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stream = stream
        self.received = bytearray()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(1024)  # CONNECT
            conn.sendall(b"\x20\x02\x00\x00" + self.stream)  # CONNACK, then the messages
            conn.settimeout(5)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def _receive(client: mqtt.Client, broker: ScriptedBroker, expected: int) -> list[mqtt.MQTTMessage]:
    got: list[mqtt.MQTTMessage] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message)
        if len(got) == expected:
            done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert done.wait(10), f"{len(got)} of {expected} messages received"
    finally:
        client.disconnect()
        client.loop_stop()
        broker.close()
    return got


def _client(kind: type[mqtt.Client]) -> mqtt.Client:
    return kind(mqtt.CallbackAPIVersion.VERSION2, client_id="buffered-test", manual_ack=True)


def _passes(client: mqtt.Client) -> list[int]:
    """Count paho's loop passes (one `select` each)."""
    passes = [0]
    original = client._loop

    def counted(timeout: float = 1.0) -> mqtt.MQTTErrorCode:
        passes[0] += 1
        return original(timeout)

    client._loop = counted  # type: ignore[method-assign]
    return passes


@pytest.mark.parametrize("kind", [mqtt.Client, BufferedClient])
def test_a_burst_arrives_whole_and_in_order(kind: type[mqtt.Client]) -> None:
    payloads = [f'{{"n":{i}}}'.encode() * (1 + i % 7) for i in range(2_500)]
    payloads[1_234] = b"x" * (3 * CHUNK + 17)  # across several buffers, as a 200 KB one is
    broker = ScriptedBroker(
        b"".join(publish_packet(f"t/{i % 3}", p, i + 1) for i, p in enumerate(payloads))
    )
    client = _client(kind)
    passes = _passes(client)
    got = _receive(client, broker, len(payloads))
    assert [m.payload for m in got] == payloads
    assert [m.topic for m in got] == [f"t/{i % 3}" for i in range(len(payloads))]
    assert [m.mid for m in got] == list(range(1, len(payloads) + 1))
    if kind is BufferedClient:
        # paho alone makes a pass (a select) per packet; buffered, passes hold many.
        assert passes[0] < len(payloads) // 10
    else:
        assert passes[0] >= len(payloads)


def test_a_pass_is_bounded_so_acks_are_not_held_back() -> None:
    count = 3 * MAX_PACKETS_PER_PASS
    broker = ScriptedBroker(b"".join(publish_packet("t", b"p", i + 1) for i in range(count)))
    client = _client(BufferedClient)
    acked: list[int] = []

    def on_message(c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        c.ack(message.mid, message.qos)
        acked.append(message.mid)

    client.on_message = on_message
    passes = _passes(client)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    deadline = time.monotonic() + 10
    # Every PUBACK reaches the broker: 4 bytes each (0x40 0x02 mid).
    while len(broker.received) < 4 * count and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    broker.close()
    assert acked == list(range(1, count + 1))
    sent = bytes(broker.received)
    pubacks = [sent[i : i + 4] for i in range(0, 4 * count, 4)]
    assert pubacks == [b"\x40\x02" + struct.pack("!H", mid) for mid in range(1, count + 1)]
    assert passes[0] >= 3  # the backlog took at least one pass per MAX_PACKETS_PER_PASS


def test_acks_are_queued_as_runs_in_the_order_the_messages_came() -> None:
    client = _client(BufferedClient)
    client.ack_all([(1, 1), (2, 1), (3, 0), (4, 2), (5, 1), (300, 1)])
    queued = [bytes(packet["packet"]) for packet in client._out_packet]
    puback = b"\x40\x02"
    assert queued == [
        puback + b"\x00\x01" + puback + b"\x00\x02",  # one write for the run
        b"\x70\x02\x00\x04",  # QoS 2: paho's own PUBCOMP, in its place
        puback + b"\x00\x05" + puback + b"\x01\x2c",
    ]


def test_without_manual_acks_nothing_is_queued_twice() -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="auto-acks")
    client.ack_all([(1, 1), (2, 2)])  # paho acked these itself on receipt
    assert not client._out_packet


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    with client, accepted:
        yield client, accepted


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux's TCP_QUICKACK only")
def test_each_read_from_a_tcp_socket_asks_the_kernel_to_ack_at_once(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    # Without the request the modes read back are mostly 0 (seen: [0, 1, 0]).
    client, broker = tcp_pair
    reader = BufferedSocket(client)
    assert reader._quickack is not None
    modes = []
    for round_ in range(3):
        # Delayed ACKs, as after the flow's PUBACKs (the kernel's "ping-pong" mode).
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        broker.sendall(b"packet-%d" % round_)
        assert reader.recv(8) == b"packet-%d" % round_
        modes.append(client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))
    assert modes == [1, 1, 1]


def test_a_socket_without_tcp_options_is_read_as_before(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair  # a Unix socket pair: no TCP_QUICKACK to set
    reader = BufferedSocket(left)
    assert reader._quickack is None
    right.sendall(b"abc")
    assert reader.recv(3) == b"abc"
