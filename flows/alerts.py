"""Alerts: one CloudEvent per stored observation that alerts, for Kafka `vitalflow.alerts`.

An observation alerts when its severity is high or critical (`flows.codes_and_flags`): an SOS
or a fall, a hypertensive crisis, a severely low SpO2, a hypoglycaemia, ... Its alert is the
CloudEvent `vitalflow.alert.<kind>`, where the kind is the code of its most serious flag
(`sos`, `fall`, `bp_hypertensive_crisis`, `spo2_low_severe`, `hypoglycaemia_level_2`, ...; an
emergency outranks any reading), keyed by patient.

The alert's id is its observation's id (`<message_id>:<index>`): one alert per observation,
and a redelivery, a replay or an epoch re-run after a crash re-emits the same id, which
consumers (the webhook delivery, the dashboard's acknowledgements) use to drop repeats.
Only observations of a chain that reached step 5 are alerted on: what is not stored cannot
be looked at by whoever the alert reaches.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flows.codes_and_flags import EVENT_FLAGS
from flows.model import SEVERITY_ORDER, Envelope, Step, StepStatus
from flows.step_events import isoformat_z

__all__ = [
    "ALERT_SEVERITIES",
    "EMERGENCY_CODES",
    "alert_event",
    "alert_id",
    "alert_kind",
    "alert_records",
]

ALERT_SEVERITIES = frozenset({"high", "critical"})
EMERGENCY_CODES = frozenset({*(code for code, _, _ in EVENT_FLAGS.values()), "emergency"})


def alert_id(observation_id: str) -> str:
    """Return the id of the alert raised by an observation: the observation's own id."""
    return observation_id


def alert_kind(flags: list[dict[str, Any]]) -> str:
    """Return the code of the most serious alerting flag; an emergency outranks a reading."""

    def rank(flag: dict[str, Any]) -> tuple[int, int]:
        severity = str(flag.get("severity"))
        order = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0
        return (1 if flag.get("code") in EMERGENCY_CODES else 0, order)

    alerting = [f for f in flags if f.get("severity") in ALERT_SEVERITIES or _emergency(f)]
    if not alerting:
        return "reading"
    return str(max(alerting, key=rank).get("code") or "reading")


def alert_event(observation: dict[str, Any]) -> dict[str, Any]:
    """Return the CloudEvent (structured mode) of the alert an observation document raises."""
    flags = [f for f in observation.get("flags") or [] if isinstance(f, dict)]
    kind = alert_kind(flags)
    identifier = alert_id(str(observation["_id"]))
    measured_at = observation.get("measured_at")
    return {
        "specversion": "1.0",
        "id": identifier,
        "source": "vitalflow",
        "type": f"vitalflow.alert.{kind}",
        "subject": f"patient/{observation.get('patient_id')}",
        "time": _time(measured_at),
        "datacontenttype": "application/json",
        "data": {
            "alert_id": identifier,
            "kind": kind,
            "emergency": any(_emergency(f) for f in flags),
            "severity": observation.get("severity"),
            "patient_id": observation.get("patient_id"),
            "hospital_id": observation.get("hospital_id"),
            "observation_id": observation["_id"],
            "observation_kind": observation.get("kind"),
            "message_id": observation.get("message_id"),
            "device_type": observation.get("device_type"),
            "device_id": observation.get("device_id"),
            "measured_at": _time(measured_at),
            "received_at": _time(observation.get("received_at")),
            "values": observation.get("values") or {},
            "flags": flags,
        },
    }


def alert_records(envelope: Envelope) -> list[tuple[str, tuple[str, bytes]]]:
    """Return `(patient, (patient, alert JSON))` for each stored observation that alerts."""
    if not _stored(envelope):
        return []
    records = []
    for observation in envelope.observations:
        if not observation.get("alert"):
            continue
        key = str(observation.get("patient_id"))
        records.append((key, (key, json.dumps(alert_event(observation)).encode())))
    return records


def _stored(envelope: Envelope) -> bool:
    return any(o.step is Step.STORED and o.status is StepStatus.SUCCESS for o in envelope.outcomes)


def _emergency(flag: dict[str, Any]) -> bool:
    return flag.get("code") in EMERGENCY_CODES


def _time(value: object) -> str | None:
    if isinstance(value, datetime):
        return isoformat_z(value)
    return None if value is None else str(value)
