"""The MQTT source's poll pace: at once with messages waiting, 2 ms while busy, 20 ms idle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.poll_pace import PollPace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wait_of(pace: PollPace) -> timedelta | None:
    before = datetime.now(UTC)
    awake = pace.next_awake(waiting=False)
    return None if awake is None else awake - before


def test_waiting_messages_are_polled_at_once_whatever_the_pace() -> None:
    assert PollPace().next_awake(waiting=True) is None


def test_the_pace_is_short_for_a_while_after_messages_and_idle_otherwise() -> None:
    clock = Clock()
    pace = PollPace(clock=clock)
    slack = timedelta(milliseconds=5)  # the time between the two clocks' readings
    idle = wait_of(pace)
    assert (
        idle is not None
        and timedelta(milliseconds=20) <= idle <= timedelta(milliseconds=20) + slack
    )
    pace.took(12)
    clock.now += 0.5
    busy = wait_of(pace)
    assert busy is not None and timedelta(milliseconds=2) <= busy < timedelta(milliseconds=10)
    pace.took(0)  # an empty poll does not keep it busy
    clock.now += 0.6
    idle = wait_of(pace)
    assert idle is not None and idle >= timedelta(milliseconds=20)
