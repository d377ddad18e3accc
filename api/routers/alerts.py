"""GET /alerts and POST /alerts/{id}/ack: the alerts of the last day and who acknowledged them.

An alert is a stored observation with `alert: true` (`flows.alerts`: its id is the
observation's id, the same id as its record on the alerts topic). An acknowledgement is one
document in `alert_acks` whose `_id` is the alert id: the first one wins, a second
acknowledgement of the same alert returns the first (who and when), so every viewer sees the
same answer whoever clicked first. Same scopes as `/events`: an alert is visible, and may be
acknowledged, with `events:all`, `patient:<its patient>` or `hospital:<its hospital>`; one
outside the token's scope is a 403, an unknown id a 404. Who acknowledged is the token's
`sub` (a token without one may read alerts but not acknowledge them); with auth off, the
demo's, it is `anonymous`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field
from pymongo import DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from api.auth import Access, require_access
from api.history_access import check_patient, get_database, store_errors
from api.query_times import as_utc
from flows.alerts import EMERGENCY_CODES, alert_kind
from flows.alerts import alert_id as id_of_alert

__all__ = ["AckRequest", "AlertAck", "AlertItem", "AlertList", "AlertState", "router"]

MAX_ALERTS = 500
# The alerts a request looks at, newest first, before filtering by state: bounds the cost of
# `state=open` on a day with very many alerts (the page says when it was cut).
_MAX_SCANNED = 5000
_ANONYMOUS = "anonymous"
_FIELDS = {
    "patient_id": 1,
    "hospital_id": 1,
    "kind": 1,
    "device_type": 1,
    "device_id": 1,
    "measured_at": 1,
    "values": 1,
    "flags": 1,
    "severity": 1,
}

router = APIRouter(tags=["alerts"])

Document = dict[str, Any]


class AlertState(StrEnum):
    """Which alerts to list."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ALL = "all"


class AlertAck(BaseModel):
    """Who acknowledged an alert, and when."""

    alert_id: str
    by: str = Field(description="The acknowledging token's `sub` (`anonymous` with auth off)")
    at: datetime
    note: str | None = None


class AlertItem(BaseModel):
    """One alert: the observation that raised it, and its acknowledgement if any."""

    id: str = Field(description="The alert id: the observation's id, as on the alerts topic")
    kind: str = Field(description="The code of its most serious flag: `sos`, `fall`, ...")
    emergency: bool
    severity: str
    patient_id: str
    hospital_id: str | None = None
    observation_kind: str
    device_type: str | None = None
    device_id: str | None = None
    measured_at: datetime
    values: dict[str, Any]
    flags: list[dict[str, Any]]
    acknowledged: AlertAck | None = None


class AlertList(BaseModel):
    """The alerts asked for, newest first."""

    items: list[AlertItem]
    since: datetime
    truncated: bool = Field(description="More alerts matched than `limit`, or than were scanned")


class AckRequest(BaseModel):
    """An optional note kept with the acknowledgement."""

    note: str | None = Field(default=None, max_length=500)


@router.get(
    "/alerts",
    summary="Alerts (SOS, falls, critical and high readings) in the token's scope, newest first",
    response_model=AlertList,
    responses={
        401: {"description": "Token missing, malformed, badly signed or expired"},
        403: {"description": "`patient_id` names a patient outside the token's scope"},
        404: {"description": "`patient_id` names no patient"},
        422: {"description": "Unknown state, bad limit, or a `since` UTC cannot hold"},
        503: {"description": "The store is unreachable"},
    },
)
def list_alerts(
    access: Annotated[Access, Depends(require_access)],
    db: Annotated[Database[Document], Depends(get_database)],
    state: Annotated[AlertState, Query(description="open, acknowledged or all")] = (
        AlertState.OPEN
    ),
    patient_id: Annotated[str | None, Query(description="Only this patient's alerts")] = None,
    since: Annotated[
        datetime | None,
        Query(description="Measured at or after (ISO 8601, UTC if naive; default: 24 h ago)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALERTS)] = 100,
) -> AlertList:
    """List the alerts the token may see, with who acknowledged each."""
    start = as_utc("since", since) or datetime.now(UTC) - timedelta(hours=24)
    conditions: list[Document] = [{"alert": True}, {"measured_at": {"$gte": start}}]
    if patient_id is not None:
        check_patient(patient_id, access, db)
        conditions.append({"patient_id": patient_id})
    scope = _observations_in_scope(access)
    if scope is None:
        return AlertList(items=[], since=start, truncated=False)
    if scope:
        conditions.append(scope)
    with store_errors():
        found = list(
            db.observations.find({"$and": conditions}, _FIELDS)
            .sort([("measured_at", DESCENDING), ("_id", DESCENDING)])
            .limit(_MAX_SCANNED)
        )
        ids = [id_of_alert(str(o["_id"])) for o in found]
        acks = {a["_id"]: a for a in db.alert_acks.find({"_id": {"$in": ids}})} if ids else {}
    items = []
    for observation in found:
        ack = acks.get(id_of_alert(str(observation["_id"])))
        if (state is AlertState.OPEN and ack) or (state is AlertState.ACKNOWLEDGED and not ack):
            continue
        items.append(_item(observation, ack))
    return AlertList(
        items=items[:limit],
        since=start,
        truncated=len(items) > limit or len(found) == _MAX_SCANNED,
    )


@router.post(
    "/alerts/{alert_id}/ack",
    summary="Acknowledge an alert, for every viewer (the first acknowledgement stands)",
    response_model=AlertAck,
    responses={
        401: {"description": "Token missing, malformed, badly signed or expired"},
        403: {"description": "The alert's patient is outside the token's scope, or no `sub`"},
        404: {"description": "No such alert"},
        503: {"description": "The store is unreachable"},
    },
)
def acknowledge_alert(
    access: Annotated[Access, Depends(require_access)],
    db: Annotated[Database[Document], Depends(get_database)],
    alert_id: Annotated[str, Path(description="The alert id")],
    request: Annotated[AckRequest | None, Body()] = None,
) -> AlertAck:
    """Record who acknowledged the alert and when; return the acknowledgement that stands."""
    with store_errors():
        observation = db.observations.find_one(
            {"_id": alert_id}, {"patient_id": 1, "hospital_id": 1, "alert": 1}
        )
    if observation is None or not observation.get("alert"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no alert {alert_id!r}")
    if not access.can_see(observation.get("patient_id"), observation.get("hospital_id")):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="the token does not grant access to this patient"
        )
    by = access.subject
    if by is None and access == Access.unrestricted():
        by = _ANONYMOUS  # auth off: the demo
    if by is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="the token has no `sub`: an acknowledgement must say who made it",
        )
    now = datetime.now(UTC)
    ack = {
        "_id": id_of_alert(alert_id),
        "patient_id": observation.get("patient_id"),
        "hospital_id": observation.get("hospital_id"),
        "by": by,
        # Millisecond precision: what BSON dates keep, so the answer equals what is read back.
        "at": now.replace(microsecond=now.microsecond // 1000 * 1000),
        "note": request.note if request else None,
    }
    with store_errors():
        try:
            db.alert_acks.insert_one(ack)
        except DuplicateKeyError:
            ack = db.alert_acks.find_one({"_id": id_of_alert(alert_id)}) or ack
    return _ack(ack)


def _observations_in_scope(access: Access) -> Document | None:
    """Return the `observations` filter of what the token may read; None when nothing."""
    if access.everything:
        return {}
    clauses: list[Document] = []
    if access.patients:
        clauses.append({"patient_id": {"$in": sorted(access.patients)}})
    if access.hospitals:
        clauses.append({"hospital_id": {"$in": sorted(access.hospitals)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def _ack(document: Document) -> AlertAck:
    at = document["at"]
    return AlertAck(
        alert_id=str(document["_id"]),
        by=str(document["by"]),
        at=at if at.tzinfo else at.replace(tzinfo=UTC),
        note=document.get("note"),
    )


def _item(observation: Document, ack: Document | None) -> AlertItem:
    flags = [f for f in observation.get("flags") or [] if isinstance(f, dict)]
    measured_at = observation["measured_at"]
    return AlertItem(
        id=id_of_alert(str(observation["_id"])),
        kind=alert_kind(flags),
        emergency=any(f.get("code") in EMERGENCY_CODES for f in flags),
        severity=str(observation.get("severity", "high")),
        patient_id=str(observation.get("patient_id")),
        hospital_id=observation.get("hospital_id"),
        observation_kind=str(observation.get("kind")),
        device_type=observation.get("device_type"),
        device_id=observation.get("device_id"),
        measured_at=measured_at if measured_at.tzinfo else measured_at.replace(tzinfo=UTC),
        values=observation.get("values") or {},
        flags=flags,
        acknowledged=_ack(ack) if ack else None,
    )
