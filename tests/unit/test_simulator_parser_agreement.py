"""The simulator's labels agree with what the flow's parser makes of the same bytes.

This is the contract end-to-end tests rely on when they compare what the flow stored with
`SimulatedMessage.expected_readings`: if the parser changes what it reads from a payload,
this test says which labels must change with it.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from flows.device_clock import ClockRule
from flows.devices.parse_payload import NOT_DEVICE_DATA, NOTHING_TO_STORE, parse_payload
from flows.model import ParseError
from flows.simulator.device_roster import roster
from flows.simulator.payload_factory import SimulatedMessage, payload_stream, simulated_clock

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
INTERVAL_S = 0.1
RULE = ClockRule(max_age=timedelta(days=7), max_skew=timedelta(seconds=300))


@pytest.fixture(scope="module")
def messages() -> list[SimulatedMessage]:
    stream = payload_stream(roster(7, 12), random.Random(11), clock=simulated_clock(T0, INTERVAL_S))
    return list(itertools.islice(stream, 5000))


def received_at(message: SimulatedMessage) -> datetime:
    return T0 + timedelta(seconds=INTERVAL_S * message.sequence)


def readings_of(message: SimulatedMessage) -> Counter[str]:
    parsed = parse_payload(message.topic, message.payload, received_at(message), RULE)
    return Counter(str(r.kind) for r in parsed.readings)


def test_valid_messages_parse_into_the_expected_readings(messages: list[SimulatedMessage]):
    for message in messages:
        if message.category in ("valid", "unknown_device", "duplicate"):
            expected = Counter(str(k) for k in message.expected_kinds)
            assert readings_of(message) == expected, (message.message_kind, message.sequence)


def test_valid_messages_name_the_lookup_key_the_parser_looks_up(messages: list[SimulatedMessage]):
    for message in messages:
        if message.category in ("valid", "unknown_device"):
            parsed = parse_payload(message.topic, message.payload, received_at(message), RULE)
            assert message.lookup_key in parsed.lookup_keys, message.message_kind
            assert parsed.device_id == message.device_id


def test_status_messages_are_status_for_the_parser(messages: list[SimulatedMessage]):
    for message in messages:
        if message.category != "status":
            continue
        parsed = parse_payload(message.topic, message.payload, received_at(message), RULE)
        if message.expected_kinds:
            assert parsed.skip_reason is None
            assert Counter(str(r.kind) for r in parsed.readings) == Counter(
                str(k) for k in message.expected_kinds
            )
        else:
            assert parsed.skip_reason == NOTHING_TO_STORE, message.message_kind


def test_commands_are_not_device_data(messages: list[SimulatedMessage]):
    commands = [m for m in messages if m.category == "command"]
    assert commands
    for message in commands:
        parsed = parse_payload(message.topic, message.payload, received_at(message), RULE)
        assert parsed.skip_reason == NOT_DEVICE_DATA


def test_malformed_messages_are_parse_errors(messages: list[SimulatedMessage]):
    malformed = [m for m in messages if m.category == "malformed"]
    assert malformed
    for message in malformed:
        with pytest.raises(ParseError):
            parse_payload(message.topic, message.payload, received_at(message), RULE)
