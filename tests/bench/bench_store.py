"""Benchmark: the MongoDB-wire servers vitalflow could run on, measured the way it uses them.

For each server: insert_many in batches of 500 (~640-byte observation documents), 16,000
more with digest `_id`s as the flow's (with the server's CPU per document, for servers it
starts: a store keeping documents by `_id` pays for random ids after the call), a guarded
`update_one` on a nested `measured_at` (`$lt`) as the latest-vitals write does it,
`update_one` by `_id`, 4 clients updating at once, `find_one` by `_id` over all of them
(~40,500), a `find` of 1,000 `_id`s by `$in` (the flow's batched lookups), 4 clients
`$set`-ing different fields of the same 50 documents (20 rounds; fields
lost = updates acknowledged but not in the document), one `bulk_write` of 500 updates
and one of a guarded `$set` per patient (the last_vitals write of a batch), with a socket
timeout, so a server that wedges is reported instead of hanging the run.
Each timed loop stops after --seconds, so a slow server costs bounded time. Prints a table;
asserts nothing.

    .venv/bin/python tests/bench/bench_store.py --start mongo-h2,mongo-memory,ferretdb
    .venv/bin/python tests/bench/bench_store.py --url mongodb://127.0.0.1:27017

`--start` runs private servers on free ports with their data in a temporary directory:
`mongo-h2` / `mongo-memory` (mongo-java-server through deploy/mongo's launcher, from
`deploy/local/install mongo`) and `ferretdb` (FerretDB 1.24 on SQLite, from
`deploy/local/install ferretdb`). Never point --url at a server others use: the bulk update
can wedge FerretDB until it is restarted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import psutil
from private_mongo import REPO, PrivateMongoServer, free_port
from process_cpu import cpu_seconds
from pymongo import MongoClient, UpdateOne
from pymongo.database import Database
from pymongo.errors import PyMongoError

Doc = dict[str, Any]
FERRETDB = (
    Path(os.environ.get("VITALFLOW_LOCAL_CACHE_DIR", REPO / "deploy/local/.cache"))
    / "ferretdb/ferretdb-vitalflow"
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class PrivateFerretDB:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.data = workdir / "ferretdb"
        self.data.mkdir()
        self.log = workdir / "ferretdb.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert FERRETDB.is_file(), f"{FERRETDB} missing: run deploy/local/install ferretdb"
        self.process = subprocess.Popen(
            [str(FERRETDB), "-listen", f"127.0.0.1:{self.port}", "-dir", str(self.data)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        MongoClient(self.url, serverSelectionTimeoutMS=15000).admin.command("ping")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def client(url: str, timeout_s: float) -> MongoClient[Doc]:
    return MongoClient(
        url,
        serverSelectionTimeoutMS=10000,
        connectTimeoutMS=10000,
        socketTimeoutMS=int(timeout_s * 1000),
    )


def observation(n: int) -> Doc:
    """About 640 bytes of BSON, shaped like a stored blood-pressure reading."""
    at = T0 + timedelta(seconds=n)
    return {
        "_id": f"obs-{n:08d}-{uuid.uuid4().hex}",
        "patient_id": f"patient-{n % 500:04d}",
        "kind": "blood_pressure",
        "device_type": "AVA4",
        "device_id": f"ble:D616F96{n % 97:05d}",
        "message_id": uuid.uuid4().hex,
        "measured_at": at,
        "device_time": at,
        "received_at": at + timedelta(milliseconds=250),
        "values": {
            "systolic": {"value": 120 + n % 30, "unit": "mm[Hg]", "loinc": "8480-6"},
            "diastolic": {"value": 80 + n % 15, "unit": "mm[Hg]", "loinc": "8462-4"},
            "pulse": {"value": 60 + n % 40, "unit": "/min", "loinc": "8867-4"},
        },
        "loinc": "85354-9",
        "flags": ["normal"],
        "source": {"topic": "dusun_pub", "gateway": "gateway:08F9E0D1F7B4", "attempt": 1},
        "note": "x" * 120,
    }


def timed(seconds: float, limit: int, step: Callable[[int], None]) -> tuple[int, float]:
    """Run step(i) for i in range(limit) or until `seconds` pass; (count, elapsed)."""
    started = time.perf_counter()
    done = 0
    while done < limit and time.perf_counter() - started < seconds:
        step(done)
        done += 1
    return done, time.perf_counter() - started


def rate(count: int, elapsed: float, unit: str = "/s") -> str:
    return f"{count / elapsed:,.0f}{unit} ({count} in {elapsed:.1f} s)"


def guarded_filter(patient: str, at: datetime) -> Doc:
    return {
        "_id": patient,
        "$or": [
            {"last_vitals.blood_pressure.measured_at": {"$exists": False}},
            {"last_vitals.blood_pressure.measured_at": {"$lt": at}},
        ],
    }


def bench(url: str, args: argparse.Namespace, pid: int | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    name = f"vf_bench_{uuid.uuid4().hex[:8]}"
    main = client(url, args.timeout)
    db = main[name]
    seconds = args.seconds

    started = time.perf_counter()
    for first in range(0, args.docs, 500):
        db.observations.insert_many([observation(n) for n in range(first, first + 500)])
    out["insert_many (batches of 500)"] = rate(args.docs, time.perf_counter() - started, " docs/s")

    # The flow's observation ids are digests: each insert lands anywhere in an `_id` order.
    # The server's CPU shows what a store that keeps documents by `_id` pays for it later
    # (MVStore rewrites each changed page at its next commit), which the call's time does not.
    digests = [observation(args.docs + n) for n in range(16000)]
    for n, doc in enumerate(digests):
        doc["_id"] = hashlib.sha256(doc["_id"].encode()).hexdigest() + f":{n % 3}"
    server = psutil.Process(pid) if pid else None
    cpu_before, started = cpu_seconds(server) if server else 0.0, time.perf_counter()
    for first in range(0, len(digests), 1600):
        db.observations.insert_many(digests[first : first + 1600], ordered=False)
    elapsed = time.perf_counter() - started
    time.sleep(1.0)  # one commit interval and more: the rewrite of the pages it changed
    cpu = cpu_seconds(server) - cpu_before if server else 0.0
    out[f"insert_many of digest _ids after {args.docs:,} (batches of 1,600)"] = rate(
        len(digests), elapsed, " docs/s"
    ) + (f", server CPU {1000 * cpu / len(digests):.3f} ms/doc" if pid else "")

    patients = [f"patient-{i:04d}" for i in range(args.patients)]
    db.patients.insert_many([{"_id": p, "hospital_id": "h1", "last_vitals": {}} for p in patients])

    def guarded(i: int) -> None:
        at = T0 + timedelta(seconds=i)
        db.patients.update_one(
            guarded_filter(patients[i % len(patients)], at),
            {"$set": {"last_vitals.blood_pressure": {"measured_at": at, "systolic": i}}},
        )

    out["guarded update_one (nested $lt)"] = rate(*timed(seconds, 5000, guarded))

    def by_id(i: int) -> None:
        db.patients.update_one({"_id": patients[i % len(patients)]}, {"$set": {"seen": i}})

    out["update_one by _id"] = rate(*timed(seconds, 5000, by_id))

    counts = [0] * 4

    def updater(k: int) -> None:
        own = client(url, args.timeout)[name]
        counts[k] = timed(
            seconds,
            2000,
            lambda i: own.patients.update_one(
                {"_id": patients[(i * 4 + k) % len(patients)]}, {"$inc": {f"c{k}": 1}}
            ),
        )[0]

    started = time.perf_counter()
    threads = [threading.Thread(target=updater, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["4 clients updating"] = rate(sum(counts), time.perf_counter() - started)

    extra = 4000  # with the patients: ~24,500 documents, as in the issue
    db.observations.insert_many([observation(args.docs + n) for n in range(extra)])
    ids = [d["_id"] for d in db.observations.find({}, {"_id": 1})]
    total = len(ids) + len(patients)
    rng = random.Random(1)

    def find(_: int) -> None:
        assert db.observations.find_one({"_id": rng.choice(ids)}) is not None

    count, elapsed = timed(seconds, 5000, find)
    out[f"find_one by _id ({total:,} docs)"] = rate(count, elapsed)

    # What the flow's batched lookups send: one `$in` of a batch's worth of ids.
    def find_in(_: int) -> None:
        assert len(list(db.observations.find({"_id": {"$in": rng.sample(ids, 1000)}}))) == 1000

    count, elapsed = timed(seconds, 200, find_in)
    out["find with `$in` of 1,000 _ids"] = f"{1000 * elapsed / max(count, 1):.1f} ms each"

    same = patients[:50]
    rounds = 20

    def field_writer(k: int) -> None:
        own = client(url, args.timeout)[name]
        for r in range(rounds):
            for p in same:
                own.patients.update_one({"_id": p}, {"$set": {f"lost_test.w{k}_r{r}": r}})

    threads = [threading.Thread(target=field_writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    present = sum(len(d.get("lost_test", {})) for d in db.patients.find({"_id": {"$in": same}}))
    expected = 4 * rounds * len(same)
    out["4 clients $set different fields, 50 docs x 20 rounds"] = (
        f"{expected - present} of {expected} lost"
    )

    bulk = [
        UpdateOne({"_id": patients[i % len(patients)]}, {"$set": {"bulk": i}}) for i in range(500)
    ]
    started = time.perf_counter()
    try:
        result = db.patients.bulk_write(bulk, ordered=False)
    except PyMongoError as exc:
        waited = time.perf_counter() - started
        out["bulk_write of 500 updates"] = f"FAILED after {waited:.1f} s: {type(exc).__name__}"
    else:
        elapsed = time.perf_counter() - started
        out["bulk_write of 500 updates"] = (
            f"{500 / elapsed:,.0f} statements/s ({result.modified_count} modified, {elapsed:.2f} s)"
        )
    out.update(guarded_bulk(db, patients))
    try:
        client(url, 10).drop_database(name)
    except PyMongoError as exc:
        print(f"  ({url}: could not drop {name}: {type(exc).__name__})", file=sys.stderr)
    return out


def guarded_bulk(db: Database[Doc], patients: list[str]) -> dict[str, str]:
    """The last_vitals write of a batch: one `bulk_write`, a guarded `$set` per patient.

    The guard names the `measured_at` the patient holds (as `flows.latest_vitals` does), so
    every statement must find its document by `_id` and then check the guard. Three rounds.
    """
    label = f"guarded bulk_write, 1 statement per patient ({len(patients):,})"
    held = T0 - timedelta(days=1)
    db.patients.update_many({}, {"$set": {"last_vitals.heart_rate": {"measured_at": held}}})
    rates = []
    for r in range(3):
        at = T0 + timedelta(hours=r)
        bulk = [
            UpdateOne(
                {"_id": p, "last_vitals.heart_rate.measured_at": held},
                {"$set": {"last_vitals.heart_rate": {"measured_at": at, "bpm": 60 + r}}},
            )
            for p in patients
        ]
        started = time.perf_counter()
        try:
            result = db.patients.bulk_write(bulk, ordered=False)
        except PyMongoError as exc:
            waited = time.perf_counter() - started
            return {label: f"FAILED after {waited:.1f} s: {type(exc).__name__}"}
        rates.append(len(bulk) / (time.perf_counter() - started))
        if result.modified_count != len(bulk):
            return {label: f"{result.modified_count} of {len(bulk)} applied (guards missed)"}
        held = at
    return {label: f"{min(rates):,.0f}-{max(rates):,.0f} statements/s (3 rounds)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", default=[], help="a running server (repeatable)")
    parser.add_argument(
        "--start",
        default="",
        help="comma list of private servers to start: mongo-h2, mongo-memory, ferretdb",
    )
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0, help="cap of each timed loop")
    parser.add_argument("--timeout", type=float, default=30.0, help="socketTimeoutMS, in s")
    args = parser.parse_args()

    results: dict[str, dict[str, str]] = {}
    for url in args.url:
        print(f"measuring {url} ...", file=sys.stderr)
        results[url] = bench(url, args)
    with tempfile.TemporaryDirectory(prefix="vf-bench-store-") as tmp:
        for what in filter(None, args.start.split(",")):
            server: PrivateMongoServer | PrivateFerretDB
            if what == "ferretdb":
                server = PrivateFerretDB(Path(tmp))
            elif what in ("mongo-h2", "mongo-memory"):
                server = PrivateMongoServer(Path(tmp), backend=what.removeprefix("mongo-"))
            else:
                parser.error(f"unknown server {what!r}")
            print(f"measuring {what} ...", file=sys.stderr)
            server.start()
            try:
                assert server.process is not None
                results[what] = bench(server.url, args, server.process.pid)
            finally:
                server.stop()

    for server_name, figures in results.items():
        print(f"\n{server_name}")
        for label, figure in figures.items():
            print(f"  {label:<55} {figure}")


if __name__ == "__main__":
    main()
