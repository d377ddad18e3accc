"""Stage 3: find the patient of each message in the `devices` registry, batched and cached.

The registry maps normalised identifiers (`ble:D616F9641622`, `imei:...`, `citizen_id:...`)
to patients. A batch of messages costs at most one `$in` query on `devices` and one on
`patients`; answers are cached per worker for a TTL, and misses for a shorter one so that a
newly registered device is picked up quickly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

from flows.model import Envelope, Step, StepOutcome, StepStatus
from sinks.mongo_database import mongo_call

__all__ = ["PatientLookup", "mask_key"]

_MISSING = object()


def mask_key(key: str) -> str:
    """Return a registry key fit for events and logs: citizen IDs are personal data."""
    kind, _, _ = key.partition(":")
    if kind == "citizen_id":
        return "citizen_id:[redacted]"
    return key


class _TtlCache:
    """A dict whose entries expire; misses are stored too, with their own TTL."""

    def __init__(self, ttl: float, negative_ttl: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return _MISSING
        return hit[1]

    def put(self, key: str, value: Any) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()
        ttl = self._ttl if value is not None else self._negative_ttl
        self._entries[key] = (time.monotonic() + ttl, value)


class PatientLookup:
    """The `flat_map_batch` mapper of stage 3."""

    def __init__(
        self,
        database: Callable[[], Database[dict[str, Any]]],
        cache_ttl: float = 60.0,
        negative_ttl: float = 5.0,
    ) -> None:
        self._open = database
        self._db: Database[dict[str, Any]] | None = None
        self._devices = _TtlCache(cache_ttl, negative_ttl)
        self._patients = _TtlCache(cache_ttl, negative_ttl)

    def __call__(self, batch: list[Envelope]) -> Iterable[Envelope]:
        """Resolve the patient of every envelope still on its way; pass the others through."""
        pending = [e for e in batch if not e.finished and e.parsed is not None]
        if not pending:
            return batch
        keys = {k for e in pending if e.parsed for k in e.parsed.lookup_keys}
        devices = self._resolve(self._devices, "devices", keys, _device_patient)
        patient_ids = {p for p in devices.values() if p is not None}
        hospitals = self._resolve(self._patients, "patients", patient_ids, _hospital)
        waiting = {id(e) for e in pending}
        return [self._decide(e, devices, hospitals) if id(e) in waiting else e for e in batch]

    def _resolve(
        self,
        cache: _TtlCache,
        collection: str,
        keys: set[str],
        extract: Callable[[dict[str, Any]], Any],
    ) -> dict[str, Any]:
        found = {k: cache.get(k) for k in keys}
        missing = [k for k, v in found.items() if v is _MISSING]
        if missing:
            db = self._database()

            def query() -> list[dict[str, Any]]:
                return list(db[collection].find({"_id": {"$in": missing}}))

            docs = mongo_call(db, f"{collection} lookup", query)
            by_id = {d["_id"]: extract(d) for d in docs}
            for key in missing:
                found[key] = by_id.get(key)
                cache.put(key, found[key])
        return found

    def _database(self) -> Database[dict[str, Any]]:
        if self._db is None:
            self._db = self._open()
        return self._db

    @staticmethod
    def _decide(envelope: Envelope, devices: dict[str, Any], hospitals: dict[str, Any]) -> Envelope:
        keys = envelope.parsed.lookup_keys if envelope.parsed else []
        now = datetime.now(UTC)
        for key in keys:
            patient_id = devices.get(key)
            if patient_id is not None:
                hospital_id = hospitals.get(patient_id)
                outcome = StepOutcome(
                    step=Step.LOOKUP,
                    status=StepStatus.SUCCESS,
                    at=now,
                    processed_data={
                        "matched_key": mask_key(key),
                        "patient_id": patient_id,
                        "hospital_id": hospital_id,
                    },
                )
                return envelope.replace(
                    patient_id=patient_id,
                    hospital_id=hospital_id,
                    outcomes=[*envelope.outcomes, outcome],
                )
        masked = [mask_key(k) for k in keys]
        msg = (
            f"no registered device matches {', '.join(masked)}"
            if masked
            else "the message names no device identifier to look up"
        )
        outcome = StepOutcome(
            step=Step.LOOKUP,
            status=StepStatus.ERROR,
            at=now,
            error_code="unknown_device",
            error_message=msg,
            processed_data={"tried_keys": masked},
        )
        return envelope.replace(outcomes=[*envelope.outcomes, outcome])


def _device_patient(doc: dict[str, Any]) -> str | None:
    patient = doc.get("patient_id")
    return str(patient) if patient is not None else None


def _hospital(doc: dict[str, Any]) -> str | None:
    hospital = doc.get("hospital_id")
    return str(hospital) if hospital is not None else None
