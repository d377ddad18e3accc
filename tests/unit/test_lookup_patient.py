import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from flows.lookup_patient import PatientLookup, mask_key
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

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class FakeCollection:
    def __init__(
        self, docs: list[dict[str, Any]], log: list[tuple[str, list[str]]], name: str
    ) -> None:
        self.docs = {d["_id"]: d for d in docs}
        self.log = log
        self.name = name

    def find(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        keys = query["_id"]["$in"]
        self.log.append((self.name, sorted(keys)))
        return [self.docs[k] for k in keys if k in self.docs]


class FakeDatabase(dict):  # type: ignore[type-arg]
    pass


def make_db(devices: list[dict[str, Any]], log: list[tuple[str, list[str]]]) -> FakeDatabase:
    db = FakeDatabase()
    db["devices"] = FakeCollection(devices, log, "devices")
    db["patients"] = FakeCollection([{"_id": "p1", "hospital_id": "h1"}], log, "patients")
    return db


def envelope(keys: list[str]) -> Envelope:
    reading = Reading(ObservationKind.HEART_RATE, {"heart_rate": 70}, T0, T0)
    parsed = ParsedMessage("Kati", "1", "VitalSign", [reading], keys)
    delivery = Delivery("iMEDE_watch/VitalSign", b"{}", T0, "m1")
    outcomes = [
        StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, T0),
        StepOutcome(Step.PARSED, StepStatus.SUCCESS, T0),
    ]
    return Envelope(delivery, "Kati", "1", {}, outcomes, parsed=parsed)


def test_first_registered_key_wins_and_hospital_is_attached():
    log: list[tuple[str, list[str]]] = []
    lookup = PatientLookup(lambda: make_db([{"_id": "gateway:AA", "patient_id": "p1"}], log))  # type: ignore[arg-type,return-value]
    [out] = lookup([envelope(["ble:BB", "gateway:AA"])])
    assert (out.patient_id, out.hospital_id) == ("p1", "h1")
    assert out.outcomes[-1].status is StepStatus.SUCCESS
    assert out.outcomes[-1].processed_data["matched_key"] == "gateway:AA"


def test_a_batch_costs_one_query_per_collection_and_the_cache_answers_next_time():
    log: list[tuple[str, list[str]]] = []
    lookup = PatientLookup(lambda: make_db([{"_id": "imei:1", "patient_id": "p1"}], log))  # type: ignore[arg-type,return-value]
    lookup([envelope(["imei:1"]), envelope(["imei:2"]), envelope(["imei:1"])])
    assert log == [("devices", ["imei:1", "imei:2"]), ("patients", ["p1"])]
    lookup([envelope(["imei:1"]), envelope(["imei:2"])])
    assert len(log) == 2  # positive and negative answers both cached


def test_negative_answers_expire_so_a_new_registration_is_seen():
    log: list[tuple[str, list[str]]] = []
    lookup = PatientLookup(lambda: make_db([], log), cache_ttl=60, negative_ttl=0)  # type: ignore[arg-type,return-value]
    lookup([envelope(["imei:9"])])
    lookup([envelope(["imei:9"])])
    assert [entry for entry in log if entry[0] == "devices"] == [("devices", ["imei:9"])] * 2


def test_unknown_device_is_a_step_3_error_without_the_citizen_id_in_clear():
    lookup = PatientLookup(lambda: make_db([], []))  # type: ignore[arg-type,return-value]
    [out] = lookup([envelope(["citizen_id:3570300400000", "ble:FF2209083131"])])
    last = out.outcomes[-1]
    assert (last.step, last.status, last.error_code) == (
        Step.LOOKUP,
        StepStatus.ERROR,
        "unknown_device",
    )
    assert "3570300400000" not in (last.error_message or "") + str(last.processed_data)
    assert "ble:FF2209083131" in (last.error_message or "")


def test_finished_envelopes_pass_through_untouched():
    lookup = PatientLookup(lambda: make_db([], []))  # type: ignore[arg-type,return-value]
    done = envelope(["imei:1"])
    done.outcomes[-1] = StepOutcome(Step.PARSED, StepStatus.SKIPPED, T0, reason="duplicate")
    assert lookup([done]) == [done]


def test_mask_key_hides_citizen_ids_entirely():
    assert mask_key("citizen_id:3570300400000") == "citizen_id:[redacted]"
    assert mask_key("imei:861265061482607") == "imei:861265061482607"


class _Cursor(list):  # type: ignore[type-arg]
    def batch_size(self, _size: int) -> "_Cursor":
        return self


class WholeReads(FakeCollection):
    """A collection read whole `allowed` times; every later whole read fails (say, a role)."""

    def __init__(self, *args: Any, allowed: int) -> None:
        super().__init__(*args)
        self.whole_reads_left = allowed

    def find(self, query: dict[str, Any], projection: object = None) -> Any:
        if query:
            return super().find(query)
        if self.whole_reads_left <= 0:
            raise OperationFailure("not authorized to read the whole collection")
        self.whole_reads_left -= 1
        return _Cursor(dict(d) for d in self.docs.values())


def _registry_db(allowed: int) -> tuple[Any, list[tuple[str, list[str]]]]:
    """A database whose device registry (imei:1 -> p1) can be read whole `allowed` times."""
    log: list[tuple[str, list[str]]] = []
    db = make_db([], log)
    db["devices"] = WholeReads(
        [{"_id": "imei:1", "patient_id": "p1"}], log, "devices", allowed=allowed
    )
    return db, log


def test_a_refused_read_of_the_whole_registry_leaves_lookups_per_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db, log = _registry_db(allowed=0)
    lookup = PatientLookup(lambda: db, preload_max=1_000)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.WARNING, logger="flows.lookup_patient"):
        [out] = lookup([envelope(["imei:1"])])
        deadline = time.monotonic() + 5
        while "reading the device registry whole failed" not in caplog.text:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert out.patient_id == "p1"
    assert lookup.registry_copy is None
    assert "OperationFailure" in caplog.text
    # Not tried again at every batch: the retry waits.
    lookup([envelope(["imei:2"])])
    assert log == [("devices", ["imei:1"]), ("patients", ["p1"]), ("devices", ["imei:2"])]


def test_a_copy_of_the_registry_older_than_the_ttl_is_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db, log = _registry_db(allowed=1)
    hospitals = [{"_id": "p1", "hospital_id": "h1"}, {"_id": "p2", "hospital_id": "h2"}]
    db["patients"] = WholeReads(hospitals, log, "patients", allowed=1)
    ttl = 1.0
    lookup = PatientLookup(lambda: db, cache_ttl=ttl, negative_ttl=0.1, preload_max=1_000)  # type: ignore[arg-type,return-value]
    lookup([envelope(["imei:1"])])
    deadline = time.monotonic() + 5
    while lookup.registry_copy is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    read_at = lookup.registry_copy.read_at
    # The device moves; no later whole read succeeds, so the copy keeps the old patient.
    db["devices"].docs["imei:1"] = {"_id": "imei:1", "patient_id": "p2"}
    log.clear()
    with caplog.at_level(logging.WARNING, logger="flows.lookup_patient"):
        [young] = lookup([envelope(["imei:1"])])
        assert time.monotonic() - read_at < ttl  # the copy was still young: no query
        assert (young.patient_id, log) == ("p1", [])
        time.sleep(max(0.0, read_at + ttl - time.monotonic()) + 0.05)
        [old] = lookup([envelope(["imei:1"])])
    # Past the TTL the copy is not used: the device is looked up, and found moved.
    assert (old.patient_id, old.hospital_id) == ("p2", "h2")
    assert ("devices", ["imei:1"]) in log
    assert lookup.registry_copy is not None and lookup.registry_copy.read_at == read_at
