from datetime import UTC, datetime

import pytest
from paho.mqtt.client import topic_matches_sub
from pydantic import ValidationError

from flows.model import Delivery, fingerprint
from flows.receive import receive
from flows.replay_topic import ReplayedTopic, replay_topic, split_replay_topic
from flows.settings import Settings

PREFIX = "vitalflow/replay"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("topic", ["dusun_pub", "iMEDE_watch/VitalSign", "a//b", "x/"])
@pytest.mark.parametrize("number", [1, 2, 999_999_999])
def test_a_replay_topic_splits_back_into_what_it_was_built_from(topic: str, number: int):
    built = replay_topic(PREFIX, number, topic)
    assert topic_matches_sub(Settings().subscriptions[-1], built)
    assert split_replay_topic(PREFIX, built) == ReplayedTopic(topic, number)
    assert split_replay_topic(PREFIX + "/", built) == ReplayedTopic(topic, number)


@pytest.mark.parametrize(
    "topic",
    [
        "dusun_pub",
        "vitalflow/replay",
        "vitalflow/replay/",
        "vitalflow/replay/1",
        "vitalflow/replay/1/",
        "vitalflow/replay/0/dusun_pub",
        "vitalflow/replay/-1/dusun_pub",
        "vitalflow/replay/x/dusun_pub",
        "vitalflow/replay/1234567890/dusun_pub",
        "vitalflow/replayed/1/dusun_pub",
        "other/vitalflow/replay/1/dusun_pub",
        # Digits to `str.isdigit` that `int` refuses ("²", "①": a crash of the receive
        # step once, for every redelivery) or reads (fullwidth, Arabic-Indic).
        "vitalflow/replay/²/dusun_pub",
        "vitalflow/replay/①/dusun_pub",
        "vitalflow/replay/\uff11/dusun_pub",
        "vitalflow/replay/\u0663/dusun_pub",
    ],
)
def test_other_topics_are_not_replays(topic: str):
    assert split_replay_topic(PREFIX, topic) is None


def test_delivery_numbers_start_at_one():
    with pytest.raises(ValueError, match="start at 1"):
        replay_topic(PREFIX, 0, "dusun_pub")


def test_the_flow_subscribes_to_the_device_topics_and_the_replay_prefix():
    settings = Settings(mqtt_topics="a,b/#", mqtt_replay_prefix="ops/replay/")
    assert settings.subscriptions == ["a", "b/#", "ops/replay/#"]


@pytest.mark.parametrize("prefix", ["", "$SYS/replay", "a/#", "a/+/b"])
def test_a_replay_prefix_must_be_publishable(prefix: str):
    with pytest.raises(ValidationError):
        Settings(mqtt_replay_prefix=prefix)


def test_a_replayed_copy_continues_as_the_message_it_replays():
    payload = b'{"IMEI": "861265061482607"}'
    raw = replay_topic(PREFIX, 2, "iMEDE_watch/VitalSign")
    envelope = receive(Delivery(raw, payload, T0, fingerprint(raw, payload)), PREFIX)
    original = receive(
        Delivery(
            "iMEDE_watch/VitalSign", payload, T0, fingerprint("iMEDE_watch/VitalSign", payload)
        )
    )
    assert envelope.delivery.topic == "iMEDE_watch/VitalSign"
    assert envelope.delivery.message_id == original.delivery.message_id
    assert envelope.delivery.replay_of == 2 and original.delivery.replay_of is None
    assert envelope.outcomes[0].processed_data == {"bytes": len(payload), "replay_of_delivery": 2}


def test_without_a_prefix_nothing_is_taken_for_a_replay():
    raw = replay_topic(PREFIX, 2, "dusun_pub")
    envelope = receive(Delivery(raw, b"{}", T0, fingerprint(raw, b"{}")))
    assert envelope.delivery.topic == raw and envelope.delivery.replay_of is None


def test_a_replay_topic_with_a_superscript_number_is_received_as_an_ordinary_topic():
    raw = "vitalflow/replay/²/dusun_pub"
    envelope = receive(Delivery(raw, b"{}", T0, fingerprint(raw, b"{}")), PREFIX)
    assert envelope.delivery.topic == "vitalflow/replay/²/dusun_pub"
    assert envelope.delivery.replay_of is None
