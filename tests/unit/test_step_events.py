import base64
import json
from datetime import UTC, datetime

from flows.dead_letters import dead_letters
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus, fingerprint
from flows.step_events import step_events

T0 = datetime(2026, 11, 26, 10, 30, 0, 123000, tzinfo=UTC)


def make(payload: bytes, outcomes: list[StepOutcome], number: int = 1) -> Envelope:
    delivery = Delivery("dusun_pub", payload, T0, fingerprint("dusun_pub", payload))
    return Envelope(
        delivery,
        "AVA4",
        "08F9E0D1F7B4",
        {"type": "reportAttribute"},
        outcomes,
        delivery_number=number,
    )


def test_one_cloudevent_per_outcome_in_step_order_keyed_by_device():
    env = make(
        b"{}",
        [
            StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
            StepOutcome(Step.PARSED, StepStatus.SUCCESS, T0),
        ],
    )
    events = step_events(env)
    assert [k for k, _ in events] == ["08F9E0D1F7B4", "08F9E0D1F7B4"]
    first = json.loads(events[0][1][1])
    mid = env.delivery.message_id
    assert first["specversion"] == "1.0" and first["source"] == "vitalflow"
    assert first["id"] == f"{mid}/1_mqtt_received"
    assert first["type"] == "vitalflow.step.1_mqtt_received"
    assert first["subject"] == "AVA4/08F9E0D1F7B4"
    assert first["time"] == "2026-11-26T10:30:00.123Z"
    assert first["data"]["status"] == "success" and first["data"]["error"] is None
    assert json.loads(events[1][1][1])["data"]["step"] == "2_payload_parsed"


def test_error_event_carries_code_and_message():
    env = make(
        b"x",
        [
            StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
            StepOutcome(
                Step.PARSED, StepStatus.ERROR, T0, error_code="invalid_json", error_message="bad"
            ),
        ],
    )
    data = json.loads(step_events(env)[1][1][1])["data"]
    assert data["status"] == "error" and data["error"] == {"code": "invalid_json", "message": "bad"}


def test_duplicate_delivery_events_have_ids_of_their_own():
    outcomes = [StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0)]
    first = json.loads(step_events(make(b"{}", outcomes))[0][1][1])["id"]
    second = json.loads(step_events(make(b"{}", outcomes, number=2))[0][1][1])["id"]
    assert first != second and second.endswith("/d2/1_mqtt_received")


def test_dead_letter_keeps_raw_payload_base64_when_not_utf8():
    raw = b"\xff\xfe\x00garbage"
    env = make(
        raw,
        [
            StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
            StepOutcome(
                Step.PARSED, StepStatus.ERROR, T0, error_code="invalid_json", error_message="m"
            ),
        ],
    )
    [(key, (_, value))] = dead_letters(env)
    record = json.loads(value)
    assert key == "08F9E0D1F7B4"
    assert record["payload_encoding"] == "base64" and base64.b64decode(record["payload"]) == raw
    assert record["reason"] == {"step": "2_payload_parsed", "code": "invalid_json", "message": "m"}
    assert record["topic"] == "dusun_pub" and record["message_id"] == env.delivery.message_id


def test_no_dead_letter_for_success_or_skip():
    env = make(
        b"{}",
        [
            StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
            StepOutcome(Step.PARSED, StepStatus.SKIPPED, T0, reason="duplicate"),
        ],
    )
    assert dead_letters(env) == []


def test_oversized_payload_is_a_step_2_error_and_its_dead_letter_is_truncated_with_a_digest():
    import hashlib

    from flows.dead_letters import MAX_DEAD_LETTER_BYTES
    from flows.device_clock import ClockRule
    from flows.parse import parse_envelope
    from flows.receive import receive

    raw = b'{"IMEI": "865067123456789", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    delivery = Delivery("iMEDE_watch/hb", raw, T0, fingerprint("iMEDE_watch/hb", raw))
    from datetime import timedelta

    env = parse_envelope(receive(delivery), ClockRule(timedelta(days=7), timedelta(minutes=5)))
    assert env.failed is not None and env.failed.error_code == "payload_too_large"
    assert all(len(value) < 64 * 1024 for _, (_, value) in step_events(env))
    [(_, (_, letter))] = dead_letters(env)
    record = json.loads(letter)
    assert record["payload_truncated"] is True and record["payload_bytes"] == len(raw)
    assert record["payload_sha256"] == hashlib.sha256(raw).hexdigest()
    assert MAX_DEAD_LETTER_BYTES - 1024 < len(letter) <= MAX_DEAD_LETTER_BYTES
    assert raw.startswith(record["payload"].encode())


def test_event_too_large_for_kafka_is_sent_without_payload_and_details():
    from flows.step_events import MAX_EVENT_BYTES

    huge = {
        "observations": [{"id": str(i), "values": {"x": i}} for i in range(20000)],
        "count": 20000,
    }
    env = make(
        b"{}",
        [
            StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
            StepOutcome(Step.STORED, StepStatus.SUCCESS, T0, processed_data=huge),
        ],
    )
    [_, (_, (_, value))] = step_events(env)
    assert len(value) <= MAX_EVENT_BYTES
    data = json.loads(value)["data"]
    assert data["processed_data"]["count"] == 20000 and "omitted" in data["processed_data"]


def failed_message(raw: bytes, topic: str = "dusun_pub", message: str = "bad") -> Envelope:
    delivery = Delivery(topic, raw, T0, fingerprint(topic, raw))
    outcomes = [
        StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
        StepOutcome(
            Step.PARSED, StepStatus.ERROR, T0, error_code="invalid_json", error_message=message
        ),
    ]
    return Envelope(delivery, "AVA4", "08F9E0D1F7B4", {}, outcomes)


def test_a_dead_letter_of_nul_bytes_keeps_them_whole_in_base64_within_the_encoded_limit():
    from flows.dead_letters import MAX_DEAD_LETTER_BYTES

    # As text, each NUL becomes the six bytes \u0000: 1.2 MB, more than Kafka takes.
    raw = b"\x00" * 200_000
    [(_, (_, letter))] = dead_letters(failed_message(raw))
    assert len(letter) <= MAX_DEAD_LETTER_BYTES
    record = json.loads(letter)
    assert record["payload_encoding"] == "base64" and "payload_truncated" not in record
    assert base64.b64decode(record["payload"]) == raw


def test_a_dead_letter_of_escaped_text_too_large_even_in_base64_is_cut_to_the_limit():
    import hashlib

    from flows.dead_letters import MAX_DEAD_LETTER_BYTES

    raw = b"\x01" * 600_000  # valid UTF-8, six bytes each once escaped
    [(_, (_, letter))] = dead_letters(failed_message(raw, message="m" * 100_000))
    assert len(letter) <= MAX_DEAD_LETTER_BYTES
    record = json.loads(letter)
    assert record["payload_truncated"] is True
    assert record["payload_sha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(base64.b64decode(record["payload"]))
    assert len(record["reason"]["message"]) <= 4096


def test_events_fit_64_kib_even_with_a_hostile_topic_and_error_text():
    from flows.step_events import MAX_EVENT_BYTES

    assert MAX_EVENT_BYTES == 64 * 1024
    env = failed_message(b"{}", topic="iMEDE_watch/" + "\x01" * 60_000, message="\x02" * 60_000)
    for _, (_, value) in step_events(env):
        assert len(value) <= MAX_EVENT_BYTES
        event = json.loads(value)
        assert event["data"]["topic"].startswith("iMEDE_watch/")


def test_dates_and_values_beyond_64_bits_encode_as_the_standard_library_would():
    # orjson writes events, but refuses integers beyond 64 bits (a hostile payload can hold
    # one); such an event still goes out, and dates keep the millisecond UTC form everywhere.
    huge = 2**70
    env = make(
        b"{}",
        [
            StepOutcome(Step.PARSED, StepStatus.SUCCESS, T0, processed_data={"at": T0, "n": huge}),
        ],
    )
    env = Envelope(env.delivery, env.device_type, env.device_id, {"big": huge}, env.outcomes)
    event = json.loads(step_events(env)[0][1][1])
    assert event["data"]["payload"] == {"big": huge}
    assert event["data"]["processed_data"] == {"at": "2026-11-26T10:30:00.123Z", "n": huge}
    assert event["time"] == "2026-11-26T10:30:00.123Z"


def test_a_store_error_quoting_a_citizen_id_is_scrubbed_in_the_event_and_the_letter():
    quoted = 'devices lookup: {"_id": {"$in": ["citizen_id:3570300400000"]}} failed'
    outcomes = [
        StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
        StepOutcome(Step.PARSED, StepStatus.SUCCESS, T0),
        StepOutcome(
            Step.LOOKUP, StepStatus.ERROR, T0, error_code="store_failed", error_message=quoted
        ),
    ]
    envelope = make(b"{}", outcomes)
    [*_, (_key, (_k, last))] = step_events(envelope)
    [(_key, (_k, letter))] = dead_letters(envelope)
    for record in (last, letter):
        assert b"3570300400000" not in record
        assert b"citizen_id:[redacted]" in record
