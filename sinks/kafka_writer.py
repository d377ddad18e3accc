"""Writing records durably to Kafka with kafka-python: acks=all, every wait bounded and reported.

`write` returns only once every record is acknowledged, because the MQTT source acks a message
only after its epoch is durable. The dataflow's sinks use `send` and `sync` instead: `send`
hands the records to the producer and returns, `sync` (at the end of the epoch) waits until
all are acknowledged and writes what failed again the careful way `write` does. Waiting is
therefore allowed, silence is not: a flush that
takes longer than `_WAIT_REPORT_S` is logged (topic, how many records, for how long) every time
it does, and a broker back from an outage is reconnected to within about a second.

A record Kafka refuses for what it is (too large, invalid) will be refused again however often
it is sent. It must not stop the flow, so it is replaced by a small substitute saying what was
refused and why, logged as an error and counted in `vitalflow_kafka_records_refused_total`;
the rest of the batch is written as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.producer.future import FutureRecordMetadata
from prometheus_client import Counter

from sinks.kafka_batches import MAX_VALUE_BYTES, BatchAppender, QueuedBatch

__all__ = [
    "CLOUDEVENTS_JSON",
    "PLAIN_JSON",
    "RECORDS_REFUSED",
    "KafkaWriter",
    "ensure_topics",
    "substitute_for",
]

logger = logging.getLogger(__name__)

CLOUDEVENTS_JSON = b"application/cloudevents+json"
PLAIN_JSON = b"application/json"

RECORDS_REFUSED = Counter(
    "vitalflow_kafka_records_refused",
    "Records Kafka refused for what they are (too large, invalid), replaced by a substitute",
    ["topic", "error"],
)

# Errors that are about the record itself: sending it again cannot succeed.
_REFUSALS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
)
# Any other error that says "do not retry" (a fenced or confused idempotent producer, an
# authorization change) is retried with a new producer this many times before the record is
# taken as refused: a stall that never ends is as bad as a crash loop.
_MAX_FATAL_ATTEMPTS = 5
# How long one flush waits before the wait is reported (and the flush resumed).
_WAIT_REPORT_S = 5.0
_MAX_RETRY_DELAY_S = 5.0
# A value larger than this in a substitute is replaced by None (see `substitute_for`).
_SUBSTITUTE_FIELD_BYTES = 1024
# Bounded waits: Kafka's defaults (60 s blocking in send, 120 s per delivery, 30 s between
# reconnects) are what made an outage look like a silent hang that outlasted the broker.
_PRODUCER_TIMEOUTS: dict[str, int] = {
    "max_block_ms": 5_000,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 30_000,
    "reconnect_backoff_ms": 100,
    "reconnect_backoff_max_ms": 1_000,
    "bootstrap_timeout_ms": 5_000,
}

Record = tuple[str, bytes]


@dataclass
class _Pending:
    record: Record
    # A substitute that is refused too is dropped (and logged), never substituted again.
    substitute: bool = False
    fatal: int = 0


# A record's error (None once acknowledged), and whether it is certainly that record's own.
_Outcome = tuple[KafkaError | None, bool]


def ensure_topics(
    bootstrap: str, topics: dict[str, int], configs: dict[str, str] | None = None
) -> None:
    """Create the topics that do not exist yet (with `configs`); wait, saying so, for Kafka."""
    delay = 0.5
    started = time.monotonic()
    while True:
        try:
            _create_missing_topics(bootstrap, topics, configs or {})
        except KafkaError as exc:
            logger.warning(
                "Kafka at %s unreachable for %.0f s (%s); the flow waits for it (step events, "
                "dead letters), retrying in %.1f s",
                bootstrap,
                time.monotonic() - started,
                _describe(exc),
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_DELAY_S)
        else:
            return


def _create_missing_topics(bootstrap: str, topics: dict[str, int], configs: dict[str, str]) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="vitalflow-admin",
        bootstrap_timeout_ms=_PRODUCER_TIMEOUTS["bootstrap_timeout_ms"],
        request_timeout_ms=_PRODUCER_TIMEOUTS["request_timeout_ms"],
        reconnect_backoff_max_ms=_PRODUCER_TIMEOUTS["reconnect_backoff_max_ms"],
    )
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=parts, replication_factor=1, topic_configs=configs)
            for name, parts in topics.items()
            if name not in existing
        ]
        if new:
            # Another process may create them at the same moment: that is fine too.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


def substitute_for(value: bytes, error: str) -> bytes:
    """Return a small record standing in for `value`, which Kafka refused with `error`.

    It keeps the record's shape where it can: the fields of a JSON object (for a CloudEvent,
    of its `data`) stay, except values over 1 KiB encoded, which become None; `refused` says
    how large the original was, its SHA-256, which fields were left out, and why.
    """
    refused: dict[str, Any] = {
        "bytes": len(value),
        "sha256": hashlib.sha256(value).hexdigest(),
        "error": error[:_SUBSTITUTE_FIELD_BYTES],
    }
    try:
        original = json.loads(value)
    except ValueError:
        original = None
    if not isinstance(original, dict):
        return json.dumps({"refused": refused}).encode()
    data = original.get("data")
    fields = data if original.get("specversion") and isinstance(data, dict) else original
    omitted = [k for k, v in fields.items() if len(json.dumps(v)) > _SUBSTITUTE_FIELD_BYTES]
    for name in omitted:
        fields[name] = None
    for name in [k for k in original if len(json.dumps(original[k])) > _SUBSTITUTE_FIELD_BYTES]:
        if original[name] is not fields:
            original[name] = None
            omitted.append(name)
    fields["refused"] = refused | {"omitted": omitted}
    return json.dumps(original).encode()


def _message_of(record: bytes) -> dict[str, str]:
    """Return the `message_id` and `step` a step event or dead letter is about, for logs."""
    try:
        fields = json.loads(record)
    except ValueError:
        return {}
    if not isinstance(fields, dict):
        return {}
    if fields.get("specversion") and isinstance(fields.get("data"), dict):
        fields = fields["data"]
    reason = fields.get("reason")
    step = fields.get("step") or (reason.get("step") if isinstance(reason, dict) else None)
    about = {"message_id": fields.get("message_id"), "step": step}
    return {name: str(value) for name, value in about.items() if value is not None}


class KafkaWriter:
    """A producer whose `write` returns only once every record is acknowledged by the broker."""

    def __init__(
        self,
        bootstrap: str,
        content_types: dict[str, bytes] | None = None,
        compression: str = "none",
    ) -> None:
        self._bootstrap = bootstrap
        # Each record batch is compressed whole: "none", "gzip" or "lz4" (flows.settings).
        self._compression = None if compression == "none" else compression
        # The content type of each topic's records; a topic not named gets no header.
        self._content_types = content_types or {}
        self._producer = self._new_producer()
        self._appender = self._new_appender()
        self._warm()
        # What `send` handed to the producer as whole batches, and what it left for `sync`
        # to write the careful way.
        self._queued: list[QueuedBatch] = []
        self._unsent: list[tuple[str, list[Record]]] = []

    def _new_producer(self) -> KafkaProducer:
        while True:
            try:
                return KafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    # The idempotent producer keeps per-partition order with up to 5 requests
                    # in flight; large batches matter because kafka-python's cost is per
                    # request.
                    enable_idempotence=True,
                    max_in_flight_requests_per_connection=5,
                    # Batches arrive whole (`sinks.kafka_batches`): lingering would only delay
                    # them (+20 ms publish -> step 5 on Kafka at p50 with 50 ms).
                    linger_ms=0,
                    batch_size=256 * 1024,
                    compression_type=self._compression,
                    client_id="vitalflow",
                    **_PRODUCER_TIMEOUTS,
                )
            except KafkaError as exc:
                logger.warning(
                    "Kafka at %s unreachable (%s); retrying in 1 s", self._bootstrap, _describe(exc)
                )
                time.sleep(1.0)

    def _new_appender(self) -> BatchAppender | None:
        if BatchAppender.usable(self._producer):
            return BatchAppender(self._producer, _PRODUCER_TIMEOUTS["max_block_ms"])
        logger.info(
            "kafka-python internals differ from those sinks/kafka_batches.py knows: records "
            "are written one by one at each epoch's end"
        )
        return None

    def _headers(self, topic: str) -> list[tuple[str, bytes]]:
        content_type = self._content_types.get(topic)
        return [("content-type", content_type)] if content_type else []

    def write(self, topic: str, records: list[Record]) -> None:
        """Send `(key, value)` records and block until all are durable, retrying failures.

        A record refused for what it is becomes its substitute; everything else is retried
        until Kafka acknowledges it.
        """
        pending = [_Pending(record) for record in records]
        alone = False
        delay = 0.5
        started = time.monotonic()
        while pending:
            send = self._send_alone if alone else self._send_all
            outcomes = send(topic, [p.record for p in pending])
            retry: list[_Pending] = []
            last: KafkaError | None = None
            alone = renew = False
            for item, (error, certain) in zip(pending, outcomes, strict=True):
                if error is None:
                    continue
                # A non-retriable error leaves an idempotent producer unusable.
                renew = renew or not error.retriable
                if not error.retriable and certain:
                    if isinstance(error, _REFUSALS) or item.fatal >= _MAX_FATAL_ATTEMPTS:
                        self._refuse(topic, item, error, retry)
                        continue
                    item.fatal += 1
                elif not error.retriable:
                    # kafka-python fails every record in flight (and the producer for good)
                    # when the broker refuses one: find which, one record at a time.
                    alone = True
                last = error
                retry.append(item)
            if renew:
                self._renew_producer()
            if last is not None:
                logger.warning(
                    "Kafka at %s: %d of %d records to %s not written after %.1f s (%s); "
                    "retrying in %.1f s, the flow waits until they are durable",
                    self._bootstrap,
                    len(retry),
                    len(records),
                    topic,
                    time.monotonic() - started,
                    _describe(last),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY_S)
            pending = retry

    def send(self, topic: str, records: list[Record]) -> None:
        """Hand `(key, value)` records to the producer; `sync` returns once they are durable."""
        if self._unsent or self._appender is None:
            # Kafka was away for an earlier batch, or this kafka-python lacks what the batch
            # path needs: `sync` writes these the careful way, in order.
            self._unsent.append((topic, records))
            return
        # Whole batches (`sinks.kafka_batches`), up to a record too large for them.
        cut = next(
            (i for i, (_, value) in enumerate(records) if len(value) > MAX_VALUE_BYTES),
            len(records),
        )
        try:
            self._queued.extend(self._appender.append(topic, records[:cut], self._headers(topic)))
        except KafkaError:
            cut = 0  # no metadata (Kafka away): `write` sorts it out at `sync`
        if cut < len(records):
            self._unsent.append((topic, records[cut:]))

    def sync(self) -> None:
        """Return once every record `send` took is acknowledged, writing failures again."""
        queued, unsent = self._queued, self._unsent
        self._queued, self._unsent = [], []
        if queued:
            self._flush(queued[0].topic, sum(len(q.records) for q in queued))
        # A batch the producer could not deliver (or split, being too large for the broker)
        # is written again record by record; a record that did arrive is then there twice,
        # with the same event id, which consumers already drop (redeliveries do the same).
        again = [(q.topic, q.records) for q in queued if not q.acknowledged]
        for topic, records in again + unsent:
            # Retries, substitutes for refused records and the warnings: as for `write`.
            self.write(topic, records)

    def _refuse(self, topic: str, item: _Pending, error: KafkaError, retry: list[_Pending]) -> None:
        if item.substitute:
            logger.error(
                "Kafka refused the substitute for a record to %s too: %s",
                topic,
                _describe(error),
            )
            return
        retry.append(_Pending(self._refused(topic, item.record, error), substitute=True))

    def _send_all(self, topic: str, records: list[Record]) -> list[_Outcome]:
        """Send and flush `records`; return each one's error (None once acknowledged)."""
        outcomes: list[_Outcome] = [(None, True)] * len(records)
        futures: list[tuple[int, FutureRecordMetadata]] = []
        headers = self._headers(topic)
        for index, (key, value) in enumerate(records):
            try:
                future = self._producer.send(topic, key=key.encode(), value=value, headers=headers)
            except KafkaError as exc:
                # Raised by `send` itself: about this record alone (or about Kafka's absence).
                outcomes[index] = (exc, True)
                if exc.retriable:
                    # No metadata (Kafka is away): each of the rest would block as long.
                    outcomes[index + 1 :] = [(exc, True)] * (len(records) - index - 1)
                    break
                continue
            futures.append((index, future))
        self._flush(topic, len(futures))
        for index, future in futures:
            try:
                future.get(timeout=0)
            except KafkaError as exc:
                outcomes[index] = (exc, len(futures) == 1)
        return outcomes

    def _send_alone(self, topic: str, records: list[Record]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        for record in records:
            [outcome] = self._send_all(topic, [record])
            outcomes.append(outcome)
            error = outcome[0]
            if error is not None and not error.retriable:
                self._renew_producer()
        return outcomes

    def _flush(self, topic: str, count: int) -> None:
        # Bounded by delivery_timeout_ms: afterwards every future has failed or succeeded.
        started = time.monotonic()
        while True:
            try:
                self._producer.flush(timeout=_WAIT_REPORT_S)
            except KafkaTimeoutError:
                logger.warning(
                    "Kafka at %s: %d records to %s not acknowledged after %.0f s; "
                    "the flow waits until they are durable",
                    self._bootstrap,
                    count,
                    topic,
                    time.monotonic() - started,
                )
            except KafkaError:
                # kafka-python's flush can give up early ("Future not done"); the futures
                # still tell what became of each record.
                return
            else:
                return

    def _refused(self, topic: str, record: Record, error: KafkaError) -> Record:
        key, value = record
        reason = _describe(error)
        RECORDS_REFUSED.labels(topic, type(error).__name__).inc()
        substitute = substitute_for(value, reason)
        logger.error(
            "Kafka refused a record of %d bytes to %s (key %r): %s; writing a substitute",
            len(value),
            topic,
            key[:100],
            reason,
            extra=_message_of(substitute),
        )
        return key, substitute

    def _renew_producer(self) -> None:
        # A non-retriable producer state (a fenced or out-of-sequence idempotent producer)
        # outlives the error: only a new producer (a new producer id) gets past it.
        with contextlib.suppress(KafkaError):
            self._producer.close(timeout=0)
        self._producer = self._new_producer()
        self._appender = self._new_appender()
        self._warm()

    def _warm(self) -> None:
        # Metadata for every topic this writer may get, fetched while nothing waits for it.
        if self._appender is not None:
            self._appender.warm(self._content_types)

    def close(self) -> None:
        """Flush and close the producer.

        What was sent and never synced belongs to an epoch that did not complete: its MQTT
        messages were not acked and come again, so nothing waits here for an absent Kafka.
        """
        self._producer.close(timeout=10)


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no error"
    text = str(error)
    text = text if len(text) <= 300 else text[:300] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
