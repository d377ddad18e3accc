"""Where the parts of a cluster live: MQTT partitions, Kafka writers, recovery partitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.mqtt_source import MqttSource
from flows.commands.run import recovery_config, run_dataflow
from flows.settings import Settings
from sinks.record_sink import RecordSink


def _source(process_id: int, processes: int, partitions: int = 4) -> MqttSource:
    return MqttSource(
        "mqtt://127.0.0.1:1883",
        ["dusun_pub"],
        partitions=partitions,
        process_id=process_id,
        processes=processes,
    )


@pytest.mark.parametrize("processes", [1, 2, 3, 4])
def test_every_mqtt_partition_runs_on_exactly_one_process(processes: int) -> None:
    parts = [p for i in range(processes) for p in _source(i, processes).list_parts()]
    assert sorted(parts) == [f"mqtt-{i}" for i in range(4)]
    assert all(_source(i, processes).list_parts() for i in range(processes))


def test_kafka_writers_keep_their_names_whatever_the_cluster_size() -> None:
    def writers(processes: int) -> list[str]:
        return sorted(
            part
            for i in range(processes)
            for part in RecordSink(
                "steps", lambda: None, parts=3, process_id=i, processes=processes
            ).list_parts()  # type: ignore[arg-type,return-value]
        )

    assert writers(1) == writers(2) == writers(3) == ["steps-0", "steps-1", "steps-2"]


def test_only_process_0_creates_recovery_partitions(tmp_path: Path) -> None:
    addresses = "127.0.0.1:2101;127.0.0.1:2102"
    other = Settings(recovery_dir=tmp_path / "p1", process_id=1, addresses=addresses)
    recovery_config(other)
    assert not list((tmp_path / "p1").glob("part-*"))
    first = Settings(
        recovery_dir=tmp_path / "p0", process_id=0, addresses=addresses, recovery_partitions=4
    )
    recovery_config(first)
    created = sorted(p.name for p in (tmp_path / "p0").glob("part-*.sqlite3"))
    assert created == [f"part-{i}.sqlite3" for i in range(4)]
    (tmp_path / "p0" / "part-3.sqlite3").write_bytes(b"kept")
    recovery_config(first)  # existing partitions are never re-created
    assert (tmp_path / "p0" / "part-3.sqlite3").read_bytes() == b"kept"


@pytest.mark.parametrize(
    ("process_id", "addresses"),
    [(1, None), (None, "127.0.0.1:2101;127.0.0.1:2102"), (2, "127.0.0.1:2101;127.0.0.1:2102")],
)
def test_a_half_configured_cluster_process_is_refused(
    process_id: int | None, addresses: str | None, tmp_path: Path
) -> None:
    settings = Settings(recovery_dir=tmp_path, process_id=process_id, addresses=addresses)
    assert run_dataflow(settings) == 2
