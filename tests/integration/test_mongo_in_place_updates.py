"""Updates that add and remove fields, many at once, never close the MongoDB-wire server's store.

mongo-java-server 1.47 applied an update to the very document object its H2 map holds, while
MVStore serialised the pages of the previous commit in a background thread. An update adding
or removing a field (the flow's `device_status` upserts do: `battery` or `signal` come and
go with what a device reports) at the wrong moment threw a ConcurrentModificationException
there, and MVStore closed the store: every later command failed with "This store is closed"
until a restart. Before deploy/mongo's launcher updated copies, this test failed within a
second (22,296 of 25,396 updates in 30 s). It runs on a private server of the same launcher,
so that if the store closes, no other test's server does.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from private_mongo import PrivateMongoServer
from pymongo import MongoClient, UpdateOne
from pymongo.errors import PyMongoError

pytestmark = pytest.mark.integration

SECONDS = 5.0
CLIENTS = 4
DOCUMENTS = 200
FIELDS = 7


def test_updates_adding_and_removing_fields_all_succeed(
    private_mongo: PrivateMongoServer,
) -> None:
    server = private_mongo
    client: MongoClient[dict[str, Any]] = MongoClient(server.url, tz_aware=True)
    collection = client.vf_test_in_place.device_status
    collection.insert_many([{"_id": f"D{i}", "pad": "x" * 2000} for i in range(DOCUMENTS)])
    deadline = time.monotonic() + SECONDS
    failures: list[str] = []
    applied = [0] * CLIENTS

    def updater(k: int) -> None:
        own: MongoClient[dict[str, Any]] = MongoClient(server.url, tz_aware=True)
        target = own.vf_test_in_place.device_status
        round_ = 0
        try:
            while time.monotonic() < deadline and not failures:
                round_ += 1
                # Each statement adds one field and removes another: a change of the
                # document's shape, not only of a value.
                statements = [
                    UpdateOne(
                        {"_id": f"D{(d + k) % DOCUMENTS}"},
                        {
                            "$set": {f"f{round_ % FIELDS}": round_},
                            "$unset": {f"f{(round_ + 3) % FIELDS}": ""},
                        },
                    )
                    for d in range(0, DOCUMENTS, 4)
                ]
                try:
                    applied[k] += target.bulk_write(statements, ordered=False).matched_count
                except PyMongoError as exc:
                    failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            own.close()

    threads = [threading.Thread(target=updater, args=(k,)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert sum(applied) > 0
        # The store is still open, and the last update of a document is what it holds.
        collection.update_one({"_id": "D0"}, {"$set": {"last": 1}, "$unset": {"pad": ""}})
        assert {"last", "_id"} <= set(collection.find_one({"_id": "D0"}) or {})
        assert "pad" not in (collection.find_one({"_id": "D0"}) or {})
        assert "ConcurrentModificationException" not in server.log.read_text()
    finally:
        client.close()
