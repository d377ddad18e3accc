"""Stage 3: find the patient of each message in the `devices` registry, batched and cached.

The registry maps normalised identifiers (`ble:D616F9641622`, `imei:...`, `citizen_id:...`)
to patients. A batch of messages costs at most one `$in` query on `devices` and one on
`patients`; answers are cached per process for a TTL, and misses for a shorter one so that a
newly registered device is picked up quickly.

A registry of up to `preload_max` identifiers is also held whole, as a Kafka Streams
GlobalKTable would be: read on a thread of its own at the first batch and again every half
TTL, so the worker's thread answers from memory instead of waiting for a round trip at every
first sight of a device and every expiry (each round trip holds back every message behind it
in the worker). An identifier the copy lacks (registered since, or unknown) is looked up
per batch as before; a copy older than the TTL is not used, so a device moved to another
patient is seen within the TTL either way. A larger registry is only looked up per batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

from flows.model import Envelope, ParsedMessage, Reading, Step, StepOutcome, StepStatus, mask_key
from sinks.mongo_database import mongo_call

__all__ = ["PatientLookup", "RegistryCopy", "mask_key"]

logger = logging.getLogger(__name__)

_MISSING = object()
# After a failed read of the whole registry, how long to look up per batch before trying
# again (the failure is logged each time).
_RELOAD_RETRY_SECONDS = 5.0


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


@dataclass(frozen=True)
class RegistryCopy:
    """The whole registry as read at `read_at` (monotonic): identifier -> patient -> hospital.

    Only identifiers with a patient, and patients with a hospital, are in it: the others are
    answered per batch, with the short TTL of a miss, so that an assignment made since is
    seen as soon as it would have been without the copy.
    """

    patient_of: dict[str, str]
    hospital_of: dict[str, str]
    read_at: float


class PatientLookup:
    """The `flat_map_batch` mapper of stage 3."""

    def __init__(
        self,
        database: Callable[[], Database[dict[str, Any]]],
        cache_ttl: float = 60.0,
        negative_ttl: float = 5.0,
        preload_max: int = 0,
    ) -> None:
        self._open = database
        self._db: Database[dict[str, Any]] | None = None
        self._db_lock = threading.Lock()
        self._ttl = cache_ttl
        self._devices = _TtlCache(cache_ttl, negative_ttl)
        self._patients = _TtlCache(cache_ttl, negative_ttl)
        # A TTL of 0 means "no cache": then no copy either.
        self._preload_max = preload_max if cache_ttl > 0 else 0
        self._copy: RegistryCopy | None = None
        self._reading = False
        self._next_read = 0.0
        self._read_lock = threading.Lock()

    @property
    def registry_copy(self) -> RegistryCopy | None:
        """The copy of the whole registry the lookups use now, if any."""
        return self._copy

    def __call__(self, batch: list[Envelope]) -> Iterable[Envelope]:
        """Resolve the patient of every envelope still on its way; pass the others through."""
        pending = [e for e in batch if not e.finished and e.parsed is not None]
        if not pending:
            return batch
        copy = self._fresh_copy()
        keys = {k for e in pending if e.parsed for k in e.parsed.lookup_keys}
        # Readings that name their own patient (AVA4 cuffs behind a shared gateway).
        keys.update(
            k for e in pending if e.parsed for r in e.parsed.readings for k in r.patient_keys
        )
        devices = _answer_from(copy.patient_of if copy else None, keys)
        devices.update(
            self._resolve(self._devices, "devices", keys - devices.keys(), _device_patient)
        )
        patient_ids = {p for p in devices.values() if p is not None}
        hospitals = _answer_from(copy.hospital_of if copy else None, patient_ids)
        hospitals.update(
            self._resolve(self._patients, "patients", patient_ids - hospitals.keys(), _hospital)
        )
        waiting = {id(e) for e in pending}
        return [self._decide(e, devices, hospitals) if id(e) in waiting else e for e in batch]

    def _fresh_copy(self) -> RegistryCopy | None:
        """Return the registry copy if younger than the TTL; start reading a new one when due."""
        if self._preload_max <= 0:
            return None
        now = time.monotonic()
        copy = self._copy
        due = copy is None or now - copy.read_at >= self._ttl / 2
        if due and now >= self._next_read:
            with self._read_lock:
                if not self._reading:
                    self._reading = True
                    threading.Thread(
                        target=self._read_registry,
                        args=(self._database(),),
                        name="vitalflow-registry-reader",
                        daemon=True,
                    ).start()
        if copy is None or now - copy.read_at >= self._ttl:
            return None
        return copy

    def _read_registry(self, db: Database[dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            copy = _whole_registry(db, self._preload_max, started)
        except Exception as exc:  # whatever failed, lookups go on per batch meanwhile
            logger.warning(
                "reading the device registry whole failed (%s: %s); looking up per batch, "
                "trying again in %.0f s",
                type(exc).__name__,
                exc,
                _RELOAD_RETRY_SECONDS,
            )
            self._next_read = time.monotonic() + _RELOAD_RETRY_SECONDS
        else:
            if copy is None:
                logger.info(
                    "the device registry has more than %d identifiers "
                    "(VITALFLOW_LOOKUP_PRELOAD_MAX): looking up per batch only",
                    self._preload_max,
                )
                self._preload_max = 0
            else:
                if self._copy is None:
                    logger.info(
                        "device registry held in memory: %d identifiers, %d patients, "
                        "read in %.2f s",
                        len(copy.patient_of),
                        len(copy.hospital_of),
                        time.monotonic() - started,
                    )
                self._copy = copy
        finally:
            with self._read_lock:
                self._reading = False

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
        with self._db_lock:
            if self._db is None:
                self._db = self._open()
            return self._db

    @staticmethod
    def _decide(envelope: Envelope, devices: dict[str, Any], hospitals: dict[str, Any]) -> Envelope:
        parsed = envelope.parsed
        keys = parsed.lookup_keys if parsed else []
        now = datetime.now(UTC)
        for key in keys:
            patient_id = devices.get(key)
            if patient_id is not None:
                owners = _reading_owners(parsed.readings, devices, patient_id) if parsed else None
                if parsed is not None and owners is not None:
                    return _shared(envelope, parsed, key, owners, hospitals, now)
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


def _reading_owners(
    readings: list[Reading], devices: dict[str, Any], patient_id: str
) -> list[str | None] | None:
    """Return each reading's patient when they are not all `patient_id`'s, else None.

    A reading that names no keys of its own is the message's, `patient_id`'s; one that does
    is the patient of the first of them that is registered, and no one's (None: not stored)
    when none is: an unknown cuff behind a household's gateway is not the household's.
    """
    owners: list[str | None] = []
    differs = False
    for reading in readings:
        owner: str | None = patient_id
        if reading.patient_keys:
            owner = next((devices[k] for k in reading.patient_keys if devices.get(k)), None)
        differs = differs or owner != patient_id
        owners.append(owner)
    return owners if differs else None


def _shared(
    envelope: Envelope,
    parsed: ParsedMessage,
    matched: str,
    owners: list[str | None],
    hospitals: dict[str, Any],
    now: datetime,
) -> Envelope:
    """Return the outcome of a message whose readings do not all belong to one patient.

    Each reading is stored as its own patient's. A message of several patients, and so its
    step events, names no one patient (`patient_id` None), only a hospital if they all share
    it: a viewer scoped to one of them must not get an event that carries another's readings.
    A reading of no registered device is not stored: a rejected part (dead-lettered), to be
    replayed once its device is registered.
    """
    pairs = tuple((o, hospitals.get(o)) if o is not None else None for o in owners)
    patients = sorted({o for o in owners if o is not None})
    hospital_ids = {pair[1] for pair in pairs if pair is not None}
    hospital_id = hospital_ids.pop() if len(hospital_ids) == 1 else None
    patient_id = patients[0] if len(patients) == 1 else None
    unowned = dict.fromkeys(
        f"no registered device matches {', '.join(mask_key(k) for k in r.patient_keys)}"
        for r, owner in zip(parsed.readings, owners, strict=True)
        if owner is None
    )
    rejected = [("unknown_device", text) for text in unowned]
    processed: dict[str, Any] = {
        "matched_key": mask_key(matched),
        "patient_id": patient_id,
        "hospital_id": hospital_id,
        "patient_ids": patients,
    }
    if rejected:
        processed["rejected"] = [{"code": c, "message": m} for c, m in rejected]
    outcome = StepOutcome(
        step=Step.LOOKUP, status=StepStatus.SUCCESS, at=now, processed_data=processed
    )
    return envelope.replace(
        patient_id=patient_id,
        hospital_id=hospital_id,
        reading_patients=pairs,
        parsed=replace(parsed, rejected=[*parsed.rejected, *rejected]) if rejected else parsed,
        outcomes=[*envelope.outcomes, outcome],
    )


def _whole_registry(db: Database[dict[str, Any]], most: int, read_at: float) -> RegistryCopy | None:
    """Read every identifier with a patient, and every patient with a hospital.

    None if more than `most` identifiers have a patient.
    """

    def identifiers() -> dict[str, str] | None:
        found: dict[str, str] = {}
        # A patient's identifiers share one string: 200,000 identifiers take ~23 MB.
        one_of: dict[str, str] = {}
        for doc in db["devices"].find({}, {"patient_id": 1}).batch_size(10_000):
            patient = _device_patient(doc)
            if patient is not None:
                found[str(doc["_id"])] = one_of.setdefault(patient, patient)
                if len(found) > most:
                    return None
        return found

    def hospitals() -> dict[str, str]:
        found: dict[str, str] = {}
        for doc in db["patients"].find({}, {"hospital_id": 1}).batch_size(10_000):
            hospital = _hospital(doc)
            if hospital is not None:
                found[str(doc["_id"])] = hospital
        return found

    patient_of = mongo_call(db, "devices read whole", identifiers)
    if patient_of is None:
        return None
    return RegistryCopy(patient_of, mongo_call(db, "patients read whole", hospitals), read_at)


def _answer_from(known: dict[str, str] | None, keys: set[str]) -> dict[str, Any]:
    if not known:
        return {}
    return {k: known[k] for k in keys if k in known}


def _device_patient(doc: dict[str, Any]) -> str | None:
    patient = doc.get("patient_id")
    return str(patient) if patient is not None else None


def _hospital(doc: dict[str, Any]) -> str | None:
    hospital = doc.get("hospital_id")
    return str(hospital) if hospital is not None else None
