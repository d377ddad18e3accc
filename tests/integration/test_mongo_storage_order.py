"""Documents stored in arrival order survive restarts of the MongoDB-wire server, all findable.

deploy/mongo's launcher stores a collection's documents under positions given in arrival order
(upstream keyed them by `_id`, so inserts of digest ids rewrote random pages at every commit)
and finds them by `_id` through the `_id` index. After a restart it must go on after the last
position, never over a stored document; updates and deletes must still reach the right one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from private_mongo import PrivateMongoServer
from pymongo import MongoClient

pytestmark = pytest.mark.integration


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest() + ":0"


def restart(server: PrivateMongoServer, workdir: Path) -> PrivateMongoServer:
    server.stop()
    again = PrivateMongoServer(workdir, port=server.port)
    again.start()
    return again


def test_inserts_after_restarts_keep_every_document(tmp_path: Path) -> None:
    workdir = tmp_path
    server = PrivateMongoServer(workdir)
    server.start()
    try:
        with MongoClient(server.url) as client:
            client.vf.obs.insert_many([{"_id": digest(n), "n": n} for n in range(2000)])
        server = restart(server, workdir)
        with MongoClient(server.url) as client:
            obs = client.vf.obs
            obs.insert_many([{"_id": digest(n), "n": n} for n in range(2000, 4000)])
            obs.update_one({"_id": digest(5)}, {"$set": {"n": -5}})
            assert obs.delete_one({"_id": digest(6)}).deleted_count == 1
        server = restart(server, workdir)
        with MongoClient(server.url) as client:
            obs = client.vf.obs
            obs.insert_many([{"_id": digest(n), "n": n} for n in range(4000, 4100)])
            found: dict[str, Any] = {d["_id"]: d["n"] for d in obs.find()}
            expected = {digest(n): n for n in range(4100) if n != 6} | {digest(5): -5}
            assert found == expected
            assert obs.count_documents({}) == 4099
            wanted = [digest(n) for n in (0, 5, 6, 1999, 2000, 3999, 4099)]
            assert sorted(d["n"] for d in obs.find({"_id": {"$in": wanted}})) == [
                -5,
                0,
                1999,
                2000,
                3999,
                4099,
            ]
            # A duplicate is still refused, whichever life of the server stored the first.
            with pytest.raises(Exception, match="duplicate key"):
                obs.insert_one({"_id": digest(10)})
    finally:
        server.stop()
    assert "Exception" not in server.log.read_text()
