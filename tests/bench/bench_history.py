"""Benchmark: history API latency, one patient with many stored readings; asserts nothing.

Seeds a database of its own on the MongoDB-wire server (`--mongo-url`, default the local one)
with `--readings` observations of one patient (default 100,000: six kinds, one reading every
30 s going back, in the shape `flows.enrich` stores) plus that patient, then reads them back
through the API app in process (FastAPI's TestClient over the real server; JWT auth on, so
the scope check is timed too) and prints p50/p95/p99 of:

- the first page of 100 readings of one kind (`GET /patients/{id}/observations?kind=`),
- the next pages, following `next_cursor`,
- a 24 h summary in 1 h buckets (`.../observations/summary?bucket=1h`),
- the first page without `kind`.

    .venv/bin/python tests/bench/bench_history.py --readings 100000

The database is dropped afterwards unless `--keep`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import jwt
from fastapi.testclient import TestClient
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from stored_observation import stored

from api.app import create_app
from flows.model import ObservationKind
from flows.settings import Settings
from sinks.sqlite_event_log import SqliteEventLog

SECRET = "bench-history-secret-long-enough-for-hs256!"
PATIENT = "P-BENCH"
END = datetime(2026, 3, 1, tzinfo=UTC)
KINDS: list[tuple[ObservationKind, dict[str, float]]] = [
    (ObservationKind.BLOOD_PRESSURE, {"systolic": 124, "diastolic": 79, "pulse": 71}),
    (ObservationKind.HEART_RATE, {"heart_rate": 72}),
    (ObservationKind.SPO2, {"spo2": 97, "pulse": 72}),
    (ObservationKind.BODY_TEMPERATURE, {"temperature": 36.7}),
    (ObservationKind.BLOOD_GLUCOSE, {"glucose": 104}),
    (ObservationKind.BODY_WEIGHT, {"weight": 68.2}),
]


def observations(count: int) -> Iterator[dict[str, Any]]:
    """`count` readings of one patient, newest at END, in the shape the flow stores."""
    for n in range(count):
        kind, values = KINDS[n % len(KINDS)]
        yield stored(n, PATIENT, kind, dict(values), END - timedelta(seconds=30 * n), "H-BENCH")


def seed(url: str, name: str, count: int) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    db = client[name]
    db.patients.insert_one({"_id": PATIENT, "hospital_id": "H-BENCH", "last_vitals": {}})
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for doc in observations(count):
        batch.append(doc)
        if len(batch) == 1000:
            db.observations.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.observations.insert_many(batch, ordered=False)
    elapsed = time.perf_counter() - started
    print(f"seeded {count:,} readings of {PATIENT} into {name} in {elapsed:.1f} s")
    client.close()


def timed(repeats: int, call: Callable[[], Any]) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(label: str, times: list[float]) -> None:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"  {label:<52} p50 {statistics.median(times):7.0f} ms  p95 {p95:7.0f} ms  "
        f"p99 {p99:7.0f} ms  ({len(times)} requests)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mongo-url", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20, help="requests per measurement")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    name = f"vf_bench_history_{uuid.uuid4().hex[:8]}"
    seed(args.mongo_url, name, args.readings)
    token = jwt.encode({"exp": time.time() + 3600, "scope": "events:all"}, SECRET, "HS256")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with TemporaryDirectory() as tmp:
            log = Path(tmp) / "events.db"
            SqliteEventLog(log)
            settings = Settings(
                auth="jwt",
                jwt_secret=SECRET,
                event_log_url=f"sqlite:///{log}",
                mongo_url=args.mongo_url,
                mongo_db=name,
            )
            with TestClient(create_app(settings)) as client:
                client.app.state.history_store.wait_for_indexes(60)  # type: ignore[attr-defined]
                base = f"/patients/{PATIENT}/observations"

                def get(url: str) -> dict[str, Any]:
                    response = client.get(url, headers=headers)
                    response.raise_for_status()
                    body: dict[str, Any] = response.json()
                    return body

                first = f"{base}?kind=heart_rate&limit=100"
                assert len(get(first)["items"]) == 100  # warm-up, and the data is there
                print(f"one patient, {args.readings:,} readings, {args.mongo_url}:")
                report("first page of 100, one kind", timed(args.repeats, lambda: get(first)))
                cursor = [get(first)["next_cursor"]]

                def next_page() -> None:
                    body = get(f"{first}&cursor={cursor[0]}")
                    cursor[0] = body["next_cursor"] or get(first)["next_cursor"]

                report("next pages (following next_cursor)", timed(args.repeats, next_page))
                day = (
                    f"{base}/summary?kind=heart_rate&from={(END - timedelta(days=1)).isoformat()}"
                    f"&to={END.isoformat()}&bucket=1h"
                ).replace("+00:00", "Z")
                report("24 h summary in 1 h buckets", timed(args.repeats, lambda: get(day)))
                mixed = f"{base}?limit=100"
                report("first page of 100, all kinds", timed(args.repeats, lambda: get(mixed)))
    finally:
        if not args.keep:
            MongoClient(args.mongo_url).drop_database(name)


if __name__ == "__main__":
    main()
