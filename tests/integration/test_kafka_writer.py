"""The Kafka writer against the real broker: what Kafka refuses never stops a write.

A record over the topic's `max.message.bytes` (refused by the broker) and one over the
producer's 1 MiB request limit (refused before sending) each become a small substitute that
says what was refused and why; the records around them are written as usual. Both ways of
writing are tested: `write`, and the dataflow's `send` + `sync` (whole batches queued in the
producer, `sinks.kafka_batches`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecords

from sinks import record_writers
from sinks.kafka_writer import CLOUDEVENTS_JSON, RECORDS_REFUSED, KafkaWriter, Record
from sinks.record_writers import TopicSpec

pytestmark = pytest.mark.integration


def read_records(bootstrap: str, topic: str, partitions: int = 1) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def write_as(writer: KafkaWriter, how: str, topic: str, records: list[Record]) -> None:
    if how == "write":
        writer.write(topic, records)
        return
    if how == "send+sync without batches":
        writer._appender = None  # as with a kafka-python lacking what the batch path needs
    # The dataflow's way: batches sent during the epoch, all durable at its end.
    middle = len(records) // 2
    writer.send(topic, records[:middle])
    writer.send(topic, records[middle:])
    writer.sync()


@pytest.mark.parametrize("how", ["write", "send+sync", "send+sync without batches"])
def test_records_kafka_refuses_become_substitutes_and_the_rest_is_written(
    services: Any, unique_id: str, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    topic = f"vitalflow.test.refusals-{unique_id}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "20000"})])
    admin.close()
    event = {
        "specversion": "1.0",
        "id": "m1/2_payload_parsed",
        "source": "vitalflow",
        "type": "vitalflow.step.2_payload_parsed",
        "data": {"message_id": "m1", "step": "2_payload_parsed", "payload": "x" * 50_000},
    }
    records = [
        ("dev-a", b'{"n": 1}'),
        ("dev-b", json.dumps(event).encode()),  # the broker refuses it (over 20,000 bytes)
        ("dev-c", b"\x00" * (2 * 1024 * 1024)),  # the producer refuses it (over 1 MiB)
        ("dev-d", b'{"n": 2}'),
    ]
    refused_before = RECORDS_REFUSED.labels(topic, "MessageSizeTooLargeError")._value.get()
    writer = KafkaWriter(services.kafka_bootstrap, {topic: CLOUDEVENTS_JSON})
    try:
        with caplog.at_level(logging.ERROR, logger="sinks.kafka_writer"):
            write_as(writer, how, topic, records)
    finally:
        writer.close()

    written = read_records(services.kafka_bootstrap, topic)
    by_key = {r.key.decode(): r for r in written}
    assert sorted(by_key) == ["dev-a", "dev-b", "dev-c", "dev-d"]
    assert json.loads(by_key["dev-a"].value) == {"n": 1}
    assert json.loads(by_key["dev-d"].value) == {"n": 2}
    assert all(r.headers == [("content-type", CLOUDEVENTS_JSON)] for r in written)
    # A refused event stays an event: its small fields are kept, the large one left out.
    substitute = json.loads(by_key["dev-b"].value)
    assert substitute["id"] == event["id"] and substitute["data"]["message_id"] == "m1"
    assert substitute["data"]["payload"] is None
    refused = substitute["data"]["refused"]
    assert refused["omitted"] == ["payload"] and refused["bytes"] > 50_000
    assert "MessageSizeTooLargeError" in refused["error"]
    other = json.loads(by_key["dev-c"].value)
    assert other["refused"]["bytes"] == 2 * 1024 * 1024
    assert "MessageSizeTooLargeError" in other["refused"]["error"]
    assert len([r for r in caplog.records if "Kafka refused a record" in r.message]) == 2
    refused_after = RECORDS_REFUSED.labels(topic, "MessageSizeTooLargeError")._value.get()
    assert refused_after - refused_before == 2


def test_sent_batches_arrive_once_in_order_per_key_where_send_would_put_them(
    services: Any, unique_id: str
) -> None:
    topic = f"vitalflow.test.batches-{unique_id}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(f"{topic}.probe", 3, 1)])
    admin.close()
    keys = [f"device-{i}" for i in range(40)]
    # ~3 MB in all: several batches per partition (256 KiB each), three sends, one sync.
    records = [(keys[n % 40], json.dumps({"n": n, "pad": "x" * 900}).encode()) for n in range(3000)]
    writer = KafkaWriter(services.kafka_bootstrap, {topic: CLOUDEVENTS_JSON})
    try:
        # The pinned kafka-python takes whole batches; a version without the internals
        # `sinks.kafka_batches` relies on would silently fall back to `send` per record.
        assert writer._appender is not None
        for start in range(0, 3000, 1000):
            writer.send(topic, records[start : start + 1000])
        writer.sync()
    finally:
        writer.close()

    written = read_records(services.kafka_bootstrap, topic, partitions=3)
    assert len(written) == 3000
    assert all(r.headers == [("content-type", CLOUDEVENTS_JSON)] for r in written)
    by_key: dict[str, list[int]] = {}
    for r in sorted(written, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(r.key.decode(), []).append(json.loads(r.value)["n"])
    assert by_key == {k: list(range(i, 3000, 40)) for i, k in enumerate(keys)}
    # Each key on the partition a plain `KafkaProducer.send` gives it (murmur2, as Java).
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap)
    try:
        probes = {k: producer.send(f"{topic}.probe", key=k.encode(), value=b"{}") for k in keys}
        expected = {k: future.get(timeout=30).partition for k, future in probes.items()}
    finally:
        producer.close()
    assert {r.key.decode(): r.partition for r in written} == expected


def batch_codecs_on_disk(bootstrap: str, topic: str) -> list[int]:
    """Return the compression codec of every record batch of `topic`'s partition 0, as stored.

    Read from the broker's own log segment (its directory as the broker reports it): the
    consumer decompresses without saying, so only the file shows what was sent.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_log_dirs()
    finally:
        admin.close()
    (log_dir,) = {d["log_dir"] for broker in described for d in broker["log_dirs"]}
    segments = sorted(Path(log_dir, f"{topic}-0").glob("*.log"))
    codecs = []
    for segment in segments:
        records = MemoryRecords(segment.read_bytes())
        while (batch := records.next_batch()) is not None:
            codecs.append(batch.compression_type)
    return codecs


@pytest.mark.parametrize("how", ["write", "send+sync"])
def test_lz4_batches_are_stored_compressed_and_read_back_as_written(
    services: Any, unique_id: str, how: str
) -> None:
    topic, plain = f"vitalflow.test.lz4-{unique_id}", f"vitalflow.test.plain-{unique_id}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1), NewTopic(plain, 1, 1)])
    admin.close()
    # Step-event-like values: repetitive JSON, as the flow's are.
    records = [
        (f"device-{n % 7}", json.dumps({"n": n, "step": "2_payload_parsed", "pad": "ab" * 200}))
        for n in range(600)
    ]
    encoded = [(key, value.encode()) for key, value in records]
    writer = KafkaWriter(services.kafka_bootstrap, {topic: CLOUDEVENTS_JSON}, "lz4")
    try:
        write_as(writer, how, topic, encoded)
    finally:
        writer.close()

    written = read_records(services.kafka_bootstrap, topic)
    assert [(r.key.decode(), r.value) for r in written] == encoded
    assert all(r.headers == [("content-type", CLOUDEVENTS_JSON)] for r in written)
    codecs = batch_codecs_on_disk(services.kafka_bootstrap, topic)
    assert codecs and set(codecs) == {DefaultRecordBatch.CODEC_LZ4}
    # And uncompressed by default: the test above would pass on any writer otherwise.
    writer = KafkaWriter(services.kafka_bootstrap, {plain: CLOUDEVENTS_JSON})
    try:
        write_as(writer, how, plain, encoded[:10])
    finally:
        writer.close()
    assert set(batch_codecs_on_disk(services.kafka_bootstrap, plain)) == {
        DefaultRecordBatch.CODEC_NONE
    }


def test_a_new_writer_learns_every_topics_partitions_before_its_first_send(
    services: Any, unique_id: str
) -> None:
    # Otherwise the first batch to each topic (the first dead letter, the first alert) waits
    # for a metadata round trip, and the worker with it.
    topics = {f"vitalflow.test.warm-{unique_id}-{n}": 2 + n for n in range(3)}
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    admin.create_topics([NewTopic(name, count, 1) for name, count in topics.items()])
    admin.close()
    writer = KafkaWriter(services.kafka_bootstrap, dict.fromkeys(topics, CLOUDEVENTS_JSON))
    try:
        metadata = writer._producer._metadata
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            metadata.partitions_for_topic(name) is None for name in topics
        ):
            time.sleep(0.05)
        assert {name: len(metadata.partitions_for_topic(name) or ()) for name in topics} == topics
    finally:
        writer.close()


def test_writers_opened_ahead_are_handed_out_first_and_then_new_ones(
    services: Any, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Traced(KafkaWriter):
        def __init__(self, *args: Any) -> None:
            self.opened_on = threading.current_thread().name
            super().__init__(*args)

    monkeypatch.setattr(record_writers, "KafkaWriter", Traced)
    spec = TopicSpec(2, CLOUDEVENTS_JSON)
    topics = {f"vitalflow.test.ahead-{unique_id}-{n}": spec for n in range(2)}
    opening = record_writers.open_writers_ahead(services.kafka_bootstrap, topics, 2)
    other = {f"vitalflow.test.ahead-{unique_id}-other": TopicSpec(1, CLOUDEVENTS_JSON)}
    writers = [
        record_writers.open_record_writer(None, services.kafka_bootstrap, other),
        record_writers.open_record_writer(None, services.kafka_bootstrap, topics),
        record_writers.open_record_writer(None, services.kafka_bootstrap, topics),
        record_writers.open_record_writer(None, services.kafka_bootstrap, topics),
    ]
    opening.join(timeout=30)
    try:
        here = threading.current_thread().name
        # Other topics get a writer of their own; these get the two opened ahead, then new.
        assert [getattr(w, "opened_on", None) for w in writers] == [
            here,
            "vitalflow-kafka-ahead",
            "vitalflow-kafka-ahead",
            here,
        ]
        assert len({id(w) for w in writers}) == 4
        for name in topics:  # created by the thread that opened them
            writers[1].write(name, [("k", b"v")])
        assert [len(read_records(services.kafka_bootstrap, name, 2)) for name in topics] == [1, 1]
    finally:
        for writer in writers:
            writer.close()
