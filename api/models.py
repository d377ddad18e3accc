"""The response bodies of the API, as pydantic models (they are the OpenAPI document's schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DependencyHealth",
    "HealthReport",
    "MessageOutcomes",
    "Rates",
    "RecentEvents",
    "StatsReport",
    "StepEvent",
    "StepEventData",
    "ThroughputBucket",
]


class StepEventData(BaseModel):
    """The `data` of a step event (DESIGN.md, "Step events"); unknown fields are kept."""

    model_config = ConfigDict(extra="allow")

    message_id: str | None = None
    step: str | None = None
    status: str | None = None
    device_type: str | None = None
    device_id: str | None = None
    topic: str | None = None
    patient_id: str | None = None
    hospital_id: str | None = None
    payload: Any = None
    processed_data: Any = None
    error: Any = None
    reason: str | None = None
    alert: bool | None = None
    severity: str | None = None


class StepEvent(BaseModel):
    """A step event: a CloudEvent 1.0 in JSON structured mode."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    data: StepEventData


class RecentEvents(BaseModel):
    """The latest events the API holds, oldest first, and where a stream should resume."""

    events: list[StepEvent]
    position: str = Field(
        description="Pass as `last_event_id` to GET /events to continue exactly after these"
    )


class MessageOutcomes(BaseModel):
    """How message chains ended: stored at step 5, failed with an error, or skipped."""

    stored: int
    failed: int
    skipped: int
    success_rate: float | None = Field(description="stored / (stored + failed + skipped)")
    failure_rate: float | None = Field(description="failed / (stored + failed + skipped)")


class Rates(BaseModel):
    """Recent rates, per second, by the time events were written to the steps topic."""

    events_per_second_1m: float
    events_per_second_5m: float
    messages_per_second_1m: float
    errors_per_second_1m: float


class ThroughputBucket(BaseModel):
    """Events written during one interval."""

    start: datetime
    events: int
    stored: int
    errors: int
    skipped: int
    alerts: int


class StatsReport(BaseModel):
    """Counts of the events this API process has read (since `since`), within the token's scope."""

    since: datetime | None = Field(description="Time of the oldest event counted")
    events: int
    alerts: int
    by_device_type: dict[str, int]
    by_status: dict[str, int]
    by_step: dict[str, dict[str, int]] = Field(description="step -> status -> count")
    by_device_type_and_step: dict[str, dict[str, int]] = Field(
        description="device type -> step -> count"
    )
    messages: MessageOutcomes
    rates: Rates
    bucket_seconds: int
    throughput: list[ThroughputBucket] = Field(description="Oldest first, empty intervals included")


class DependencyHealth(BaseModel):
    """The state of one dependency."""

    name: str
    state: Literal["ok", "starting", "down"]
    detail: str


class HealthReport(BaseModel):
    """Liveness, each dependency, and how the API is configured to guard its data."""

    status: Literal["ok", "degraded"]
    auth: Literal["jwt", "off"]
    clients: int
    dependencies: list[DependencyHealth]
