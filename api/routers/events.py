"""GET /events (the live SSE stream) and GET /events/recent (the latest events as JSON)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from pydantic import ValidationError

from api.auth import Access, require_access
from api.models import RecentEvents, StepEvent
from api.position import Position, PositionError
from api.records import StepRecord
from api.runtime import ApiRuntime, get_runtime
from api.selection import STATUSES, STEPS, EventFilter, OutOfScopeError, Selection, split_values
from api.stream import EventStream, StepEventResponse

logger = logging.getLogger(__name__)

__all__ = ["router"]

router = APIRouter(tags=["events"])

_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "`Last-Event-ID` / `last_event_id` is not a position"},
    401: {"description": "Token missing, malformed, badly signed or expired"},
    403: {"description": "A filter names a hospital or patient outside the token's scope"},
    422: {"description": "Unknown step or status"},
}

_LIST = "One or more values: repeat the parameter or separate them with commas"


def event_filter(
    device_type: Annotated[
        list[str] | None, Query(description=f"AVA4, Kati, Qube, ... {_LIST}")
    ] = None,
    device_id: Annotated[list[str] | None, Query(description=_LIST)] = None,
    patient_id: Annotated[list[str] | None, Query(description=_LIST)] = None,
    hospital_id: Annotated[list[str] | None, Query(description=_LIST)] = None,
    step: Annotated[list[str] | None, Query(description=f"{', '.join(STEPS)}. {_LIST}")] = None,
    status_: Annotated[
        list[str] | None, Query(alias="status", description=f"{', '.join(STATUSES)}. {_LIST}")
    ] = None,
) -> EventFilter:
    """FastAPI dependency: the request's filters."""
    steps, statuses = split_values(step), split_values(status_)
    unknown = (steps or frozenset()) - set(STEPS) | (statuses or frozenset()) - set(STATUSES)
    if unknown:
        msg = f"unknown step or status: {', '.join(sorted(unknown))}"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, msg)
    return EventFilter(
        device_types=split_values(device_type),
        device_ids=split_values(device_id),
        patient_ids=split_values(patient_id),
        hospital_ids=split_values(hospital_id),
        steps=steps,
        statuses=statuses,
    )


def selection(
    access: Annotated[Access, Depends(require_access)],
    filters: Annotated[EventFilter, Depends(event_filter)],
) -> Selection:
    """FastAPI dependency: filters within the token's scope, or 403."""
    try:
        filters.check_scope(access)
    except OutOfScopeError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    return Selection(access, filters)


def _require_ready(runtime: ApiRuntime) -> None:
    if not runtime.hub.ready:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the event feed is not available yet: {runtime.hub.detail}",
            headers={"Retry-After": "2"},
        )


@router.get(
    "/events",
    summary="Stream step events (Server-Sent Events), resumable",
    description=(
        "Each frame has `id:` (a resume position), `event:` (the step, or `ready`, `reset`, "
        "`heartbeat`, `close`) and `data:` (the CloudEvent, or the control frame's JSON). "
        "Reconnect with `Last-Event-ID` (or `last_event_id`) to get exactly the events "
        "after that frame. Position format: `<partition>-<next offset>` pairs joined by dots."
    ),
    response_class=StepEventResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        503: {"description": "The event feed is not reachable yet; retry"},
        **_ERRORS,
    },
)
async def stream_events(
    runtime: Annotated[ApiRuntime, Depends(get_runtime)],
    chosen: Annotated[Selection, Depends(selection)],
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this frame id")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(description="Resume after this frame id; the header wins when both are given"),
    ] = None,
) -> StepEventResponse:
    """Open a stream."""
    # EventSource reconnects with the header carrying its newest id while the URL keeps the
    # query value it was opened with, so the header is the fresher of the two.
    resume = last_event_id_header or last_event_id
    try:
        requested = Position.decode(resume) if resume else None
    except PositionError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    _require_ready(runtime)
    stream = EventStream(runtime.hub, chosen, requested, runtime.auth_mode)
    return StepEventResponse(
        stream.frames(),
        ping=0,
        send_timeout=runtime.tuning.send_timeout_seconds,
        shutdown_grace_period=runtime.tuning.shutdown_grace_seconds,
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/events/recent",
    summary="The latest step events as JSON, with the position to stream on from",
    response_model=RecentEvents,
    response_model_exclude_unset=True,
    responses={503: {"description": "The event feed is not reachable yet; retry"}, **_ERRORS},
)
async def recent_events(
    runtime: Annotated[ApiRuntime, Depends(get_runtime)],
    chosen: Annotated[Selection, Depends(selection)],
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many events")] = 100,
) -> RecentEvents:
    """Return the newest matching events this process holds in memory, oldest first."""
    _require_ready(runtime)
    records, position = runtime.hub.recent(chosen, limit)
    return RecentEvents(events=_step_events(records), position=str(position))


def _step_events(records: list[StepRecord]) -> list[StepEvent]:
    # A record another producer wrote may be JSON with a `data` object and still not a step
    # event of DESIGN.md (an `id` that is a number): the stream passes it on as it came, but
    # this answer is typed, so it is left out rather than failing the request (a 500 for
    # every caller, until it left the buffer).
    events = []
    for record in records:
        try:
            events.append(StepEvent.model_validate(record.event_json()))
        except (ValidationError, RecursionError):  # nested past any event's depth
            logger.debug("record %d-%d is not a step event", record.partition, record.offset)
    return events
