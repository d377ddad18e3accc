"""The Kafka writer against the real broker: what Kafka refuses never stops a write.

A record over the topic's `max.message.bytes` (refused by the broker) and one over the
producer's 1 MiB request limit (refused before sending) each become a small substitute that
says what was refused and why; the records around them are written as usual.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from sinks.kafka_writer import CLOUDEVENTS_JSON, RECORDS_REFUSED, KafkaWriter

pytestmark = pytest.mark.integration


def read_records(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        records: list[Any] = []
        while consumer.position(tp) < end:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_records_kafka_refuses_become_substitutes_and_the_rest_is_written(
    services: Any, unique_id: str, caplog: pytest.LogCaptureFixture
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
            writer.write(topic, records)
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
