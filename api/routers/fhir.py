"""FHIR R4 read and search of Observations: GET /fhir/Observation and /fhir/Observation/{id}.

Same scopes as the rest of the API. Search parameters: `patient` (required: `X` or
`Patient/X`), `code` (comma list of LOINC codes, `http://loinc.org|code` allowed), `date`
(repeatable, prefixes `ge`, `gt`, `le`, `lt`, `eq` or none; `YYYY`, `YYYY-MM`, `YYYY-MM-DD`
or a full date-time, each meaning its whole range as FHIR says), `_count` (at most 1000;
more is served as 1000, as FHIR lets a server do), and `_cursor`, which only the `next` link
carries. Matches come newest first. A bad parameter is a 400 with an `OperationOutcome`, and
every other error of these routes is an `OperationOutcome` too, with the status the rest of the
API gives (401, 403 outside the token's scope, 404, 503).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pymongo.database import Database
from typing_extensions import override

from api.auth import Access, require_access
from api.history_access import check_patient, get_database, store_errors
from flows.fhir import (
    FHIR_KINDS,
    kinds_for_code,
    observation_id_of,
    searchset_bundle,
    to_fhir_observation,
)
from sinks.observation_history import (
    HistoryCursor,
    InvalidCursorError,
    ObservationQuery,
    find_observations,
)

__all__ = ["FHIR_JSON", "MAX_COUNT", "router"]

FHIR_JSON = "application/fhir+json"
MAX_COUNT = 1000
_DATE = re.compile(r"^(eq|ge|gt|le|lt)?([0-9]{4}(?:-[0-9]{2}(?:-[0-9]{2}(?:T.+)?)?)?)$")
# The bearer token a browser may pass in the query: never copied into a Bundle's links.
_TOKEN_PARAMETER = "access_token"
# FHIR's IssueType for each error status the routes give.
_ISSUE_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "login",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not-found",
    status.HTTP_503_SERVICE_UNAVAILABLE: "transient",
}

Document = dict[str, Any]


class _FhirRoute(APIRoute):
    """A route that answers every error with an `OperationOutcome`, as FHIR clients expect.

    FastAPI answers a bad query parameter with its own 422 before the endpoint runs, and an
    `HTTPException` (from the auth and scope dependencies too) with `{"detail": ...}`.
    """

    @override
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer_with_outcomes(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _outcome(_invalid_parameters(exc), status.HTTP_400_BAD_REQUEST)
            except HTTPException as exc:
                return _outcome(str(exc.detail), exc.status_code, headers=exc.headers)

        return answer_with_outcomes


router = APIRouter(prefix="/fhir", tags=["fhir"], route_class=_FhirRoute)

_FHIR: dict[str, Any] = {"content": {FHIR_JSON: {}}}
# Every error is an OperationOutcome; `default` also keeps FastAPI from listing its own 422.
_FHIR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {**_FHIR, "description": "A FHIR R4 resource"},
    400: {**_FHIR, "description": "A bad parameter (an OperationOutcome)"},
    401: {**_FHIR, "description": "Token missing, malformed, badly signed or expired"},
    403: {**_FHIR, "description": "The patient is outside the token's scope"},
    404: {**_FHIR, "description": "No such resource (or not within the token's scope)"},
    503: {**_FHIR, "description": "The observation store is unreachable"},
    "default": {**_FHIR, "description": "Any other error (an OperationOutcome)"},
}


class _BadSearchError(ValueError):
    pass


def _fhir(
    content: Document,
    status_code: int = status.HTTP_200_OK,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(content, status_code=status_code, media_type=FHIR_JSON, headers=headers)


def _outcome(
    message: str, status_code: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    code = _ISSUE_CODES.get(status_code, "processing")
    return _fhir(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}],
        },
        status_code,
        headers,
    )


def _invalid_parameters(exc: RequestValidationError) -> str:
    # Names and reasons only: the rejected values are not echoed back.
    return "; ".join(
        f"{error['loc'][-1]}: {error['msg']}" if error.get("loc") else str(error["msg"])
        for error in exc.errors()
    )


def _date_range(text: str) -> tuple[datetime, datetime]:
    """Return the `[start, end)` a FHIR date or date-time stands for."""
    parts = text.split("-")
    try:
        if "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            # In UTC, as stored: BSON cannot hold 9999-12-31T23:00-01:00 (an OverflowError
            # in the driver, a 500, before this), so such a date is refused here.
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            return moment, moment + timedelta(milliseconds=1)
        year = int(parts[0])
        if len(parts) == 1:
            return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
        month = int(parts[1])
        if len(parts) == 2:
            start = datetime(year, month, 1, tzinfo=UTC)
            following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return start, following
        start = datetime(year, month, int(parts[2]), tzinfo=UTC)
        return start, start + timedelta(days=1)
    except (ValueError, OverflowError) as exc:
        # OverflowError: the range ends after 9999-12-31, the last date Python holds.
        msg = f"date {text!r} is not a FHIR date or dateTime this server can search"
        raise _BadSearchError(msg) from exc


def _date_window(values: list[str]) -> tuple[datetime | None, datetime | None]:
    lower: datetime | None = None
    upper: datetime | None = None
    for value in values:
        match = _DATE.match(value)
        if match is None:
            msg = f"date {value!r}: expected [eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm:ss[.sss]Z]]]"
            raise _BadSearchError(msg)
        prefix, start, end = match.group(1) or "eq", *_date_range(match.group(2))
        low = {"eq": start, "ge": start, "gt": end}.get(prefix)
        high = {"eq": end, "lt": start, "le": end}.get(prefix)
        if low is not None:
            lower = low if lower is None else max(lower, low)
        if high is not None:
            upper = high if upper is None else min(upper, high)
    return lower, upper


@router.get(
    "/Observation",
    summary="Search Observations of one patient: a FHIR R4 searchset Bundle, newest first",
    response_class=JSONResponse,
    responses=_FHIR_RESPONSES,
)
def search_observations(
    request: Request,
    access: Annotated[Access, Depends(require_access)],
    db: Annotated[Database[Document], Depends(get_database)],
    patient: Annotated[str, Query(description="`X` or `Patient/X`")],
    code: Annotated[str | None, Query(description="LOINC codes, comma separated")] = None,
    date: Annotated[
        list[str] | None, Query(description="e.g. `ge2026-01-01`, repeatable (all must hold)")
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, description="Page size")] = 50,
    cursor: Annotated[str | None, Query(alias="_cursor", description="From `next`")] = None,
) -> JSONResponse:
    """Return the matches as a searchset Bundle; the `next` link pages on."""
    patient_id = patient.removeprefix("Patient/")
    if not patient_id:
        return _outcome("patient: give `X` or `Patient/X`", status.HTTP_400_BAD_REQUEST)
    try:
        start, end = _date_window(date or [])
        after = HistoryCursor.decode(cursor) if cursor is not None else None
    except (_BadSearchError, InvalidCursorError) as exc:
        return _outcome(str(exc), status.HTTP_400_BAD_REQUEST)
    if code:
        kinds = {k for c in code.split(",") if c.strip() for k in kinds_for_code(c.strip())}
    else:
        kinds = set(FHIR_KINDS)
    check_patient(patient_id, access, db)
    base = str(request.base_url).rstrip("/") + "/fhir"
    self_url = request.url.remove_query_params(_TOKEN_PARAMETER)
    resources: list[Document] = []
    following = None
    if kinds and (start is None or end is None or start < end):
        query = ObservationQuery((patient_id,), tuple(sorted(map(str, kinds))), start, end)
        with store_errors():
            docs, following = find_observations(db, query, min(count, MAX_COUNT), after)
        resources = [r for r in map(to_fhir_observation, docs) if r is not None]
    next_url = str(self_url.include_query_params(_cursor=following.encode())) if following else None
    return _fhir(searchset_bundle(resources, base, str(self_url), next_url, now=datetime.now(UTC)))


@router.get(
    "/Observation/{resource_id}",
    summary="Read one Observation by id (the stored observation's deterministic id)",
    response_class=JSONResponse,
    responses=_FHIR_RESPONSES,
)
def read_observation(
    resource_id: str,
    access: Annotated[Access, Depends(require_access)],
    db: Annotated[Database[Document], Depends(get_database)],
) -> JSONResponse:
    """Return the Observation, or a 404 OperationOutcome (also outside the token's scope)."""
    observation_id = observation_id_of(resource_id)
    doc = None
    if observation_id is not None:
        with store_errors():
            doc = db.observations.find_one({"_id": observation_id})
            patient = db.patients.find_one({"_id": doc["patient_id"]}) if doc else None
        hospital = patient.get("hospital_id") if patient else None
        if doc is not None and not access.can_see(doc["patient_id"], hospital):
            doc = None
    resource = to_fhir_observation(doc) if doc is not None else None
    if resource is None:
        return _outcome(f"no Observation {resource_id!r}", status.HTTP_404_NOT_FOUND)
    return _fhir(resource)
