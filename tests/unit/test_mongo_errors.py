"""Every MongoDB failure an operator sees names its server (never its password)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import BulkWriteError, OperationFailure

from flows.settings import Settings
from sinks.mongo_database import mongo_call, open_database, write_errors


def _database_on(host: str, port: int) -> Any:
    topology = SimpleNamespace(server_descriptions=lambda: {(host, port): None})
    return SimpleNamespace(name="vf", client=SimpleNamespace(topology_description=topology))


def test_write_errors_of_a_batch_are_logged_with_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def write() -> None:
        raise BulkWriteError(
            {
                "writeErrors": [
                    {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"},
                    {"index": 3, "code": 2, "errmsg": "bad value"},
                ]
            }
        )

    with caplog.at_level(logging.WARNING):
        errors = write_errors(_database_on("db.example.test", 27017), write, "observations insert")
    assert errors == {3: "observations insert: bad value"}
    assert (
        "observations insert on mongodb db.example.test:27017/vf: 1 write error(s), the first: "
        "observations insert: bad value" in caplog.text
    )


def test_an_error_that_is_not_an_outage_is_logged_with_the_server_and_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def lookup() -> None:
        raise OperationFailure("Authentication failed.", code=18)

    with caplog.at_level(logging.ERROR), pytest.raises(OperationFailure):
        mongo_call(_database_on("db.example.test", 27018), "devices lookup", lookup)
    assert "devices lookup on mongodb db.example.test:27018/vf failed: OperationFailure" in (
        caplog.text
    )


def test_an_unusable_mongo_url_is_logged_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(mongo_url="mongodb://flow:s3cret@db.example.test:99999")
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError):
        open_database(
            settings.mongo_url, settings.mongo_db, timeout_seconds=settings.mongo_timeout_seconds
        )
    assert "MongoDB mongodb://***@db.example.test:99999 cannot be used" in caplog.text
    assert "s3cret" not in caplog.text
