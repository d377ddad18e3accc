"""A lean MQTT 3.1.1 QoS 1 publisher for the benchmark's fixed-rate runs.

The flow shares this machine's 2 cores with its services and with the benchmark itself, so
the benchmark's own CPU is taken from what it measures. paho's publisher cost about 0.2 ms of
CPU per message at 1,000 msg/s (a sleep, a packet built in Python, a lock and a wake-up of
its network thread per message: 18-21 % of a core in `bench_pipeline.py`'s latency runs).
This one writes pre-encoded PUBLISH packets straight to the socket, every packet that is due
in one `sendall`, and counts PUBACKs on a thread of its own. Devices publish from elsewhere;
only what the broker and the flow do should load the machine.

It speaks just enough MQTT for that: CONNECT with a clean session, PUBLISH at QoS 1 with
packet ids 1..65535 (an id is reused only once its PUBACK came), DISCONNECT.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["RawPublisher", "publish_packet", "remaining_length"]

_CONNECT = 0x10
_CONNACK = 0x20
_PUBLISH_QOS1 = 0x32
_PUBACK = 0x40
_DISCONNECT = b"\xe0\x00"
_MAX_PACKET_ID = 65535


def remaining_length(size: int) -> bytes:
    """Return MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        digit, size = size % 128, size // 128
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """Return a QoS 1 PUBLISH packet."""
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + struct.pack("!H", packet_id) + payload
    return bytes([_PUBLISH_QOS1]) + remaining_length(len(body)) + body


class RawPublisher:
    """One MQTT connection that publishes at QoS 1 and waits for the broker's PUBACKs."""

    def __init__(self, host: str, port: int, client_id: str, timeout: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        # Nagle's algorithm stays on, as paho leaves it: packets written while the broker's
        # ACK is outstanding go out together, and the broker reads them together (with
        # TCP_NODELAY, one segment a message, Mosquitto used 17 % of a core against 10 %).
        name = client_id.encode()
        # Protocol "MQTT" level 4, clean session, keep-alive 60 s.
        variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(name)) + name
        self._sock.sendall(bytes([_CONNECT]) + remaining_length(len(variable)) + variable)
        connack = self._read_exactly(4)
        if connack[0] != _CONNACK or connack[3] != 0:
            msg = f"MQTT broker refused the connection: CONNACK {connack.hex()}"
            raise ConnectionError(msg)
        self._sock.settimeout(None)
        self._unacked: set[int] = set()
        self._acked = threading.Condition()
        self._next_id = 0
        self.acked = 0
        self._reader = threading.Thread(target=self._read_acks, name="raw-puback", daemon=True)
        self._reader.start()

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                msg = "MQTT broker closed the connection"
                raise ConnectionError(msg)
            data += chunk
        return data

    def _read_acks(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            ids = []
            # Only PUBACKs come back on a connection that subscribes to nothing: 4 bytes each.
            # Read with an offset and cut once: a chunk can hold thousands of them.
            whole = len(pending) - len(pending) % 4
            for offset in range(0, whole, 4):
                if pending[offset] != _PUBACK or pending[offset + 1] != 2:
                    return
                ids.append(struct.unpack_from("!H", pending, offset + 2)[0])
            pending = pending[whole:]
            with self._acked:
                self._unacked.difference_update(ids)
                self.acked += len(ids)
                self._acked.notify_all()

    def _packet_id(self) -> int:
        with self._acked:
            while True:
                self._next_id = self._next_id % _MAX_PACKET_ID + 1
                if self._next_id not in self._unacked:
                    self._unacked.add(self._next_id)
                    return self._next_id
                self._acked.wait(0.01)

    def publish_at_rate(
        self,
        messages: Sequence[tuple[str, bytes]],
        rate: float,
        on_sent: Callable[[int, float], None],
    ) -> float:
        """Publish on a fixed schedule; call `on_sent(index, epoch seconds)` as each goes out.

        Every message due is written in one `sendall`, so a late wake-up sends a few at once
        instead of falling behind. Returns the rate achieved.
        """
        started = time.perf_counter()
        index = 0
        while index < len(messages):
            due_count = min(len(messages), int((time.perf_counter() - started) * rate) + 1)
            if due_count <= index:
                time.sleep(max(0.0, started + index / rate - time.perf_counter()))
                continue
            packets = [
                publish_packet(topic, payload, self._packet_id())
                for topic, payload in messages[index:due_count]
            ]
            sent_at = time.time()
            self._sock.sendall(b"".join(packets))
            for position in range(index, due_count):
                on_sent(position, sent_at)
            index = due_count
        elapsed = time.perf_counter() - started
        return len(messages) / elapsed if elapsed > 0 else float("inf")

    def wait_for_acks(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until `count` PUBACKs in all have come; return whether they did."""
        deadline = time.monotonic() + timeout
        with self._acked:
            while self.acked < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._acked.wait(left)
        return True

    def close(self) -> None:
        try:
            self._sock.sendall(_DISCONNECT)
        finally:
            self._sock.close()
            self._reader.join(timeout=5)
