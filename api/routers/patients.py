"""GET /patients: the patients a token may see, their latest vitals and their devices' status.

Three reads per page whatever its size: the patients (by `_id`, or by `hospital_id` through
its index), their devices (by `patient_id`, indexed), and those devices' `device_status`
(by `_id`). No `$lookup`: DESIGN.md keeps to what every supported store runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field
from pymongo import ASCENDING
from pymongo.database import Database

from api.auth import Access, require_access
from api.history_access import get_database, patients_in_scope, store_errors
from flows.model import SEVERITY_ORDER, mask_key

__all__ = ["DeviceState", "LatestVital", "PatientList", "PatientOverview", "router"]

MAX_PATIENTS = 1000

router = APIRouter(tags=["history"])

Document = dict[str, Any]


class LatestVital(BaseModel):
    """The newest reading of one kind (`patients.last_vitals.<kind>`)."""

    observation_id: str
    measured_at: datetime
    values: dict[str, Any]
    severity: str = "normal"
    device_type: str | None = None


class DeviceState(BaseModel):
    """A registered device identifier and, if it reports one, its status."""

    key: str = Field(
        description="`<id_kind>:<id>`, e.g. `gateway:08F9E0D1F7B4`; a citizen ID is never shown: "
        "`citizen_id:[redacted]`"
    )
    device_type: str | None = None
    id_kind: str | None = None
    kind: str | None = Field(default=None, description="What the device measures, if known")
    online: bool | None = None
    battery: float | None = None
    signal: float | None = None
    last_seen: datetime | None = Field(default=None, description="Its last status message")


class PatientOverview(BaseModel):
    """One patient: hospital, latest vitals by kind, and devices."""

    id: str
    hospital_id: str | None = None
    severity: str = Field(description="The most severe of the latest vitals")
    last_seen: datetime | None = Field(description="When the newest latest vital was measured")
    last_vitals: dict[str, LatestVital]
    devices: list[DeviceState]


class PatientList(BaseModel):
    """A page of patients ordered by id."""

    items: list[PatientOverview]
    next_after: str | None = Field(description="Pass as `after` for the next page; null at the end")


@router.get(
    "/patients",
    summary="The patients within the token's scope, with latest vitals and device status",
    response_model=PatientList,
    responses={
        401: {"description": "Token missing, malformed, badly signed or expired"},
        403: {"description": "`hospital_id` names a hospital outside the token's scope"},
        503: {"description": "The observation store is unreachable"},
    },
)
def list_patients(
    access: Annotated[Access, Depends(require_access)],
    db: Annotated[Database[Document], Depends(get_database)],
    hospital_id: Annotated[str | None, Query(description="Only this hospital's patients")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PATIENTS)] = 200,
    after: Annotated[str | None, Query(description="The `next_after` of the previous page")] = None,
) -> PatientList:
    """List what the token may see: all, its hospitals' patients, or its own patients."""
    if hospital_id is not None and not access.everything and hospital_id not in access.hospitals:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="the token does not grant this hospital"
        )
    scope = patients_in_scope(access)
    if scope is None:
        return PatientList(items=[], next_after=None)
    conditions = [scope] if scope else []
    if hospital_id is not None:
        conditions.append({"hospital_id": hospital_id})
    if after is not None:
        conditions.append({"_id": {"$gt": after}})
    query = {"$and": conditions} if len(conditions) > 1 else (conditions[0] if conditions else {})
    with store_errors():
        patients = list(
            db.patients.find(query, {"hospital_id": 1, "last_vitals": 1})
            .sort([("_id", ASCENDING)])
            .limit(limit + 1)
        )
        more = len(patients) > limit
        patients = patients[:limit]
        devices = _devices_of(db, [p["_id"] for p in patients])
    return PatientList(
        items=[_overview(p, devices.get(p["_id"], [])) for p in patients],
        next_after=patients[-1]["_id"] if more else None,
    )


def _devices_of(db: Database[Document], patient_ids: list[str]) -> dict[str, list[DeviceState]]:
    if not patient_ids:
        return {}
    registered = list(db.devices.find({"patient_id": {"$in": patient_ids}}))
    keys = [d["_id"] for d in registered]
    statuses = {s["_id"]: s for s in db.device_status.find({"_id": {"$in": keys}})} if keys else {}
    found: dict[str, list[DeviceState]] = {}
    for device in sorted(registered, key=lambda d: d["_id"]):
        state = statuses.get(device["_id"], {})
        found.setdefault(device["patient_id"], []).append(
            DeviceState(
                key=mask_key(device["_id"]),
                device_type=device.get("device_type"),
                id_kind=device.get("id_kind"),
                kind=device.get("kind"),
                online=state.get("online"),
                battery=state.get("battery"),
                signal=state.get("signal"),
                last_seen=state.get("last_seen"),
            )
        )
    return found


def _overview(patient: Document, devices: list[DeviceState]) -> PatientOverview:
    held = patient.get("last_vitals")
    vitals = {
        kind: LatestVital.model_validate(entry)
        for kind, entry in (held.items() if isinstance(held, dict) else ())
        if isinstance(entry, dict)
    }
    severity = max(
        (v.severity for v in vitals.values()),
        key=lambda s: SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else 0,
        default="normal",
    )
    return PatientOverview(
        id=patient["_id"],
        hospital_id=patient.get("hospital_id"),
        severity=severity,
        last_seen=max((v.measured_at for v in vitals.values()), default=None),
        last_vitals=vitals,
        devices=devices,
    )
