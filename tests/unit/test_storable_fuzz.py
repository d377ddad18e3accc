"""Fuzzing past the parser: whatever it accepts must be storable and reportable.

An exception in the store or the event writers would stop the dataflow just as surely as one in
the parser, and only there: an int beyond 64 bits, a string BSON refuses or a value JSON cannot
carry would raise in `insert_many` or `json.dumps`, not in `parse_payload`. So every message the
parse fuzzer builds is taken through the stages with a registry that knows every device, and
each document, update and record the stages would write is encoded as the drivers would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import bson
from hypothesis import given
from hypothesis import strategies as st
from test_parse_fuzz import FUZZ, RULE, json_values, mutated_samples, topics

from flows.dead_letters import dead_letters
from flows.enrich import enrich_envelope
from flows.latest_vitals import latest_vitals
from flows.lookup_patient import PatientLookup
from flows.model import Delivery, Envelope, fingerprint
from flows.parse import parse_envelope
from flows.receive import receive
from flows.step_events import step_events
from flows.store import device_status_update
from flows.thresholds import Thresholds

RECEIVED = datetime(2025, 7, 13, 9, 0, tzinfo=UTC)
THRESHOLDS = Thresholds.load(None)


class EveryoneIsRegistered:
    """A registry answering every lookup: each device belongs to patient p1 of hospital h1."""

    def __getitem__(self, collection: str) -> EveryoneIsRegistered._Collection:
        return self._Collection(collection)

    class _Collection:
        def __init__(self, name: str) -> None:
            self._name = name

        def find(self, query: dict[str, Any]) -> list[dict[str, Any]]:
            keys = query["_id"]["$in"]
            if self._name == "devices":
                return [{"_id": k, "patient_id": "p1"} for k in keys]
            return [{"_id": k, "hospital_id": "h1"} for k in keys]


def staged(topic: str, payload: bytes, received: datetime = RECEIVED) -> Envelope:
    """The envelope of one message after receive, parse, lookup and enrich, all registered."""
    delivery = Delivery(topic, payload, received, fingerprint(topic, payload))
    parsed = parse_envelope(receive(delivery), RULE)
    [found] = PatientLookup(EveryoneIsRegistered)([parsed])  # type: ignore[arg-type]
    return enrich_envelope(found, THRESHOLDS)


def through_the_stages(topic: str, payload: bytes) -> None:
    envelope = staged(topic, payload)
    for doc in envelope.observations:
        bson.encode(doc)
        bson.encode({"$set": {f"last_vitals.{doc['kind']}": latest_vitals(doc)}})
    status = device_status_update(envelope)
    if status is not None:
        bson.encode({"_id": status[0], "$set": status[1]})
    for _key, (_, value) in step_events(envelope) + dead_letters(envelope):
        # Strict JSON: no NaN or Infinity, which Python's reader takes and others refuse.
        assert isinstance(json.loads(value, parse_constant=_refuse), dict)


def _refuse(constant: str) -> None:
    msg = f"{constant} is not JSON"
    raise AssertionError(msg)


@FUZZ
@given(message=mutated_samples())
def test_mutated_samples_are_storable_and_reportable(message: tuple[str, bytes]) -> None:
    through_the_stages(*message)


@FUZZ
@given(topic=topics, value=json_values)
def test_random_json_is_storable_and_reportable(topic: str, value: Any) -> None:
    through_the_stages(topic, json.dumps(value).encode())


@FUZZ
@given(
    topic=st.sampled_from(["iMEDE_watch/hb", "iMEDE_watch/VitalSign", "dusun_pub"]),
    big=st.integers(min_value=2**63, max_value=2**80) | st.integers(max_value=-(2**63) - 1),
    text=st.text(),
)
def test_huge_numbers_and_odd_text_in_status_fields_are_storable(
    topic: str, big: int, text: str
) -> None:
    watch = {"IMEI": "861265061482607", "battery": big, "signalGSM": text, "step": big}
    through_the_stages(topic, json.dumps(watch).encode())
    gateway = {"mac": "08:F9:E0:D1:F7:B4", "type": "HB_Msg", "time": big, "data": {"msg": text}}
    through_the_stages(topic, json.dumps(gateway).encode())
