"""A value BSON cannot hold ends its own message's chain, not the flow, on the real server.

The parser keeps such values out (`tests/unit/test_unstorable_text.py`); this is the store's
own guard should one get past it. Before it, the driver's encoding error left the store step
and stopped the flow on every redelivery of the message.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pipeline_harness import bp_message, register_bp_patient
from pymongo.database import Database
from test_latest_vitals import server_database

from flows.device_clock import ClockRule
from flows.enrich import enrich_envelope
from flows.lookup_patient import PatientLookup
from flows.model import Delivery, Envelope, Step, StepStatus, fingerprint
from flows.parse import parse_envelope
from flows.receive import receive
from flows.settings import Settings
from flows.store import UNSTORABLE, ObservationStore
from flows.thresholds import Thresholds

pytestmark = pytest.mark.integration

RECEIVED = datetime(2025, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def db(services: Any, unique_id: str) -> Iterator[Database[dict[str, Any]]]:
    with server_database(services, f"vf_test_unencodable_{unique_id}") as database:
        yield database


def readings(db: Database[dict[str, Any]], count: int) -> list[Envelope]:
    clock = ClockRule.from_settings(Settings())
    parsed = []
    for n in range(count):
        topic, payload = bp_message(n)
        delivery = Delivery(topic, payload, RECEIVED, fingerprint(topic, payload))
        parsed.append(parse_envelope(receive(delivery), clock))
    found = PatientLookup(lambda: db)(parsed)
    return [enrich_envelope(e, Thresholds.load(None)) for e in found]


@pytest.mark.parametrize(
    "bad_value", ["\ud800", 2**70, {"a\x00b": 1}], ids=["surrogate", "int70", "nul-key"]
)
def test_an_unencodable_value_ends_its_message_at_step_4_and_the_rest_is_stored(
    db: Database[dict[str, Any]], bad_value: object
) -> None:
    register_bp_patient(db, "p-unencodable")
    batch = readings(db, 3)
    assert all(e.failed is None and e.observations for e in batch)
    first, *rest = batch[1].observations
    damaged = {**first, "values": {**first["values"], "x": bad_value}}
    batch[1] = batch[1].replace(observations=[damaged, *rest])

    done = list(ObservationStore(lambda: db)(batch))

    assert [e.delivery.message_id for e in done] == [e.delivery.message_id for e in batch]
    failed = done[1].failed
    assert failed is not None
    assert (failed.step, failed.status, failed.error_code) == (
        Step.UPDATED,
        StepStatus.ERROR,
        UNSTORABLE,
    )
    for envelope in (done[0], done[2]):
        assert envelope.failed is None
        assert envelope.outcomes[-1].step == Step.STORED
    stored = {d["message_id"] for d in db.observations.find({}, {"message_id": 1})}
    assert stored == {done[0].delivery.message_id, done[2].delivery.message_id}
