"""Fixtures of the pipeline tests: a `vitalflow run` of the test's own, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_harness import FlowUnderTest
from private_mongo import PrivateMongoServer


@pytest.fixture
def flow(services, unique_id: str, tmp_path: Path) -> Iterator[FlowUnderTest]:  # type: ignore[no-untyped-def]
    """The flow configured against the real services with names of this test's own."""
    under_test = FlowUnderTest(
        mqtt_url=services.mqtt_url,
        mongo_url=services.mongo_url,
        kafka_bootstrap=services.kafka_bootstrap,
        uid=unique_id,
        workdir=tmp_path,
    )
    yield under_test
    under_test.stop()


@pytest.fixture
def private_mongo(tmp_path: Path) -> Iterator[PrivateMongoServer]:
    """A MongoDB-wire server of the test's own (the launcher of `deploy/mongo`), stopped after.

    For tests that stop, freeze or wreck a server: the shared one stays out of it.
    """
    server = PrivateMongoServer(tmp_path)
    server.start()
    yield server
    server.stop()
