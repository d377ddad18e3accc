"""`vitalflow dlq replay`: send dead letters back through the flow, e.g. after registering a device.

A dead letter (Kafka topic `settings.dlq_topic`, or that topic in the demo's embedded SQLite
event log when `settings.event_log_url` names one; written by `flows.dead_letters`) holds
the exact payload bytes of a message the flow could not store, the MQTT topic it came on and
the number of that delivery. Replay re-publishes those bytes at QoS 1 to
`<settings.mqtt_replay_prefix>/<delivery>/<topic>` (see `flows.replay_topic`), which the flow
subscribes to: it processes the copy as the original topic's message, with the same
`message_id` (so nothing can be stored twice), never as a duplicate, and with event ids of its
own. A copy that fails again is dead-lettered again. Letters written before the delivery
number existed replay as delivery 1.

Offsets are committed per consumer group, and only once the broker acknowledged every message
of a batch, so a replay does not repeat what an earlier one already re-published (a crash
between PUBACK and commit repeats at most one batch; storing is idempotent, so that costs
extra events, never a second record).
`from_beginning` rewinds the group. Replay covers the letters present when it starts, not
those its own copies may produce. Records that cannot be decoded are skipped and counted;
records filtered out by `codes` are passed over, and the group's offset moves past them too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

from connectors.mqtt_publisher import MqttPublisher, MqttPublishError, unique_client_id
from flows.model import fingerprint
from flows.replay_topic import replay_topic
from flows.settings import Settings
from sinks.record_writers import SQLITE_PREFIX
from sinks.sqlite_event_log import SqliteEventLog

__all__ = [
    "DeadLetter",
    "DeadLetterDecodeError",
    "ReplayReport",
    "decode_dead_letter",
    "replay",
    "replay_dead_letters",
]

logger = logging.getLogger(__name__)

_BATCH = 200
_POLL_MS = 500
_ACK_TIMEOUT_S = 30.0
# MQTT forbids publishing to wildcards; `$` topics belong to the broker.
_FORBIDDEN_TOPIC_CHARACTERS = ("+", "#", "\x00")


class DeadLetterDecodeError(ValueError):
    """A dead-letter record that does not say which bytes to send where."""


@dataclass(frozen=True)
class DeadLetter:
    """What replay needs from a dead-letter record. `payload` is the original bytes."""

    topic: str
    payload: bytes = field(repr=False)
    message_id: str | None
    code: str | None
    step: str | None
    device_type: str | None
    device_id: str | None
    delivery: int = 1


@dataclass
class ReplayReport:
    """What a replay consumed, re-published, filtered out and could not decode."""

    topic: str
    group_id: str
    dry_run: bool
    consumed: int = 0
    replayed: int = 0
    filtered: int = 0
    undecodable: int = 0
    fingerprint_mismatches: int = 0
    replayed_by_code: Counter[str] = field(default_factory=Counter)
    committed: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def __str__(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.replayed_by_code.items()))
        lines = [
            f"dead letters on {self.topic!r} (group {self.group_id!r}): consumed "
            f"{self.consumed}, {verb} {self.replayed}, filtered out {self.filtered}, "
            f"undecodable {self.undecodable} ({self.elapsed_s:.1f} s)",
            f"  {verb} by code: {codes or 'none'}",
        ]
        if self.fingerprint_mismatches:
            lines.append(
                f"  WARNING: {self.fingerprint_mismatches} records whose payload does not "
                "match their message_id (replayed anyway)"
            )
        if self.dry_run:
            lines.append("  dry run: nothing published, no offsets committed")
        return "\n".join(lines)


def decode_dead_letter(value: bytes | None) -> DeadLetter:
    """Return the dead letter in a Kafka record value, or raise DeadLetterDecodeError."""
    if value is None:
        msg = "record has no value"
        raise DeadLetterDecodeError(msg)
    try:
        record = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"record is not JSON: {exc.__class__.__name__}"
        raise DeadLetterDecodeError(msg) from None
    if not isinstance(record, dict):
        msg = "record is not a JSON object"
        raise DeadLetterDecodeError(msg)
    topic = record.get("topic")
    if (
        not isinstance(topic, str)
        or not topic
        or topic.startswith("$")
        or any(c in topic for c in _FORBIDDEN_TOPIC_CHARACTERS)
        or not _encodable(topic)
    ):
        msg = "record has no topic that can be published to"
        raise DeadLetterDecodeError(msg)
    if record.get("payload_truncated"):
        # Only the first bytes of an oversized payload were kept: replaying them would
        # publish something the device never sent.
        msg = "record holds a truncated payload"
        raise DeadLetterDecodeError(msg)
    reason = record.get("reason")
    reason = reason if isinstance(reason, dict) else {}
    return DeadLetter(
        topic=topic,
        payload=_payload_bytes(record),
        message_id=_text(record.get("message_id")),
        code=_text(reason.get("code")),
        step=_text(reason.get("step")),
        device_type=_text(record.get("device_type")),
        device_id=_text(record.get("device_id")),
        delivery=_delivery_number(record.get("delivery")),
    )


def _encodable(topic: str) -> bool:
    # MQTT topics are UTF-8: a lone surrogate (a letter from another source) cannot be sent,
    # and publishing it would stop the replay at this letter every time.
    try:
        topic.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _delivery_number(value: object) -> int:
    # Absent in letters from before the field existed: those were first deliveries as far as
    # anyone can tell now. A present but unusable value means the record was tampered with.
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 10**9:
        msg = "record has a delivery number that is not a positive integer"
        raise DeadLetterDecodeError(msg)
    return value


def _payload_bytes(record: dict[str, Any]) -> bytes:
    payload = record.get("payload")
    encoding = record.get("payload_encoding", "utf-8")
    if not isinstance(payload, str):
        msg = "record has no payload text"
        raise DeadLetterDecodeError(msg)
    if encoding == "utf-8":
        try:
            return payload.encode("utf-8")
        except UnicodeEncodeError:
            msg = "utf-8 payload holds lone surrogates: the original bytes are lost"
            raise DeadLetterDecodeError(msg) from None
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            msg = "base64 payload is not valid base64"
            raise DeadLetterDecodeError(msg) from None
    msg = f"unknown payload_encoding {encoding!r}"
    raise DeadLetterDecodeError(msg)


def replay(
    settings: Settings,
    *,
    group_id: str,
    from_beginning: bool,
    limit: int | None,
    codes: set[str] | None,
    dry_run: bool,
    timeout_s: float,
) -> int:
    """`vitalflow dlq replay`: replay and print what was replayed; return the exit code."""
    try:
        report = replay_dead_letters(
            settings,
            group_id=group_id,
            from_beginning=from_beginning,
            limit=limit,
            codes=codes,
            dry_run=dry_run,
            timeout_s=timeout_s,
        )
    except (MqttPublishError, ValueError) as exc:
        logger.error("vitalflow dlq replay: %s", exc)
        return 1
    print(report)
    return 0


def replay_dead_letters(
    settings: Settings,
    *,
    group_id: str = "vitalflow-dlq-replay",
    from_beginning: bool = False,
    limit: int | None = None,
    codes: set[str] | None = None,
    dry_run: bool = False,
    timeout_s: float = 5.0,
    ack_timeout_s: float = _ACK_TIMEOUT_S,
) -> ReplayReport:
    """Re-publish the dead letters of `settings.dlq_topic` to their original MQTT topics.

    `limit` caps how many are re-published; `codes` keeps only letters whose
    `reason.code` is one of them; `dry_run` publishes and commits nothing. `timeout_s` is how
    long to wait for records Kafka said were there before giving up on them.
    Raises `MqttPublishError` when the broker cannot be reached or does not acknowledge a
    batch in `ack_timeout_s` (that batch's offsets are then not committed).
    """
    if limit is not None and limit < 0:
        msg = f"limit must not be negative, got {limit}"
        raise ValueError(msg)
    report = ReplayReport(topic=settings.dlq_topic, group_id=group_id, dry_run=dry_run)
    started = time.monotonic()
    replay: _Republisher
    if settings.event_log_url and settings.event_log_url.startswith(SQLITE_PREFIX):
        log = SqliteEventLog(settings.event_log_url.removeprefix(SQLITE_PREFIX))
        replay = _SqliteReplay(settings, log, report, limit, codes, ack_timeout_s)
    elif settings.event_log_url:
        msg = f"cannot read dead letters from event log {settings.event_log_url!r}"
        raise ValueError(msg)
    else:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=group_id,
            client_id=unique_client_id("vitalflow-dlq-replay"),
            enable_auto_commit=False,
            # A group that never replayed starts with the oldest letter still kept.
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
        )
        replay = _Replay(settings, consumer, report, limit, codes, timeout_s, ack_timeout_s)
    try:
        replay.run(from_beginning=from_beginning)
    finally:
        replay.close()
        report.elapsed_s = time.monotonic() - started
    logger.info(
        "dlq replay of %s: consumed %d, %s %d, filtered %d, undecodable %d",
        report.topic,
        report.consumed,
        "would replay" if dry_run else "replayed",
        report.replayed,
        report.filtered,
        report.undecodable,
    )
    return report


class _Republisher:
    """What every replay does with a letter: decode, filter, publish, and wait for acks."""

    def __init__(
        self,
        settings: Settings,
        report: ReplayReport,
        limit: int | None,
        codes: set[str] | None,
        ack_timeout_s: float,
    ) -> None:
        self._settings = settings
        self._report = report
        self._limit = limit
        self._codes = codes
        self._ack_timeout_s = ack_timeout_s
        self._publisher: MqttPublisher | None = None

    def run(self, *, from_beginning: bool) -> None:
        raise NotImplementedError

    @property
    def _limit_reached(self) -> bool:
        return self._limit is not None and self._report.replayed >= self._limit

    def _handle(self, value: bytes | None) -> None:
        report = self._report
        report.consumed += 1
        try:
            letter = decode_dead_letter(value)
        except DeadLetterDecodeError as exc:
            report.undecodable += 1
            logger.warning("dlq replay: skipping a record: %s", exc)
            return
        if self._codes is not None and letter.code not in self._codes:
            report.filtered += 1
            return
        if letter.message_id is not None and letter.message_id != fingerprint(
            letter.topic, letter.payload
        ):
            report.fingerprint_mismatches += 1
        if not report.dry_run:
            target = replay_topic(self._settings.mqtt_replay_prefix, letter.delivery, letter.topic)
            self._connected_publisher().publish(target, letter.payload)
        report.replayed += 1
        report.replayed_by_code[letter.code or "unknown"] += 1

    def _connected_publisher(self) -> MqttPublisher:
        # Connected on first use: a replay with nothing to send does not need the broker.
        if self._publisher is None:
            publisher = MqttPublisher(
                self._settings.mqtt_url,
                client_id=unique_client_id("vitalflow-dlq-replay"),
                ca_file=self._settings.mqtt_ca_file,
            )
            publisher.connect()
            self._publisher = publisher
        return self._publisher

    def _wait_for_acks(self) -> None:
        """Return once the broker has every copy sent so far; raise if it does not in time."""
        publisher = self._publisher
        if publisher is not None and not publisher.wait_for_acks(self._ack_timeout_s):
            missing = publisher.sent - publisher.acked
            msg = f"{missing} replayed messages not acknowledged; offsets not committed"
            raise MqttPublishError(msg)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()


class _SqliteReplay(_Republisher):
    """A replay of the embedded event log's dead letters (the demo's), one partition."""

    def __init__(
        self,
        settings: Settings,
        log: SqliteEventLog,
        report: ReplayReport,
        limit: int | None,
        codes: set[str] | None,
        ack_timeout_s: float,
    ) -> None:
        super().__init__(settings, report, limit, codes, ack_timeout_s)
        self._log = log

    def run(self, *, from_beginning: bool) -> None:
        topic, group = self._settings.dlq_topic, self._report.group_id
        committed = None if from_beginning else self._log.committed(group, topic)
        position = max(committed or 0, self._log.earliest_offset(topic))
        # Letters our own copies produce land after this and wait for the next run.
        end = self._log.latest_offset(topic)
        while position < end and not self._limit_reached:
            records = self._log.read(topic, position, _BATCH)
            if not records:
                return
            handled = position
            for record in records:
                if self._limit_reached or record.offset >= end:
                    break
                self._handle(record.value)
                handled = record.offset + 1
            if handled > position and not self._report.dry_run:
                self._wait_for_acks()
                self._log.commit(group, topic, handled)
                self._report.committed = {0: handled}
            position = handled

    def close(self) -> None:
        super().close()
        self._log.close()


class _Replay(_Republisher):
    """A replay of Kafka's dead letters: the consumer's partitions and where each stands."""

    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        report: ReplayReport,
        limit: int | None,
        codes: set[str] | None,
        timeout_s: float,
        ack_timeout_s: float,
    ) -> None:
        super().__init__(settings, report, limit, codes, ack_timeout_s)
        self._consumer = consumer
        self._timeout_s = timeout_s

    def run(self, *, from_beginning: bool) -> None:
        topic = self._settings.dlq_topic
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            logger.info("dead-letter topic %s does not exist yet: nothing to replay", topic)
            return
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        # Assigned rather than subscribed: no group rebalance to wait for, and the group's
        # committed offsets are still where each partition resumes.
        self._consumer.assign(assigned)
        if from_beginning:
            self._consumer.seek_to_beginning(*assigned)
        # Letters our own copies produce land after this snapshot and wait for the next run.
        end: dict[TopicPartition, int] = self._consumer.end_offsets(assigned)
        done = {tp: self._consumer.position(tp) for tp in assigned}
        idle_since = time.monotonic()
        while not self._limit_reached and any(done[tp] < end[tp] for tp in assigned):
            batch = self._consumer.poll(timeout_ms=_POLL_MS, max_records=_BATCH)
            if not batch:
                # Offsets Kafka skips (transaction markers, compacted records) never arrive
                # as records: the position tells that a partition is through all the same.
                for tp in assigned:
                    done[tp] = max(done[tp], min(self._consumer.position(tp), end[tp]))
                if time.monotonic() - idle_since > self._timeout_s:
                    logger.warning("dlq replay: no records for %g s, stopping", self._timeout_s)
                    return
                continue
            idle_since = time.monotonic()
            handled: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for record in records:
                    if self._limit_reached or record.offset >= end[tp]:
                        break
                    self._handle(record.value)
                    handled[tp] = record.offset + 1
            done |= handled
            self._commit(handled)

    def _commit(self, handled: dict[TopicPartition, int]) -> None:
        if self._report.dry_run or not handled:
            return
        self._wait_for_acks()
        self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in handled.items()})
        self._report.committed |= {tp.partition: o for tp, o in handled.items()}

    def close(self) -> None:
        super().close()
        self._consumer.close(autocommit=False)
