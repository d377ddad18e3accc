"""Settings reach the parts they set: the event writers' compression, the source's poll pace."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flows import pipeline
from flows.settings import Settings


def test_the_flows_writers_take_the_compression_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[Any, ...]] = []
    monkeypatch.setattr(pipeline, "open_record_writer", lambda *args: opened.append(args))
    for codec in ("lz4", "none"):
        settings = Settings(kafka_bootstrap="kafka.test:9092", kafka_compression=codec)
        pipeline._record_writer(settings)
    assert [(a[1], a[3]) for a in opened] == [
        ("kafka.test:9092", "lz4"),
        ("kafka.test:9092", "none"),
    ]
    assert set(opened[0][2]) == {"vitalflow.steps", "vitalflow.dlq", "vitalflow.alerts"}


def test_the_sources_busy_poll_pace_comes_from_the_settings() -> None:
    source = pipeline._mqtt_source(Settings(mqtt_busy_poll_ms=7.5), None)
    assert source._busy_poll == timedelta(milliseconds=7.5)
    assert pipeline._mqtt_source(Settings(), None)._busy_poll == timedelta(milliseconds=2)
