"""A Bytewax source over paho-mqtt that acknowledges a message only once its epoch is durable.

Bytewax has no "epoch committed" hook for sources, but it only asks a partition for the first
batch of epoch N+1 once every earlier epoch is complete downstream (outputs written, and with
recovery the epoch's snapshots committed). So the partition remembers what it emitted, seals
that list when `snapshot()` closes the epoch, and sends the PUBACKs at the top of the next
`next_batch()`. A crash before then leaves the messages un-acked: the broker redelivers them
to the same persistent session, and the flow's de-duplication and deterministic ids make the
second pass harmless.

Setting the `stop` event ends every partition at its next batch, after acking what is
durable: Bytewax then finishes the epoch in flight and returns normally (how `vitalflow run`
stops on SIGINT and SIGTERM). What was received but not acked is redelivered next time.
"""

from __future__ import annotations

import logging
import queue
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from prometheus_client import Counter, Gauge
from typing_extensions import override

from connectors.buffered_reads import BufferedClient
from connectors.mqtt_inbox import MqttInbox
from connectors.poll_pace import PollPace
from connectors.topic_matcher import without_matcher_cycles

__all__ = [
    "MQTT_RECEIVED",
    "MQTT_UNACKED",
    "MqttMessage",
    "MqttSource",
    "MqttTarget",
    "source_activity",
]

logger = logging.getLogger(__name__)

MQTT_RECEIVED = Counter(
    "vitalflow_mqtt_received", "MQTT messages received, by source partition", ["partition"]
)
MQTT_UNACKED = Gauge(
    "vitalflow_mqtt_unacked_messages",
    "Messages received and not yet acknowledged (in the inbox, the open epoch, or sealed "
    "waiting for their PUBACK), by source partition",
    ["partition"],
)

# partition -> (monotonic time of its last poll by the worker, connected to the broker)
_activity: dict[str, tuple[float, bool]] = {}


def source_activity() -> dict[str, tuple[float, bool]]:
    """Return when the worker last polled each partition here, and whether it is connected.

    Times are `time.monotonic()`: a liveness signal for `flows.health`.
    """
    return dict(_activity)


@dataclass(frozen=True)
class MqttTarget:
    """Where and how to connect: parsed from an `mqtt://` or `mqtts://` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        """Parse `mqtt[s]://[user[:password]@]host[:port]`."""
        parts = urlparse(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            # Whatever comes before an `@` may be a password, even in a URL that is no URL.
            shown = url if "@" not in url else "***@" + url.rpartition("@")[2]
            msg = f"MQTT URL must look like mqtt://host:port or mqtts://host:port, got {shown!r}"
            raise ValueError(msg)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def connect(self, client: mqtt.Client, ca_file: str | None = None) -> None:
        """Configure credentials and TLS on `client`, then start connecting in the background."""
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.connect_async(self.host, self.port, keepalive=30)


def current_connect_error() -> str:
    """Return why the connection attempt paho is handling failed, for `on_connect_fail`.

    paho calls `on_connect_fail` from inside its `except OSError:` without passing the error,
    so the exception being handled is the only place the reason is: a certificate that does
    not verify, a refused port, a name that does not resolve. Without it a TLS mistake would
    be retried forever in silence.
    """
    error = sys.exc_info()[1]
    if error is None:
        return "connection failed"
    return str(error) or type(error).__name__


@dataclass(frozen=True)
class MqttMessage:
    """One MQTT message as the broker handed it over: what this source emits.

    The flow names it (its message id) and decides what it means; the source only receives.
    """

    topic: str
    payload: bytes
    received_at: datetime


@dataclass
class _Received:
    generation: int
    mid: int
    qos: int
    message: MqttMessage


class _MqttPartition(StatefulSourcePartition[MqttMessage, None]):
    """One MQTT client with a persistent session, and the messages it received but not acked.

    paho calls the `_on_*` methods from its network thread; the worker calls `next_batch` and
    `snapshot`. They share only the inbox (thread-safe) and the connection generation.
    """

    def __init__(
        self,
        name: str,
        client_id: str,
        target: MqttTarget,
        subscriptions: list[tuple[str, int]],
        inbox: MqttInbox[_Received],
        *,
        batch_size: int,
        stop: threading.Event,
        pace: PollPace,
        ca_file: str | None = None,
    ) -> None:
        self.name = name
        self.inbox = inbox
        self.batch_size = batch_size
        self.stop = stop
        self._target = target
        self._subscriptions = subscriptions
        # Incremented on every connect: a packet id (mid) only means something on the
        # connection that received it. Written only on paho's thread (`_on_connect`); the
        # worker reads one int, so no lock is needed, and none is taken per message.
        self._generation = 0
        self.connected = False
        self._closing = False
        self.emitted: list[tuple[int, int, int]] = []
        self.sealed: list[tuple[int, int, int]] = []
        self._pace = pace
        # Many messages per read and per pass of paho's loop (connectors.buffered_reads).
        self.client = BufferedClient(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if not without_matcher_cycles(self.client):
            logger.debug("paho's topic matcher is not the one known: left as it is")
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        target.connect(self.client, ca_file)
        self.client.loop_start()

    @override
    def next_batch(self) -> list[MqttMessage]:
        self._ack_sealed()
        if self.stop.is_set():
            raise StopIteration
        batch: list[MqttMessage] = []
        while len(batch) < self.batch_size:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item.qos > 0:
                self.emitted.append((item.generation, item.mid, item.qos))
            batch.append(item.message)
        _activity[self.name] = (time.monotonic(), self.connected)
        self._pace.took(len(batch))
        if batch:
            MQTT_RECEIVED.labels(self.name).inc(len(batch))
        MQTT_UNACKED.labels(self.name).set(len(self.inbox) + len(self.emitted) + len(self.sealed))
        return batch

    @override
    def next_awake(self) -> datetime | None:
        # With messages waiting, at once; else soon, but not spinning (connectors.poll_pace).
        return self._pace.next_awake(not self.inbox.empty())

    @override
    def snapshot(self) -> None:
        # The epoch closes here: what was emitted in it may be acked once it is durable.
        self.sealed.extend(self.emitted)
        self.emitted = []

    @override
    def close(self) -> None:
        _activity.pop(self.name, None)
        self._closing = True
        self.client.loop_stop()
        self.client.disconnect()

    def _ack_sealed(self) -> None:
        current = self._generation
        # A mid from an earlier connection means another message now: the broker will
        # redeliver that one on this connection, so it is acked when seen again.
        self.client.ack_all(
            [(mid, qos) for generation, mid, qos in self.sealed if generation == current]
        )
        self.sealed = []

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: object,
        _properties: object,
    ) -> None:
        if getattr(reason, "is_failure", False):
            logger.warning("MQTT connect to %s refused: %s", self._target.host, reason)
            return
        self._generation += 1
        self.connected = True
        logger.info(
            "MQTT %s connected to %s:%s (session present: %s)",
            self.name,
            self._target.host,
            self._target.port,
            flags.session_present,
        )
        # Subscribing again is harmless with a session present and needed without one.
        client.subscribe(self._subscriptions)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _p: object
    ) -> None:
        self.connected = False
        if self._closing:  # our own stop: nothing to warn about, and no reconnect follows
            logger.info("MQTT %s disconnected (%s)", self.name, reason)
            return
        logger.warning("MQTT %s disconnected (%s); paho reconnects with backoff", self.name, reason)

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        payload = bytes(message.payload)
        received = MqttMessage(message.topic, payload, datetime.now(UTC))
        # Blocking here when the inbox is full (in messages or bytes) stops paho reading the
        # socket: TCP backpressure reaches the broker instead of memory growing.
        self.inbox.put(
            _Received(self._generation, message.mid, message.qos, received), len(payload)
        )

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        logger.warning(
            "MQTT %s cannot connect to %s:%s: %s; paho retries with backoff",
            self.name,
            self._target.host,
            self._target.port,
            current_connect_error(),
        )


class MqttSource(FixedPartitionedSource[MqttMessage, None]):
    """Deliveries from MQTT topics, QoS 1, persistent sessions, acked after durability.

    Each partition is one MQTT client with a stable client id and a persistent session.
    With more than one partition they join a shared subscription so the broker spreads the
    load; a message is redelivered to the same session if the flow dies before acking it.
    In a cluster of `processes`, process `process_id` runs the partitions i with
    i mod processes == process_id, so every session is connected whatever the cluster size
    as long as it has at most `partitions` processes.
    """

    def __init__(
        self,
        url: str,
        topics: list[str],
        *,
        qos: int = 1,
        client_id: str = "vitalflow",
        partitions: int = 1,
        share_group: str = "vitalflow",
        inbox_size: int = 20_000,
        inbox_bytes: int = 64 * 1024 * 1024,
        batch_size: int = 1000,
        busy_poll_ms: float = 2.0,
        ca_file: str | None = None,
        stop: threading.Event | None = None,
        process_id: int = 0,
        processes: int = 1,
    ) -> None:
        self._target = MqttTarget.from_url(url)
        self._topics = topics
        self._qos = qos
        self._client_id = client_id
        self._partitions = partitions
        self._share_group = share_group
        self._inbox_size = inbox_size
        self._inbox_bytes = inbox_bytes
        self._batch_size = batch_size
        self._busy_poll = timedelta(milliseconds=busy_poll_ms)
        self._ca_file = ca_file
        self._stop = stop if stop is not None else threading.Event()
        self._process_id = process_id
        self._processes = processes

    @override
    def list_parts(self) -> list[str]:
        # In a cluster each process offers only its share (partition i on process i mod N):
        # Bytewax makes a worker with access the primary, so the clients spread over the
        # processes instead of landing where a hash of their names puts them.
        return [
            f"mqtt-{i}" for i in range(self._partitions) if i % self._processes == self._process_id
        ]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _MqttPartition:
        # Un-acked messages live in the broker's session, not in our snapshots.
        del step_id, resume_state
        subscriptions = [
            (f"$share/{self._share_group}/{t}" if self._partitions > 1 else t, self._qos)
            for t in self._topics
        ]
        return _MqttPartition(
            for_part,
            f"{self._client_id}-{for_part}",
            self._target,
            subscriptions,
            MqttInbox(self._inbox_size, self._inbox_bytes),
            batch_size=self._batch_size,
            pace=PollPace(busy=self._busy_poll),
            stop=self._stop,
            ca_file=self._ca_file,
        )
