"""A message whose writes failed is not a duplicate: its next copy is processed again.

DESIGN.md: a redelivered copy is `skipped` (duplicate) at step 2 "unless the first copy never
got stored". De-dup runs before the store; the store reports its failures back
(`flows.store_failures`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from pymongo.errors import BulkWriteError

from connectors.mqtt_source import MqttMessage
from flows.deduplicate import dedup_builder, dedup_key
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus, fingerprint
from flows.pipeline import build_flow
from flows.settings import Settings
from flows.store_failures import STORE_FAILURES, StoreFailures
from sinks.mongo_database import open_database

NOW = datetime.now(UTC).replace(microsecond=0)
PAYLOAD = json.dumps(
    {
        "mac": "08:F9:E0:D1:F7:B4",
        "type": "reportAttribute",
        "data": {
            "attribute": "BP_BIOLIGTH",
            "value": {"device_list": [{"ble_addr": "d616f9641622", "bp_high": 120, "bp_low": 80}]},
        },
    }
).encode()


@pytest.fixture(autouse=True)
def no_failures_known() -> Any:
    STORE_FAILURES.forget(fingerprint("dusun_pub", PAYLOAD))
    yield
    STORE_FAILURES.forget(fingerprint("dusun_pub", PAYLOAD))


def test_the_set_is_bounded_and_forgets_what_it_answers() -> None:
    failures = StoreFailures(limit=3)
    failures.add(["a", "b", "c", "d"])
    assert len(failures) == 3
    assert not failures.forget("a")  # the oldest went first
    assert failures.forget("b")
    assert not failures.forget("b")  # answered once: its copy is on its way


def _copy(n: int) -> Envelope:
    delivery = Delivery("dusun_pub", PAYLOAD, NOW, fingerprint("dusun_pub", PAYLOAD))
    outcomes = [
        StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, NOW),
        StepOutcome(Step.PARSED, StepStatus.SUCCESS, NOW),
        StepOutcome(Step.LOOKUP, StepStatus.SUCCESS, NOW),
    ]
    return Envelope(delivery, "AVA4", "08F9E0D1F7B4", {"n": n}, outcomes, patient_id="p1")


def _dedup(items: list[Envelope]) -> list[Envelope]:
    flow = Dataflow("dedup_after_store_failure")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(items)), dedup_key)
    out: list[tuple[str, Envelope]] = []
    dedup = dedup_builder(timedelta(minutes=10), 100)
    op.output("out", op.stateful("dedup", keyed, dedup), TestingSink(out))
    run_main(flow)
    return [e for _, e in out]


@pytest.mark.parametrize("first_failed", [True, False])
def test_a_copy_of_a_message_whose_writes_failed_is_processed_again(first_failed: bool) -> None:
    if first_failed:  # as the store reports it once the first delivery's writes failed
        STORE_FAILURES.add([fingerprint("dusun_pub", PAYLOAD)])
    first, second, third = _dedup([_copy(1), _copy(2), _copy(3)])
    assert not first.finished
    assert second.finished is not first_failed  # the control: a duplicate when it was stored
    assert (second.delivery_number, third.delivery_number) == (2, 3)
    assert third.outcomes[-1].reason == "duplicate"  # the second went on to be stored


class _FailingObservations:
    """`observations` whose inserts fail for every document (say, a validator refuses them)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def insert_many(self, documents: list[dict[str, Any]], **_: Any) -> None:
        errors = [
            {"index": n, "code": 121, "errmsg": "failed validation"} for n in range(len(documents))
        ]
        raise BulkWriteError({"writeErrors": errors})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Database:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.observations = _FailingObservations(real.observations)

    def __getitem__(self, name: str) -> Any:
        return self.observations if name == "observations" else self._real[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_the_store_reports_a_message_whose_observations_it_could_not_write(
    tmp_path: Path,
) -> None:
    real = open_database(f"montydb://{tmp_path / 'store'}", "vf")
    real.patients.insert_one({"_id": "p1", "hospital_id": "h1"})
    real.devices.insert_one({"_id": "ble:D616F9641622", "patient_id": "p1"})
    steps: list[tuple[str, tuple[str, bytes]]] = []
    flow = build_flow(
        Settings(),
        source=TestingSource([MqttMessage("dusun_pub", PAYLOAD, NOW)]),
        steps_sink=TestingSink(steps),
        dlq_sink=TestingSink([]),
        alerts_sink=TestingSink([]),
        database=lambda: _Database(real),
    )
    run_main(flow)
    last = json.loads(steps[-1][1][1])["data"]
    assert (last["step"], last["status"]) == ("5_medical_stored", "error")
    assert STORE_FAILURES.forget(fingerprint("dusun_pub", PAYLOAD))
    real.client.close()
