"""Dead-letter replay without services: decoding records, and the replay loop over fakes.

Records are built with the flow's own writer (`flows.dead_letters`), so these tests also hold
the writer and the reader of the dead-letter topic to one format.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka.structs import TopicPartition

import flows.commands.dlq_replay as dlq_replay
from connectors.mqtt_publisher import MqttPublishError
from flows.commands.dlq_replay import DeadLetterDecodeError, decode_dead_letter, replay_dead_letters
from flows.dead_letters import dead_letters
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus, fingerprint
from flows.settings import Settings
from sinks.sqlite_event_log import SqliteEventLog

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DLQ = "vitalflow.dlq.test"
SETTINGS = Settings(dlq_topic=DLQ, mqtt_url="mqtt://127.0.0.1:1", kafka_bootstrap="127.0.0.1:1")

Record = namedtuple("Record", ["offset", "value"])


def dead_letter(
    topic: str, payload: bytes, code: str = "unknown_device", delivery_number: int = 1
) -> bytes:
    delivery = Delivery(topic, payload, T0, fingerprint(topic, payload))
    failed = StepOutcome(Step.LOOKUP, StepStatus.ERROR, T0, error_code=code, error_message="m")
    envelope = Envelope(
        delivery, "Kati", "861265061482607", {}, [failed], delivery_number=delivery_number
    )
    [(_, (_, value))] = dead_letters(envelope)
    return value


def test_a_utf8_dead_letter_decodes_to_the_original_bytes():
    payload = '{"IMEI": "861265061482607", "nameTH": "นาย#สาธิต"}'.encode()
    letter = decode_dead_letter(dead_letter("iMEDE_watch/VitalSign", payload))
    assert letter.payload == payload
    assert letter.topic == "iMEDE_watch/VitalSign"
    assert (letter.code, letter.step) == ("unknown_device", "3_patient_lookup")
    assert letter.message_id == fingerprint(letter.topic, letter.payload)
    assert letter.delivery == 1


def test_the_letter_keeps_the_number_of_the_delivery_that_failed():
    assert decode_dead_letter(dead_letter("dusun_pub", b"{}", delivery_number=3)).delivery == 3
    # Letters written before the number existed replay as first deliveries.
    assert decode_dead_letter(record()).delivery == 1


def test_a_binary_dead_letter_decodes_through_base64():
    payload = b"\x9f\x00\xffgarbage"
    letter = decode_dead_letter(dead_letter("dusun_pub", payload, "invalid_json"))
    assert letter.payload == payload


def record(**fields: Any) -> bytes:
    base: dict[str, Any] = {"topic": "dusun_pub", "payload_encoding": "utf-8", "payload": "{}"}
    return json.dumps(base | fields).encode()


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        record(topic=None),
        record(topic=""),
        record(topic="iMEDE_watch/#"),
        record(topic="a/+/b"),
        record(topic="$SYS/broker"),
        record(payload=None),
        record(payload_encoding="base64", payload="not base64!"),
        record(payload_encoding="latin-1"),
        record(payload="\udcff"),
        record(topic="dusun_pub\udcff"),  # written escaped by `dead_letters`; unpublishable
        record(delivery=0),
        record(delivery="2"),
        record(delivery=True),
        record(delivery=2.5),
    ],
)
def test_records_that_do_not_say_what_to_send_where_are_refused(value: bytes | None):
    with pytest.raises(DeadLetterDecodeError):
        decode_dead_letter(value)


def test_a_refusal_does_not_echo_the_payload():
    with pytest.raises(DeadLetterDecodeError) as caught:
        decode_dead_letter(record(payload_encoding="rot13", payload="3570300400004"))
    assert "3570300400004" not in str(caught.value)


class FakeKafka:
    """A topic's partitions and the offsets each group committed, shared by fake consumers."""

    def __init__(self) -> None:
        self.partitions: dict[str, dict[int, list[bytes | None]]] = {}
        self.committed: dict[tuple[str, TopicPartition], int] = {}
        self.commits: list[dict[TopicPartition, int]] = []

    def consumer(self, **config: Any) -> FakeConsumer:
        return FakeConsumer(self, config)


class FakeConsumer:
    def __init__(self, kafka: FakeKafka, config: dict[str, Any]) -> None:
        assert config["enable_auto_commit"] is False
        self.kafka = kafka
        self.group = config["group_id"]
        self.positions: dict[TopicPartition, int] = {}
        self.closed = False

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.kafka.partitions.get(topic, {}))

    def assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.positions[tp] = self.kafka.committed.get((self.group, tp), 0)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.positions[tp] = 0

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.kafka.partitions[tp.topic][tp.partition]) for tp in partitions}

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        batch: dict[TopicPartition, list[Record]] = {}
        for tp, position in self.positions.items():
            log = self.kafka.partitions[tp.topic][tp.partition]
            records = [Record(o, log[o]) for o in range(position, min(len(log), position + 3))]
            if records:
                batch[tp] = records
                self.positions[tp] = records[-1].offset + 1
        return batch

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        self.kafka.commits.append(plain)
        for tp, offset in plain.items():
            self.kafka.committed[(self.group, tp)] = offset

    def close(self, autocommit: bool = True) -> None:
        assert autocommit is False
        self.closed = True


class FakePublisher:
    instances: list[FakePublisher] = []
    acks = True

    def __init__(self, url: str, *, client_id: str, ca_file: str | None = None) -> None:
        self.client_id = client_id
        self.published: list[tuple[str, bytes]] = []
        FakePublisher.instances.append(self)

    @property
    def sent(self) -> int:
        return len(self.published)

    @property
    def acked(self) -> int:
        return self.sent if self.acks else 0

    def connect(self) -> None:
        pass

    def publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))

    def wait_for_acks(self, timeout_s: float) -> bool:
        return self.acks

    def close(self) -> None:
        pass


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    fake = FakeKafka()
    FakePublisher.instances = []
    FakePublisher.acks = True
    monkeypatch.setattr(dlq_replay, "KafkaConsumer", fake.consumer)
    monkeypatch.setattr(dlq_replay, "MqttPublisher", FakePublisher)
    return fake


def published() -> list[tuple[str, bytes]]:
    return [p for publisher in FakePublisher.instances for p in publisher.published]


LETTERS = [
    ("iMEDE_watch/VitalSign", b'{"IMEI": "1"}', "unknown_device"),
    ("dusun_pub", b"\xc3\x28 not utf-8", "invalid_json"),
    ("CM4_BLE_GW_TX", b'{"citiz": "x"}', "unknown_device"),
    ("iMEDE_watch/hb", b'{"IMEI": "2"}', "unknown_device"),
]


def fill(kafka: FakeKafka, letters: list[tuple[str, bytes, str]] = LETTERS) -> None:
    log: list[bytes | None] = [dead_letter(t, p, c) for t, p, c in letters]
    kafka.partitions[DLQ] = {0: [*log[:2], b"garbage"], 1: log[2:]}


def test_replay_publishes_the_original_bytes_to_the_original_topics(kafka: FakeKafka):
    fill(kafka)
    report = replay_dead_letters(SETTINGS)
    # Under the replay prefix, which the flow subscribes to, numbered by the failed delivery.
    assert sorted(published()) == sorted((f"vitalflow/replay/1/{t}", p) for t, p, _ in LETTERS)
    assert (report.consumed, report.replayed, report.undecodable) == (5, 4, 1)
    assert report.replayed_by_code == {"unknown_device": 3, "invalid_json": 1}
    assert report.committed == {0: 3, 1: 2}
    assert report.fingerprint_mismatches == 0


def test_a_second_replay_in_the_same_group_repeats_nothing(kafka: FakeKafka):
    fill(kafka)
    replay_dead_letters(SETTINGS)
    again = replay_dead_letters(SETTINGS)
    assert (again.consumed, again.replayed) == (0, 0)
    assert len(published()) == 4


def test_from_beginning_replays_everything_again(kafka: FakeKafka):
    fill(kafka)
    replay_dead_letters(SETTINGS)
    again = replay_dead_letters(SETTINGS, from_beginning=True)
    assert again.replayed == 4 and len(published()) == 8


def test_groups_keep_their_own_offsets(kafka: FakeKafka):
    fill(kafka)
    replay_dead_letters(SETTINGS, group_id="one")
    assert replay_dead_letters(SETTINGS, group_id="two").replayed == 4


def test_a_dry_run_publishes_and_commits_nothing(kafka: FakeKafka):
    fill(kafka)
    report = replay_dead_letters(SETTINGS, dry_run=True)
    assert report.replayed == 4 and "would replay 4" in str(report)
    assert published() == [] and kafka.commits == []
    assert replay_dead_letters(SETTINGS).replayed == 4


def test_codes_keep_only_matching_letters(kafka: FakeKafka):
    fill(kafka)
    report = replay_dead_letters(SETTINGS, codes={"invalid_json"})
    assert published() == [("vitalflow/replay/1/dusun_pub", b"\xc3\x28 not utf-8")]
    assert (report.replayed, report.filtered, report.undecodable) == (1, 3, 1)


def test_limit_caps_replays_and_the_next_run_goes_on_from_there(kafka: FakeKafka):
    kafka.partitions[DLQ] = {0: [dead_letter("iMEDE_watch/hb", b"%d" % i) for i in range(7)]}
    first = replay_dead_letters(SETTINGS, limit=2)
    assert first.replayed == 2 and first.committed == {0: 2}
    rest = replay_dead_letters(SETTINGS)
    assert rest.replayed == 5
    assert [p for _, p in published()] == [b"%d" % i for i in range(7)]


def test_an_unacknowledged_batch_is_not_committed(kafka: FakeKafka):
    fill(kafka)
    FakePublisher.acks = False
    with pytest.raises(MqttPublishError, match="not acknowledged"):
        replay_dead_letters(SETTINGS)
    assert kafka.commits == []


def test_a_missing_topic_replays_nothing_and_needs_no_broker(kafka: FakeKafka):
    report = replay_dead_letters(SETTINGS)
    assert (report.consumed, report.replayed) == (0, 0)
    assert FakePublisher.instances == []


def test_a_letter_whose_bytes_changed_is_flagged(kafka: FakeKafka):
    changed = json.loads(dead_letter("iMEDE_watch/hb", b'{"a": 1}'))
    changed["payload"] = '{"a":1}'
    kafka.partitions[DLQ] = {0: [json.dumps(changed).encode()]}
    report = replay_dead_letters(SETTINGS)
    assert report.replayed == 1 and report.fingerprint_mismatches == 1
    assert "does not match" in str(report)


@pytest.fixture
def event_log(tmp_path: Path, kafka: FakeKafka) -> Iterator[tuple[Settings, SqliteEventLog]]:
    """The demo's embedded event log (a real SQLite file) holding the fake Kafka's letters."""
    path = tmp_path / "events.db"
    log = SqliteEventLog(path)
    settings = Settings(
        dlq_topic=DLQ, mqtt_url="mqtt://127.0.0.1:1", event_log_url=f"sqlite:///{path}"
    )
    yield settings, log
    log.close()


def test_the_embedded_event_log_replays_and_its_groups_remember_where_they_stood(
    event_log: tuple[Settings, SqliteEventLog],
):
    settings, log = event_log
    letters: list[bytes | None] = [dead_letter(t, p, c) for t, p, c in LETTERS]
    log.write(DLQ, [("k", v) for v in [*letters[:2], b"garbage", *letters[2:]] if v])
    report = replay_dead_letters(settings)
    assert sorted(published()) == sorted((f"vitalflow/replay/1/{t}", p) for t, p, _ in LETTERS)
    assert (report.consumed, report.replayed, report.undecodable) == (5, 4, 1)
    assert report.committed == {0: 5}
    assert log.committed("vitalflow-dlq-replay", DLQ) == 5
    # Nothing new: nothing again. A new letter: only it. Rewound: everything.
    assert replay_dead_letters(settings).replayed == 0
    log.write(DLQ, [("k", dead_letter("dusun_pub", b"{}", "unknown_device", 2))])
    again = replay_dead_letters(settings)
    assert again.replayed == 1 and published()[-1] == ("vitalflow/replay/2/dusun_pub", b"{}")
    assert replay_dead_letters(settings, from_beginning=True).replayed == 5
    assert replay_dead_letters(settings, group_id="other").replayed == 5


def test_the_embedded_event_log_honours_limit_dry_run_and_unacknowledged_batches(
    event_log: tuple[Settings, SqliteEventLog],
):
    settings, log = event_log
    log.write(DLQ, [("k", dead_letter("iMEDE_watch/hb", b"%d" % i)) for i in range(7)])
    dry = replay_dead_letters(settings, dry_run=True)
    assert dry.replayed == 7 and published() == [] and log.committed(dry.group_id, DLQ) is None
    assert replay_dead_letters(settings, limit=2).committed == {0: 2}
    FakePublisher.acks = False
    with pytest.raises(MqttPublishError, match="not acknowledged"):
        replay_dead_letters(settings)
    assert log.committed("vitalflow-dlq-replay", DLQ) == 2
    FakePublisher.acks = True
    assert replay_dead_letters(settings).replayed == 5


def test_an_event_log_that_is_neither_kafka_nor_sqlite_is_refused():
    with pytest.raises(ValueError, match="cannot read dead letters"):
        replay_dead_letters(Settings(event_log_url="postgres://somewhere"))
