"""Queries naming an `_id` and more: every condition still holds on the MongoDB-wire server.

deploy/mongo's launcher reads such a query's documents through the `_id` index (as MongoDB
plans it) instead of scanning the collection, then matches the rest of the query on them.
These are the shapes the flow and the API send (the guarded `last_vitals` update, a lookup
by id with a scope, `$in` with a filter), each with an answer that a wrong plan would change.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient, UpdateOne
from pymongo.database import Database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def db(services: Any, unique_id: str) -> Iterator[Database[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(services.mongo_url, tz_aware=True)
    name = f"vf_test_id_queries_{unique_id}"
    database = client[name]
    database.patients.insert_many(
        [
            {
                "_id": f"P{i}",
                "hospital_id": "H1" if i % 2 else "H2",
                "last_vitals": {"bp": {"measured_at": T0 + timedelta(minutes=i)}},
            }
            for i in range(50)
        ]
    )
    try:
        yield database
    finally:
        client.drop_database(name)
        client.close()


def test_find_by_id_with_more_conditions_matches_them_all(db: Database[dict[str, Any]]) -> None:
    assert db.patients.find_one({"_id": "P3", "hospital_id": "H1"}) is not None
    assert db.patients.find_one({"_id": "P3", "hospital_id": "H2"}) is None
    assert db.patients.find_one({"_id": "P99", "hospital_id": "H1"}) is None
    found = db.patients.find({"_id": {"$in": ["P1", "P2", "P3", "P98"]}, "hospital_id": "H1"})
    assert sorted(d["_id"] for d in found) == ["P1", "P3"]
    late = {"$gte": T0 + timedelta(minutes=3)}
    found = db.patients.find(
        {"_id": {"$in": ["P1", "P3", "P5"]}, "last_vitals.bp.measured_at": late}
    )
    assert sorted(d["_id"] for d in found) == ["P3", "P5"]


def test_a_guarded_update_applies_only_where_the_guard_holds(
    db: Database[dict[str, Any]],
) -> None:
    newer = T0 + timedelta(hours=1)
    statements = [
        UpdateOne(
            {"_id": f"P{i}", "last_vitals.bp.measured_at": T0 + timedelta(minutes=i)},
            {"$set": {"last_vitals.bp.measured_at": newer}},
        )
        for i in range(0, 50, 2)
    ] + [
        # Stale guards (what another writer's update leaves): nothing may change.
        UpdateOne(
            {"_id": f"P{i}", "last_vitals.bp.measured_at": T0 - timedelta(days=1)},
            {"$set": {"last_vitals.bp.measured_at": newer}},
        )
        for i in range(1, 50, 2)
    ]
    result = db.patients.bulk_write(statements, ordered=False)
    assert (result.matched_count, result.modified_count) == (25, 25)
    moved = {d["_id"] for d in db.patients.find({"last_vitals.bp.measured_at": newer})}
    assert moved == {f"P{i}" for i in range(0, 50, 2)}
    gone = db.patients.delete_many({"_id": {"$in": ["P1", "P2"]}, "hospital_id": "H1"})
    assert gone.deleted_count == 1
    assert db.patients.find_one({"_id": "P2"}) is not None


def test_an_in_of_ids_finds_exactly_those_ids(db: Database[dict[str, Any]]) -> None:
    # The launcher matches only the other conditions on what the index found (the index lookup
    # is exact), so the answer must be the same as MongoDB's for every kind of `$in` list.
    wanted = [f"P{i}" for i in range(0, 50, 3)] + ["P0", "P98", "nobody"]
    found = [d["_id"] for d in db.patients.find({"_id": {"$in": wanted}})]
    assert sorted(found) == sorted({f"P{i}" for i in range(0, 50, 3)})
    assert len(found) == len(set(found))
    assert list(db.patients.find({"_id": {"$in": []}})) == []
    db.numbers.insert_many([{"_id": 1, "v": "int"}, {"_id": 2.5, "v": "float"}, {"_id": "1"}])
    assert sorted(d["v"] for d in db.numbers.find({"_id": {"$in": [1.0, 2.5]}})) == ["float", "int"]
    assert [d["_id"] for d in db.numbers.find({"_id": {"$in": ["1"]}})] == ["1"]
    # Not plain values: the whole query is still matched on what was found.
    assert [d["_id"] for d in db.numbers.find({"_id": {"$in": [1, None]}, "v": "int"})] == [1]
    assert db.patients.count_documents({"_id": {"$in": ["P1", "P2"], "$ne": "P1"}}) == 1
