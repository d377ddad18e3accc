"""`vitalflow simulate`: publish realistic device traffic to the MQTT broker at a steady rate.

The traffic comes from `flows.simulator.payload_factory.payload_stream` over the roster that
`vitalflow seed` registers (same `seed` and `patients`), with device times taken from the
real clock. Messages go out at QoS 1 and the run ends only once the broker acknowledged them
(or `ack_timeout_s` passed). Logs carry counts, never payloads: kiosk readings hold names.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.mqtt_publisher import MqttPublisher, unique_client_id
from flows.settings import Settings
from flows.simulator.device_roster import DEFAULT_PATIENTS, DEFAULT_SEED, roster
from flows.simulator.payload_factory import SimulatedMessage, payload_stream

__all__ = ["SimulationReport", "run_simulation"]

logger = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 30.0


@dataclass
class SimulationReport:
    """What a simulation run sent, and how much of it the broker acknowledged."""

    sent: int = 0
    acked: int = 0
    elapsed_s: float = 0.0
    by_category: Counter[str] = field(default_factory=Counter)
    by_family: Counter[str] = field(default_factory=Counter)
    expected_readings: int = 0
    interrupted: bool = False

    @property
    def rate_achieved(self) -> float:
        """Messages per second actually sent."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def complete(self) -> bool:
        """True when the broker acknowledged every message sent."""
        return self.acked >= self.sent

    def __str__(self) -> str:
        categories = ", ".join(f"{k} {v}" for k, v in sorted(self.by_category.items()))
        families = ", ".join(f"{k} {v}" for k, v in sorted(self.by_family.items()))
        lines = [
            f"sent {self.sent} messages in {self.elapsed_s:.1f} s "
            f"({self.rate_achieved:.1f}/s), acknowledged {self.acked}",
            f"  by category: {categories or 'none'}",
            f"  by family: {families or 'none'}",
            f"  readings the flow should store: {self.expected_readings}",
        ]
        if not self.complete:
            lines.append(f"  WARNING: {self.sent - self.acked} messages not acknowledged")
        if self.interrupted:
            lines.append("  (interrupted)")
        return "\n".join(lines)


def run_simulation(
    settings: Settings,
    *,
    rate: float = 10.0,
    duration: float | None = None,
    count: int | None = None,
    patients: int = DEFAULT_PATIENTS,
    seed: int = DEFAULT_SEED,
    duplicate_fraction: float = 0.05,
    malformed_fraction: float = 0.02,
    unknown_fraction: float = 0.03,
    sos_fraction: float = 0.005,
    stop: threading.Event | None = None,
    on_sent: Callable[[SimulatedMessage], None] | None = None,
    ack_timeout_s: float = 30.0,
    clock: Callable[[], datetime] | None = None,
) -> SimulationReport:
    """Publish simulated traffic to `settings.mqtt_url` and report what was sent.

    Runs until `count` messages were sent, `duration` seconds passed, `stop` is set or the
    process is interrupted (Ctrl-C ends the run and still reports), whichever comes first;
    with none of them it runs forever. `rate` is in messages per second (`math.inf`: as
    fast as the broker takes them). `on_sent` sees every message once it is handed to the
    client, e.g. for a test that compares what the flow stored with what was sent.
    `clock` gives the device times (default: the wall clock, so times are when a message
    is sent). The same seed and the same clock readings give the same messages; with the
    wall clock two runs can differ, because a message that would repeat bytes sent in the
    same second is built again from fresh random draws.
    Raises `connectors.mqtt_publisher.MqttPublishError` when the broker cannot be reached.
    """
    if not rate > 0:
        msg = f"rate must be positive, got {rate}"
        raise ValueError(msg)
    if count is not None and count < 0:
        msg = f"count must not be negative, got {count}"
        raise ValueError(msg)
    stop = stop or threading.Event()
    demo_roster = roster(seed, patients)
    stream = payload_stream(
        demo_roster,
        random.Random(seed),
        duplicate_fraction=duplicate_fraction,
        malformed_fraction=malformed_fraction,
        unknown_fraction=unknown_fraction,
        sos_fraction=sos_fraction,
        clock=clock or (lambda: datetime.now(UTC)),
    )
    report = SimulationReport()
    publisher = MqttPublisher(
        settings.mqtt_url,
        client_id=unique_client_id("vitalflow-simulator"),
        ca_file=settings.mqtt_ca_file,
    )
    publisher.connect()
    logger.info(
        "simulating %d patients (seed %d) at %g msg/s to %s",
        patients,
        seed,
        rate,
        publisher.endpoint,
    )
    started = time.monotonic()
    try:
        try:
            _publish_paced(publisher, stream, report, rate, duration, count, stop, on_sent)
        except KeyboardInterrupt:
            report.interrupted = True
        if not publisher.wait_for_acks(ack_timeout_s):
            logger.warning(
                "%d of %d messages not acknowledged after %g s",
                publisher.sent - publisher.acked,
                publisher.sent,
                ack_timeout_s,
            )
    finally:
        report.acked = publisher.acked
        report.elapsed_s = time.monotonic() - started
        publisher.close()
    logger.info(
        "simulation done: sent %d, acknowledged %d, %.1f msg/s",
        report.sent,
        report.acked,
        report.rate_achieved,
    )
    return report


def _publish_paced(
    publisher: MqttPublisher,
    messages: Iterator[SimulatedMessage],
    report: SimulationReport,
    rate: float,
    duration: float | None,
    count: int | None,
    stop: threading.Event,
    on_sent: Callable[[SimulatedMessage], None] | None,
) -> None:
    started = time.monotonic()
    next_progress = started + _PROGRESS_EVERY_S
    for index in itertools.count():
        if count is not None and index >= count:
            return
        # Message i is due at i / rate: a late message is sent at once, so the average rate
        # holds even when single publishes are slow.
        due = started + index / rate
        if duration is not None and due - started >= duration:
            return
        delay = due - time.monotonic()
        if stop.wait(delay) if delay > 0 else stop.is_set():
            return
        # Built only now, so the device times in it are the time it is sent.
        message = next(messages)
        publisher.publish(message.topic, message.payload)
        report.sent += 1
        report.by_category[message.category] += 1
        report.by_family[message.family] += 1
        report.expected_readings += message.expected_readings
        if on_sent is not None:
            on_sent(message)
        if time.monotonic() >= next_progress:
            next_progress += _PROGRESS_EVERY_S
            logger.info("simulator: sent %d, acknowledged %d", report.sent, publisher.acked)
