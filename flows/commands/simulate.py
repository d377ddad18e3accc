"""`vitalflow simulate`: publish realistic device traffic and print what was sent."""

from __future__ import annotations

import logging

from connectors.mqtt_publisher import MqttPublishError
from flows.settings import Settings
from flows.simulator.simulator import run_simulation

__all__ = ["simulate"]

logger = logging.getLogger("vitalflow")


def simulate(
    settings: Settings,
    *,
    rate: float,
    duration: float | None,
    count: int | None,
    patients: int,
    seed: int,
    duplicate_fraction: float,
    malformed_fraction: float,
    unknown_fraction: float,
    sos_fraction: float,
) -> int:
    """Publish until `duration` or `count` (or Ctrl-C); 0 when the broker acknowledged all."""
    try:
        report = run_simulation(
            settings,
            rate=rate,
            duration=duration,
            count=count,
            patients=patients,
            seed=seed,
            duplicate_fraction=duplicate_fraction,
            malformed_fraction=malformed_fraction,
            unknown_fraction=unknown_fraction,
            sos_fraction=sos_fraction,
        )
    except MqttPublishError as exc:
        logger.error("vitalflow simulate: %s", exc)
        return 1
    print(report)
    return 0 if report.complete else 1
