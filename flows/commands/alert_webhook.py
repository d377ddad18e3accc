"""`vitalflow alerts webhook`: deliver every alert on the alerts topic to a signed webhook.

A consumer of its own (group `settings.alert_webhook_group`) rather than a step of the flow:
the flow never waits for a slow or absent receiver, and delivery resumes after a restart
from the group's committed offset. An offset is committed once its record was delivered (or
refused for good), so delivery is at least once; the alert id in the body and in
`X-Vitalflow-Alert-Id` lets a receiver drop a repeat, and this process skips ids it has
already delivered itself. A group that never committed starts at the oldest alert still kept.

Reads Kafka, or the demo's embedded SQLite log (`VITALFLOW_EVENT_LOG_URL=sqlite:///...`),
whose consumer groups keep offsets the same way.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from flows.settings import Settings, without_password
from sinks.record_writers import SQLITE_PREFIX
from sinks.sqlite_event_log import SqliteEventLog
from sinks.webhook import Outcome, WebhookSender

__all__ = ["WebhookReport", "deliver_alerts", "serve_webhook"]

logger = logging.getLogger(__name__)

_REMEMBERED_IDS = 10_000
_POLL_S = 0.5
_BATCH = 100


@dataclass
class WebhookReport:
    """What one run delivered."""

    delivered: int = 0
    refused: int = 0
    repeats: int = 0

    def __str__(self) -> str:
        return (
            f"alerts: {self.delivered} delivered, {self.refused} refused by the receiver, "
            f"{self.repeats} repeats skipped"
        )


def serve_webhook(settings: Settings) -> int:
    """Run the delivery until interrupted; return the exit code."""
    if not settings.alert_webhook_url or not settings.alert_webhook_secret:
        logger.error(
            "vitalflow alerts webhook: set VITALFLOW_ALERT_WEBHOOK_URL and "
            "VITALFLOW_ALERT_WEBHOOK_SECRET (receivers check the HMAC signature)"
        )
        return 2
    stop = threading.Event()
    try:
        report = deliver_alerts(settings, stop)
    except KeyboardInterrupt:
        stop.set()
        return 130
    except ValueError as exc:
        logger.error("vitalflow alerts webhook: %s", exc)
        return 2
    print(report)
    return 0


def deliver_alerts(settings: Settings, stop: threading.Event) -> WebhookReport:
    """Deliver alerts from the topic to the webhook until `stop` is set."""
    sender = WebhookSender(settings.alert_webhook_url or "", settings.alert_webhook_secret or "")
    delivery = _Delivery(sender, stop)
    logger.info(
        "vitalflow alerts webhook: %s (group %s) -> %s",
        settings.event_log_url or f"kafka {settings.kafka_bootstrap} {settings.alerts_topic}",
        settings.alert_webhook_group,
        without_password(sender.url),
    )
    if settings.event_log_url and settings.event_log_url.startswith(SQLITE_PREFIX):
        _from_sqlite(settings, delivery)
    else:
        _from_kafka(settings, delivery)
    return delivery.report


class _Delivery:
    def __init__(self, sender: WebhookSender, stop: threading.Event) -> None:
        self.sender = sender
        self.stop = stop
        self.report = WebhookReport()
        self._done: OrderedDict[str, None] = OrderedDict()

    def handle(self, value: bytes) -> bool:
        """Deliver one record; False when stopped before it was delivered (do not commit)."""
        alert_id = _alert_id(value)
        if alert_id in self._done:
            self.report.repeats += 1
            return True
        outcome = self.sender.deliver(value, alert_id, self.stop)
        if outcome is Outcome.STOPPED:
            return False
        if outcome is Outcome.DELIVERED:
            self.report.delivered += 1
        else:
            self.report.refused += 1
        self._done[alert_id] = None
        while len(self._done) > _REMEMBERED_IDS:
            self._done.popitem(last=False)
        return True


def _alert_id(value: bytes) -> str:
    try:
        event = json.loads(value)
    except ValueError:
        return "unreadable"
    return str(event.get("id")) if isinstance(event, dict) else "unreadable"


def _from_sqlite(settings: Settings, delivery: _Delivery) -> None:
    log = SqliteEventLog((settings.event_log_url or "").removeprefix(SQLITE_PREFIX))
    topic, group = settings.alerts_topic, settings.alert_webhook_group
    try:
        position = log.committed(group, topic)
        if position is None:
            position = log.earliest_offset(topic)
        while not delivery.stop.is_set():
            records = log.read(topic, position, _BATCH)
            if not records:
                delivery.stop.wait(_POLL_S)
                continue
            for record in records:
                if not delivery.handle(record.value):
                    return
                position = record.offset + 1
                log.commit(group, topic, position)
    finally:
        log.close()


def _from_kafka(settings: Settings, delivery: _Delivery) -> None:
    consumer = KafkaConsumer(
        settings.alerts_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.alert_webhook_group,
        client_id="vitalflow-alert-webhook",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # A receiver that is down for a while keeps one record in retry: that must not cost
        # the group its partition (Kafka's default gives up on a consumer after 5 minutes).
        max_poll_interval_ms=24 * 3600 * 1000,
        max_poll_records=_BATCH,
    )
    try:
        while not delivery.stop.is_set():
            for partition, records in consumer.poll(timeout_ms=int(_POLL_S * 1000)).items():
                for record in records:
                    if not delivery.handle(record.value):
                        return
                    _commit(consumer, partition, record.offset + 1)
    finally:
        consumer.close()


def _commit(consumer: KafkaConsumer, partition: TopicPartition, offset: int) -> None:
    try:
        consumer.commit({partition: OffsetAndMetadata(offset, "", -1)})
    except (CommitFailedError, KafkaError) as exc:
        # The partition moved to another member: it redelivers from the last commit, and the
        # receiver drops the repeat by its alert id.
        logger.warning("alert webhook: offset %d of %s not committed: %s", offset, partition, exc)
