"""Fixtures shared by every test directory.

``services``  (session scope) makes sure the real local services are running by calling
              ``deploy/local/up`` (idempotent: about a second when they already are) and
              returns their addresses. Only tests that ask for it start anything, so unit
              tests stay service-free. Tests that use it are marked ``integration``
              automatically (``pytest -m "not integration"`` skips them).
``unique_id`` a short random hex string per test, for names that must not collide between
              tests or between runs against the same long-lived services (topics, client
              ids, database names): ``f"vf_test_{unique_id}"``.

Ports come from the same environment variables as ``deploy/local/up``:
VITALFLOW_LOCAL_MQTT_PORT (1883), VITALFLOW_LOCAL_KAFKA_PORT (9092),
VITALFLOW_LOCAL_MONGO_PORT (27017). Subdirectories add their own fixtures in their own
``conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
UP_SCRIPT = REPO_ROOT / "deploy" / "local" / "up"


@dataclass(frozen=True)
class Services:
    """Where the local services listen."""

    mqtt_url: str  # mqtt://127.0.0.1:1883
    mongo_url: str  # mongodb://127.0.0.1:27017
    kafka_bootstrap: str  # 127.0.0.1:9092

    @property
    def env(self) -> dict[str, str]:
        """The VITALFLOW_* variables pointing the application at these services."""
        return {
            "VITALFLOW_MQTT_URL": self.mqtt_url,
            "VITALFLOW_MONGO_URL": self.mongo_url,
            "VITALFLOW_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
        }


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"VITALFLOW_LOCAL_{name}_PORT", default))


@pytest.fixture(scope="session")
def services() -> Services:
    """Start (or just check) the local services; fail the test if they cannot run."""
    proc = subprocess.run(
        [str(UP_SCRIPT)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,  # a cold first run fetches the Kafka and mongo-java-server jars
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"deploy/local/up failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}",
            pytrace=False,
        )
    return Services(
        mqtt_url=f"mqtt://127.0.0.1:{_port('MQTT', 1883)}",
        mongo_url=f"mongodb://127.0.0.1:{_port('MONGO', 27017)}",
        kafka_bootstrap=f"127.0.0.1:{_port('KAFKA', 9092)}",
    )


@pytest.fixture
def unique_id() -> str:
    """A short random suffix (8 lowercase hex digits) for per-test names."""
    return uuid.uuid4().hex[:8]


def pytest_configure(config: pytest.Config) -> None:
    """Silence kafka-python's own use of deprecated importlib.resources calls (noise)."""
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the real services as ``integration``."""
    for item in items:
        if "services" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
