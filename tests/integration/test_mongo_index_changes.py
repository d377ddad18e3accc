"""Index changes on the MongoDB-wire server never fail the finds and writes beside them.

The API creates its history indexes in a background thread when it starts, while the flow
(another process) inserts and the first requests already read. mongo-java-server iterates a
collection's index list unlocked, so before deploy/mongo serialised index changes, such a
`createIndexes` failed ~1 % of the commands beside it with "Unknown error: null" (CI saw it
once on `GET /alerts`). This test creates and drops an index in a loop while four clients
find and insert, and asserts that not one of their commands failed.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.errors import PyMongoError

pytestmark = pytest.mark.integration

SECONDS = 5.0
CLIENTS = 4


def test_finds_and_inserts_beside_index_changes_all_succeed(services: Any, unique_id: str) -> None:
    name = f"vf_test_index_changes_{unique_id}"
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_url, tz_aware=True)
    collection = client[name]["observations"]
    now = datetime.now(UTC)
    collection.insert_many(
        [
            {"_id": i, "alert": i % 2 == 0, "measured_at": now - timedelta(minutes=i)}
            for i in range(50)
        ]
    )
    deadline = time.monotonic() + SECONDS
    failures: list[str] = []
    done = {"index_changes": 0, "commands": 0}
    lock = threading.Lock()

    def change_indexes() -> None:
        while time.monotonic() < deadline:
            collection.create_index([("alert", ASCENDING), ("measured_at", DESCENDING)], name="a")
            collection.drop_index("a")
            done["index_changes"] += 1

    def find_and_insert(worker: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            try:
                list(
                    collection.find(
                        {"alert": True, "measured_at": {"$gte": now - timedelta(hours=1)}}
                    )
                    .sort("measured_at", DESCENDING)
                    .limit(10)
                )
                collection.insert_one({"_id": f"{worker}-{n}", "alert": True, "measured_at": now})
            except PyMongoError as exc:
                with lock:
                    failures.append(str(exc)[:120])
            with lock:
                done["commands"] += 2

    threads = [threading.Thread(target=change_indexes)] + [
        threading.Thread(target=find_and_insert, args=(w,)) for w in range(CLIENTS)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SECONDS + 60)
        # The race needs both sides busy; a run with few of either proves nothing.
        assert done["index_changes"] >= 20, done
        assert done["commands"] >= 500, done
        assert failures == [], f"{len(failures)} of {done['commands']} failed: {failures[:3]}"
        assert collection.count_documents({"_id": {"$type": "string"}}) == done["commands"] // 2
    finally:
        client.drop_database(name)
        client.close()
