"""`collStats` on the MongoDB-wire server reports a collection's BSON size as writes change it.

deploy/mongo's launcher counts the size when asked instead of encoding every document written
(upstream re-encoded each insert once and each update twice to keep a running total). The
figure must still be what MongoDB reports: the sum of the documents' BSON sizes.
"""

from __future__ import annotations

from typing import Any

import bson
import pytest
from pymongo import MongoClient

pytestmark = pytest.mark.integration


def test_collstats_size_follows_inserts_updates_and_deletes(services: Any, unique_id: str) -> None:
    name = f"vf_test_collection_size_{unique_id}"
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_url, tz_aware=True)
    try:
        collection = client[name].readings
        documents = {
            f"r{i}": {"_id": f"r{i}", "note": "x" * (i % 40), "n": i, "v": {"a": [1, 2.5, "s"]}}
            for i in range(120)
        }

        def size() -> int:
            return int(client[name].command("collStats", "readings")["size"])

        def expected() -> int:
            return sum(len(bson.encode(d)) for d in documents.values())

        collection.insert_many(list(documents.values()))
        assert size() == expected() > 0
        collection.update_one({"_id": "r1"}, {"$set": {"extra": "y" * 100}})
        documents["r1"]["extra"] = "y" * 100
        assert size() == expected()
        collection.delete_one({"_id": "r2"})
        del documents["r2"]
        assert size() == expected()
    finally:
        client.drop_database(name)
        client.close()
