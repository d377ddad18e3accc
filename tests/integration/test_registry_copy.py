"""The device registry held whole by stage 3, on the real MongoDB-wire server.

Once the copy is read, a batch of known devices is answered without a query; what the copy
lacks (a device registered since) is still looked up per batch; a device moved to another
patient is seen within the TTL; a registry past the limit is only looked up per batch; and
no log line names an identifier. Queries are counted by pymongo's command monitoring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import MongoClient, monitoring
from pymongo.database import Database

from flows.lookup_patient import PatientLookup
from flows.model import (
    Delivery,
    Envelope,
    ObservationKind,
    ParsedMessage,
    Reading,
    Step,
    StepOutcome,
    StepStatus,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
PATIENTS = 100
CITIZEN_ID = "3570300400{:03d}"


@dataclass
class FindCounter(monitoring.CommandListener):
    """Every `find` sent, by collection: the round trips a lookup costs."""

    finds: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds.append((event.command["find"], dict(event.command.get("filter", {}))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def per_batch(self) -> list[str]:
        """The collections of the `$in` queries sent: lookups per batch, not whole reads."""
        return [name for name, query in self.finds if query]


@pytest.fixture
def counted(
    services: Any, unique_id: str
) -> Iterator[tuple[Database[dict[str, Any]], FindCounter]]:
    counter = FindCounter()
    client: MongoClient[dict[str, Any]] = MongoClient(
        services.mongo_url, tz_aware=True, event_listeners=[counter]
    )
    name = f"vf_test_registry_copy_{unique_id}"
    db = client[name]
    db.patients.insert_many([{"_id": f"P{i}", "hospital_id": f"H{i % 3}"} for i in range(PATIENTS)])
    db.devices.insert_many(
        [{"_id": f"imei:86{i:013d}", "patient_id": f"P{i}"} for i in range(PATIENTS)]
        + [
            {"_id": f"citizen_id:{CITIZEN_ID.format(i)}", "patient_id": f"P{i}"}
            for i in range(PATIENTS)
        ]
    )
    try:
        yield db, counter
    finally:
        client.drop_database(name)
        client.close()


def envelope(key: str) -> Envelope:
    reading = Reading(ObservationKind.HEART_RATE, {"heart_rate": 70}, T0, T0)
    parsed = ParsedMessage("Kati", key, "VitalSign", [reading], [key])
    delivery = Delivery("iMEDE_watch/VitalSign", b"{}", T0, f"m-{key}")
    outcomes = [
        StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
        StepOutcome(Step.PARSED, StepStatus.SUCCESS, T0),
    ]
    return Envelope(delivery, "Kati", key, {}, outcomes, parsed=parsed)


def patients_of(lookup: PatientLookup, keys: list[str]) -> list[tuple[str | None, str | None]]:
    return [(e.patient_id, e.hospital_id) for e in lookup([envelope(k) for k in keys])]


def wait_for(condition: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def holding_the_registry(
    db: Database[dict[str, Any]], cache_ttl: float = 60.0, negative_ttl: float = 5.0
) -> PatientLookup:
    """A lookup whose copy of the registry is read (its first batch starts the read)."""
    lookup = PatientLookup(lambda: db, cache_ttl, negative_ttl, preload_max=1_000)
    # The first batch is answered per batch while the copy is read beside it.
    assert patients_of(lookup, ["imei:860000000000001"]) == [("P1", "H1")]
    wait_for(lambda: lookup.registry_copy is not None)
    return lookup


def test_once_the_registry_is_held_known_devices_cost_no_query(
    counted: tuple[Database[dict[str, Any]], FindCounter], caplog: pytest.LogCaptureFixture
) -> None:
    db, counter = counted
    caplog.set_level(logging.DEBUG, logger="flows")
    lookup = holding_the_registry(db)
    counter.finds.clear()

    keys = [f"imei:86{i:013d}" for i in range(2, 60)] + [f"citizen_id:{CITIZEN_ID.format(7)}"]
    expected = [(f"P{i}", f"H{i % 3}") for i in range(2, 60)] + [("P7", "H1")]
    assert patients_of(lookup, keys) == expected
    assert counter.finds == []
    # The registry's identifiers, citizen IDs above all, never reach the log.
    assert "3570300400" not in caplog.text and "imei:86" not in caplog.text
    assert "device registry held in memory: 200 identifiers, 100 patients" in caplog.text


def test_a_device_registered_after_the_read_is_looked_up_per_batch(
    counted: tuple[Database[dict[str, Any]], FindCounter],
) -> None:
    db, counter = counted
    lookup = holding_the_registry(db)
    db.devices.insert_one({"_id": "imei:869999999999999", "patient_id": "P5"})
    counter.finds.clear()

    assert patients_of(lookup, ["imei:869999999999999", "imei:860000000000003"]) == [
        ("P5", "H2"),
        ("P3", "H0"),
    ]
    assert counter.per_batch() == ["devices"]  # the new identifier only; P5 from the copy


def test_a_device_moved_to_another_patient_is_seen_within_the_ttl(
    counted: tuple[Database[dict[str, Any]], FindCounter],
) -> None:
    db, _ = counted
    ttl = 1.0
    lookup = holding_the_registry(db, cache_ttl=ttl, negative_ttl=0.5)
    assert patients_of(lookup, ["imei:860000000000004"]) == [("P4", "H1")]

    moved = time.monotonic()
    db.devices.update_one({"_id": "imei:860000000000004"}, {"$set": {"patient_id": "P8"}})
    wait_for(lambda: patients_of(lookup, ["imei:860000000000004"]) == [("P8", "H2")])
    # A copy read before the move is used for at most the TTL after it was read.
    assert time.monotonic() - moved <= ttl + 1.0


def test_a_registry_past_the_limit_is_only_looked_up_per_batch(
    counted: tuple[Database[dict[str, Any]], FindCounter], caplog: pytest.LogCaptureFixture
) -> None:
    db, counter = counted
    caplog.set_level(logging.INFO, logger="flows")
    lookup = PatientLookup(lambda: db, cache_ttl=60, negative_ttl=5, preload_max=50)
    patients_of(lookup, ["imei:860000000000001"])
    wait_for(lambda: "more than 50 identifiers" in caplog.text)
    counter.finds.clear()

    assert patients_of(lookup, ["imei:860000000000009"]) == [("P9", "H0")]
    assert counter.per_batch() == ["devices", "patients"]
    assert lookup.registry_copy is None
    counter.finds.clear()
    patients_of(lookup, ["imei:860000000000010"])
    assert not [name for name, query in counter.finds if not query]  # never read whole again
