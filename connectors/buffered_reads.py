"""paho's network reads served from one large read, many packets per wake-up.

paho 2.x reads a packet with at least three `recv` calls (its first byte, each byte of its
remaining length, its body) and handles one packet per pass of its loop, each pass a
`select`: four to five system calls for every device message, each releasing the
interpreter lock, which the flow's worker thread holds most of the time. Measured: paho
alone beside one busy Python thread took 1,927 queued messages a second, 10,855 with what
follows (`tests/bench/bench_mqtt_receive.py`); in the flow at 1,000 msg/s its thread went
from 10.1 to 7.9 % of a core (README, "Eighth sitting").

`BufferedSocket` answers paho's small reads from one `recv` of up to `CHUNK` bytes and says
what it holds through `pending()`, the method paho already asks of TLS sockets so that
`select` does not wait while bytes are buffered. `BufferedClient.loop_read` goes on handling
packets while whole ones may be buffered (at most `MAX_PACKETS_PER_PASS`, so that writes,
PUBACKs among them, and keep-alives are not held back behind a backlog). What paho sees is
unchanged: the same bytes, in order; end of stream and errors come from the socket as before,
once the buffer is spent.

Acks go out the same way: paho's `ack` queues one 4-byte PUBACK, writes a byte to its
wake-up socket and later sends the PUBACK alone, two system calls a message from the worker
and paho's threads. `BufferedClient.ack_all` queues an epoch's PUBACKs as one write, in the
order the messages came (as MQTT asks), and wakes paho's loop once.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from typing_extensions import override

__all__ = ["CHUNK", "MAX_PACKETS_PER_PASS", "BufferedClient", "BufferedSocket"]

# Larger than any burst paho could handle in one pass of small messages (~600 bytes each),
# small enough that a slice of it costs nothing next to the message it carries.
CHUNK = 64 * 1024
MAX_PACKETS_PER_PASS = 1_000
_PUBACK = struct.Struct("!BBH")  # type, remaining length 2, packet id


class BufferedSocket:
    """A connected socket (plain, TLS or paho's websocket wrapper) read `CHUNK` at a time.

    Everything but `recv` and `pending` is the wrapped socket's own.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._position = 0
        self._quickack = _quickack_of(sock)

    def recv(self, size: int) -> bytes:
        """Return up to `size` bytes: from the buffer while it lasts, else from one read."""
        position = self._position
        if position >= len(self._buffer):
            data: bytes = self._sock.recv(max(size, CHUNK))
            if self._quickack is not None:
                self._ack_soon(self._quickack)
            if len(data) <= size:  # all of it is asked for (or end of stream): no copy kept
                return data
            self._buffer, position = data, 0
        end = position + size
        self._position = end
        return self._buffer[position:end]

    def _ack_soon(self, quickack: Callable[[], None]) -> None:
        try:
            quickack()
        except OSError:  # closed meanwhile, or a socket that refuses it: reads go on
            self._quickack = None

    def buffered(self) -> int:
        """Bytes read from the socket and not yet handed to paho."""
        return max(len(self._buffer) - self._position, 0)

    def pending(self) -> int:
        """Return what is buffered here and in a TLS layer: paho's `select` waits while 0."""
        inner = getattr(self._sock, "pending", None)
        return self.buffered() + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _quickack_of(sock: Any) -> Callable[[], None] | None:
    """Return what asks the kernel to acknowledge received data at once, where it can.

    Why: the flow sends nothing to the broker between epochs but its PUBACKs, so after each
    burst of them Linux takes the connection for an interactive one and delays its TCP ACKs
    (up to 40 ms); a broker with Nagle's algorithm on (Mosquitto's default, without
    `set_tcp_nodelay true`) holds every further message until that ACK. Measured at 100
    msg/s against such a broker: publish -> received p99 22-31 ms, with this 1 ms. The mode
    does not last (the kernel leaves it on its own), so it is asked again after every read.
    Linux only; elsewhere, and on sockets without options (paho's websocket wrapper), None.
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    setsockopt = getattr(sock, "setsockopt", None)
    if option is None or setsockopt is None:
        return None
    try:
        setsockopt(socket.IPPROTO_TCP, option, 1)
    except (OSError, TypeError, ValueError):
        return None
    return partial(setsockopt, socket.IPPROTO_TCP, option, 1)


class BufferedClient(mqtt.Client):
    """A paho client whose connections are `BufferedSocket`s, drained many packets a pass."""

    @override
    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    @override
    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        sock = self._sock
        if not isinstance(sock, BufferedSocket):
            return rc
        buffered, handled = sock.buffered, 1
        # paho itself stops after one packet; a whole packet may wait in the buffer, and a
        # partial one ends the loop when the socket has nothing more (paho's read returns).
        while (
            rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
            and buffered() > 0
            and self._sock is sock
            and handled < MAX_PACKETS_PER_PASS
        ):
            rc = super().loop_read(max_packets)
            handled += 1
        return rc

    def ack_all(self, acks: Sequence[tuple[int, int]]) -> None:
        """Acknowledge `(mid, qos)` pairs in order: runs of QoS 1 as one write, QoS 2 as paho."""
        run: list[bytes] = []
        for mid, qos in acks:
            if qos == 1 and self._manual_ack:
                run.append(_PUBACK.pack(mqtt.PUBACK, 2, mid))
                continue
            self._queue_pubacks(run)
            run = []
            self.ack(mid, qos)
        self._queue_pubacks(run)

    def _queue_pubacks(self, pubacks: list[bytes]) -> None:
        if pubacks:
            # One out-packet of paho's: its writer sends the bytes through, handling partial
            # writes, and does nothing more for a PUBACK once they are sent.
            self._packet_queue(mqtt.PUBACK, b"".join(pubacks), 0, 1)
