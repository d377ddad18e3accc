"""Enrich stage: readings become observation documents with LOINC codes, units and flags.

An observation's `_id` is the message id plus the reading's index in the message, so storing
the same message again (a redelivery, a replay, a restart) can never double a record.
"""

from __future__ import annotations

from typing import Any

from flows.codes_and_flags import enrich_reading
from flows.model import Envelope
from flows.thresholds import Thresholds

__all__ = ["enrich_envelope", "observation_id"]


def observation_id(message_id: str, index: int) -> str:
    """Return the deterministic `_id` of the `index`-th reading of a message."""
    return f"{message_id}:{index}"


def enrich_envelope(envelope: Envelope, thresholds: Thresholds) -> Envelope:
    """Turn the readings of an envelope whose patient is known into observation documents."""
    owners = envelope.reading_patients
    if envelope.finished or envelope.parsed is None or (envelope.patient_id is None and not owners):
        return envelope
    delivery = envelope.delivery
    documents: list[dict[str, Any]] = []
    for index, reading in enumerate(envelope.parsed.readings):
        owner = owners[index] if owners else (envelope.patient_id, envelope.hospital_id)
        if owner is None:
            continue  # no registered device's: a rejected part (the index stays its own)
        patient_id, hospital_id = owner
        clinical = enrich_reading(reading, thresholds)
        documents.append(
            {
                "_id": observation_id(delivery.message_id, index),
                "patient_id": patient_id,
                "hospital_id": hospital_id,
                "kind": str(reading.kind),
                "device_type": envelope.device_type,
                "device_id": envelope.device_id,
                "sub_device": reading.sub_device,
                "message_id": delivery.message_id,
                "topic": delivery.topic,
                "measured_at": reading.measured_at,
                "device_time": reading.device_time,
                "received_at": delivery.received_at,
                "values": reading.values,
                "attributes": reading.attributes,
                **clinical,
            }
        )
    return envelope.replace(observations=documents)
