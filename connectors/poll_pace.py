"""How soon the MQTT source asks Bytewax to poll it again when its inbox is empty.

Bytewax parks the worker until the time a source's `next_awake` gives, and nothing on
paho's thread can wake it sooner: a message that arrives meanwhile waits out the rest. With
a fixed 20 ms, at 1,000 msg/s the worker often found the inbox empty after a batch and
slept: received -> parsed took 14-18 ms at p50, publish -> stored p50/p99 35-47/116-127 ms;
polled every 2 ms while busy: 3 ms, and 23/67-85 ms (pipeline benchmark, latency runs at
1,000 msg/s, purged services, alternating; CHANGELOG). Each extra wake-up costs a little
(an idle flow polled every 2 ms used 5.5 % of a core against 3.8 % at 20 ms), so the short
pace holds only while traffic flows: for `busy_for` seconds after the last message taken,
then the idle pace again. At low rates it costs more: at 100 msg/s the flow used 42 % of a
core against 34 % at 20 ms, hence `VITALFLOW_MQTT_BUSY_POLL_MS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["PollPace"]


class PollPace:
    """The source's next poll time: soon while messages came lately, less often when idle."""

    def __init__(
        self,
        busy: timedelta = timedelta(milliseconds=2),
        idle: timedelta = timedelta(milliseconds=20),
        busy_for: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._busy = busy
        self._idle = idle
        self._busy_for = busy_for
        self._clock = clock
        self._last_taken = float("-inf")

    def took(self, count: int) -> None:
        """Note that the worker took `count` messages (0: it found none)."""
        if count:
            self._last_taken = self._clock()

    def next_awake(self, waiting: bool) -> datetime | None:
        """Return when to poll again: at once (None) if messages are `waiting`."""
        if waiting:
            return None
        busy = self._clock() - self._last_taken < self._busy_for
        return datetime.now(UTC) + (self._busy if busy else self._idle)
