"""The memos behind step events: timestamps and outcome counters come out as without them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from flows import step_events as events
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus
from flows.step_events import isoformat_z, step_events

T0 = datetime(2026, 11, 26, 10, 30, 0, 123456, tzinfo=UTC)


def formatted(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(
        st.datetimes(
            min_value=datetime(1, 1, 2),  # noqa: DTZ001 (bounds of naive values)
            max_value=datetime(9999, 12, 30),  # noqa: DTZ001
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=7))]),
        ),
        max_size=80,
    ),
    st.data(),
)
def test_timestamps_are_what_the_formula_gives_however_often_asked(
    moments: list[datetime], data: st.DataObject
) -> None:
    asked = moments + [data.draw(st.sampled_from(moments)) for _ in moments]
    assert [isoformat_z(m) for m in asked] == [formatted(m) for m in asked]
    assert len(events._timestamp_memo) <= events._TIMESTAMP_MEMO_LIMIT
    assert len(events._second_prefixes) <= events._SECOND_PREFIXES_LIMIT


def test_a_new_object_under_a_remembered_id_is_formatted_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moment = T0 + timedelta(days=1)
    # What the memo would hold had an earlier datetime with this id been freed.
    monkeypatch.setitem(events._timestamp_memo, id(moment), (T0, "stale"))
    assert isoformat_z(moment) == "2026-11-27T10:30:00.123Z"


def test_times_within_one_second_share_its_text_up_to_the_milliseconds() -> None:
    start = datetime(2026, 12, 3, 23, 59, 59, 999_999, tzinfo=UTC)
    earlier, later = start - timedelta(microseconds=998_999), start + timedelta(microseconds=1)
    for moment in (start, earlier, later):
        assert isoformat_z(moment) == formatted(moment)
    assert isoformat_z(start) == "2026-12-03T23:59:59.999Z"
    assert isoformat_z(start + timedelta(microseconds=1)) == "2026-12-04T00:00:00.000Z"


def test_equal_instants_in_other_zones_give_the_same_text() -> None:
    bangkok = T0.astimezone(timezone(timedelta(hours=7)))
    assert isoformat_z(T0) == isoformat_z(bangkok) == "2026-11-26T10:30:00.123Z"


def envelope(device_type: str, steps: int) -> Envelope:
    outcomes = [StepOutcome(step, StepStatus.SUCCESS, T0) for step in list(Step)[: steps - 1]] + [
        StepOutcome(list(Step)[steps - 1], StepStatus.ERROR, T0, error_code="x")
    ]
    return Envelope(Delivery("t", b"{}", T0, "m"), device_type, "d1", {}, outcomes)


def counted(step: Step, status: StepStatus, device_type: str) -> float:
    value = REGISTRY.get_sample_value(
        "vitalflow_step_outcomes_total",
        {"step": str(step), "status": str(status), "device_type": device_type},
    )
    return value or 0.0


@pytest.mark.parametrize("limit", [0, 2, 256])
def test_every_outcome_is_counted_under_its_labels(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(events, "_outcome_counters", {})
    monkeypatch.setattr(events, "_OUTCOME_COUNTERS_LIMIT", limit)
    device_type = f"memo-test-{limit}"
    before = {
        (step, status): counted(step, status, device_type)
        for step in Step
        for status in (StepStatus.SUCCESS, StepStatus.ERROR)
    }
    for _ in range(3):
        step_events(envelope(device_type, 3))
        step_events(envelope(device_type, 1))
    assert counted(Step.RECEIVED, StepStatus.SUCCESS, device_type) == (
        before[(Step.RECEIVED, StepStatus.SUCCESS)] + 3
    )
    assert counted(Step.PARSED, StepStatus.SUCCESS, device_type) == (
        before[(Step.PARSED, StepStatus.SUCCESS)] + 3
    )
    assert counted(Step.LOOKUP, StepStatus.ERROR, device_type) == (
        before[(Step.LOOKUP, StepStatus.ERROR)] + 3
    )
    assert counted(Step.RECEIVED, StepStatus.ERROR, device_type) == (
        before[(Step.RECEIVED, StepStatus.ERROR)] + 3
    )
    assert len(events._outcome_counters) == min(limit, 4)


@pytest.mark.parametrize(
    "payload",
    [
        {"device": "AVA4", "data": {"bp": [120, 80], "t": 36.6, "ok": True, "note": None}},
        {"big": 2**70, "nested": {"deeper": [1, 2**65]}},  # the standard library's to encode
        {"blob": "x" * (80 * 1024)},  # too large for an event: sent without it
        "not an object",
    ],
)
def test_a_payload_encoded_once_gives_the_events_encoded_one_by_one(payload: object) -> None:
    outcomes = [StepOutcome(step, StepStatus.SUCCESS, T0 + timedelta(seconds=1)) for step in Step]
    # One event the standard library must encode whatever the payload: the payload encoded
    # once must then not be what it writes.
    outcomes[2] = StepOutcome(Step.LOOKUP, StepStatus.SUCCESS, T0, processed_data={"n": 2**70})
    env = Envelope(Delivery("t", b"{}", T0, "m"), "Kati", "d1", payload, outcomes)  # type: ignore[arg-type]
    one_by_one = [
        (env.device_id, (env.device_id, events._encode(events.to_cloudevent(env, o))))
        for o in outcomes
    ]
    assert step_events(env) == one_by_one
