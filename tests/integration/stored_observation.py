"""One observation document in the shape the flow stores, for seeding a store directly."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flows.codes_and_flags import enrich_reading
from flows.enrich import observation_id
from flows.model import ObservationKind, Reading
from flows.thresholds import Thresholds

THRESHOLDS = Thresholds()


def stored(
    n: int,
    patient: str,
    kind: ObservationKind,
    values: dict[str, Any],
    measured_at: datetime,
    hospital: str = "H1",
) -> dict[str, Any]:
    """Observation `n` in the shape `flows.enrich.enrich_envelope` stores."""
    message_id = f"{n:032x}"
    reading = Reading(kind, values, measured_at, measured_at)
    return {
        "_id": observation_id(message_id, 0),
        "patient_id": patient,
        "hospital_id": hospital,
        "kind": str(kind),
        "device_type": "AVA4",
        "device_id": "08F9E0D1F7B4",
        "sub_device": None,
        "message_id": message_id,
        "topic": "dusun_pub",
        "measured_at": measured_at,
        "device_time": measured_at,
        "received_at": measured_at + timedelta(seconds=1),
        "values": values,
        "attributes": {},
        **enrich_reading(reading, THRESHOLDS),
    }
