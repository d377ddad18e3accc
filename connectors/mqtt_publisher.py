"""Publishing to the MQTT broker at QoS 1 and knowing when the broker has every message.

Used by the simulator and by dead-letter replay: both must not report a message as sent, nor
commit a Kafka offset, before the broker's PUBACK says it holds the message.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from connectors.mqtt_source import MqttTarget, current_connect_error

__all__ = ["MqttPublishError", "MqttPublisher", "unique_client_id"]

logger = logging.getLogger(__name__)

_QOS = 1
# paho's default of 20 unacknowledged messages caps throughput at 20 per round trip.
_DEFAULT_MAX_INFLIGHT = 200


class MqttPublishError(ConnectionError):
    """The broker could not be reached, refused us, or would not take a message."""


def unique_client_id(prefix: str) -> str:
    """Return `prefix` plus a random suffix, so two publishers never take over one session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class MqttPublisher:
    """A paho-mqtt 2.x client (MQTT 3.1.1, clean session) that counts PUBACKs.

    `publish` queues a message at QoS 1 and returns at once; `wait_for_acks` blocks until the
    broker acknowledged everything published so far. paho re-sends un-acknowledged messages
    after a reconnect, so a dropped connection delays acks rather than losing messages.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        ca_file: str | None = None,
        max_inflight: int = _DEFAULT_MAX_INFLIGHT,
    ) -> None:
        self._target = MqttTarget.from_url(url)
        self._ca_file = ca_file
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._refusal: str | None = None
        self._acks = threading.Condition()
        self._sent = 0
        self._acked = 0
        self._started = False

    @property
    def sent(self) -> int:
        """Messages handed to the client so far."""
        return self._sent

    @property
    def acked(self) -> int:
        """Messages the broker acknowledged so far."""
        with self._acks:
            return self._acked

    @property
    def endpoint(self) -> str:
        """`host:port` of the broker, without credentials (fit for logs)."""
        return f"{self._target.host}:{self._target.port}"

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and wait for the broker's CONNACK; raise MqttPublishError if none comes."""
        try:
            self._target.connect(self._client, self._ca_file)
        except (OSError, ValueError) as exc:
            msg = f"cannot connect to MQTT broker {self.endpoint}: {exc}"
            raise MqttPublishError(msg) from exc
        self._client.loop_start()
        self._started = True
        if not self._connected.wait(timeout_s):
            reason = self._refusal or f"no CONNACK within {timeout_s:g} s"
            self.close()
            msg = f"cannot connect to MQTT broker {self.endpoint}: {reason}"
            raise MqttPublishError(msg)

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue `payload` for `topic` at QoS 1; the broker's ack is counted when it comes."""
        info = self._client.publish(topic, payload, qos=_QOS)
        # NO_CONN is fine: paho keeps QoS 1 messages and sends them once reconnected.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            msg = f"MQTT publish refused by the client: {mqtt.error_string(info.rc)}"
            raise MqttPublishError(msg)
        self._sent += 1

    def wait_for_acks(self, timeout_s: float) -> bool:
        """Block until every published message is acknowledged; False if `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        with self._acks:
            while self._acked < self._sent:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acks.wait(remaining)
        return True

    def close(self) -> None:
        """Disconnect and stop the network thread (un-acknowledged messages are dropped)."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def __enter__(self) -> MqttPublisher:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refusal = f"refused: {reason}"
            logger.warning("MQTT broker %s refused the connection: %s", self.endpoint, reason)
            return
        self._connected.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self._refusal = current_connect_error()
        logger.warning("cannot connect to MQTT broker %s: %s", self.endpoint, self._refusal)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._started and reason.is_failure:
            logger.warning("MQTT connection to %s lost (%s); reconnecting", self.endpoint, reason)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._acks:
            self._acked += 1
            self._acks.notify_all()
