"""Benchmark: the MongoDB-wire server's own CPU for each write the flow makes, per build.

Client-side rates on this 2-core machine swing with whatever else runs (and the VM's steal);
the server's CPU time for a fixed amount of work does not swing as much. For each launcher
build given (`--classes`, compiled `deploy/mongo` classes; default the installed one) a
private mongo-java-server (H2 file, the local heap and collector settings) is started, and
rounds run against each in turn: observations inserted in batches of 1,600 (digest `_id`s,
as the flow's), a guarded `last_vitals` `$set` per patient in bulks of 1,000 (as
`flows.latest_vitals`), device-status upserts in bulks of 1,000. Printed: the server's CPU
per document or statement (its process's user + system time over the phase, with the
store's background commit let finish), median over the rounds after `--warmup` rounds (the
JIT compiles meanwhile). Asserts nothing.

    git show HEAD~1:deploy/mongo/VitalflowMongoServer.java > /tmp/old/VitalflowMongoServer.java
    javac -d /tmp/old/classes -cp 'deploy/local/.cache/mongo-1.47.0/libs/*' /tmp/old/*.java
    .venv/bin/python tests/bench/bench_server_cpu.py --classes /tmp/old/classes \\
        deploy/local/.cache/mongo-1.47.0/classes
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import psutil
from bench_store import T0, observation
from private_mongo import PrivateMongoServer, mongo_home
from process_cpu import cpu_seconds
from pymongo import MongoClient, UpdateOne

Doc = dict[str, Any]
PATIENTS = 1_000
DEVICES = 8_000
INSERT_BATCHES = 4  # a round's observations: more fill the heap, and its collector is noise
SETTLE = 0.6  # s: the store commits every 200 ms in the background; its CPU belongs here


# The local server's heap and collector (deploy/local/up), not the tests' small serial heap.
LOCAL_JAVA_OPTIONS = (
    "-Xms64m",
    "-Xmx1536m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=100",
    "-Xmn384m",
)


class Server:
    def __init__(self, classes: Path, workdir: Path) -> None:
        self.private = PrivateMongoServer(workdir, classes=classes, java_options=LOCAL_JAVA_OPTIONS)
        self.private.start()
        assert self.private.process is not None
        self.process = self.private.process
        self.ps = psutil.Process(self.process.pid)
        self.client: MongoClient[Doc] = MongoClient(self.private.url)
        self.db = self.client.vf_bench_server_cpu
        self.db.patients.insert_many(
            [
                {"_id": f"patient-{p:04d}", "name": "x" * 40, "last_vitals": {}}
                for p in range(PATIENTS)
            ]
        )
        self.next_observation = 0
        self.round = 0

    def stop(self) -> None:
        self.client.close()
        self.private.stop()


# The JVM's own threads: the JIT keeps compiling for minutes and the collector runs when it
# will, both swinging the figures by 2-3x between rounds; what the server's code costs is
# the rest (its network workers, the store's writer and serialiser).
_JVM_THREADS = ("C1 CompilerThre", "C2 CompilerThre", "GC Thread", "G1 ", "VM Thread")


def _server_threads_cpu(pid: int) -> float:
    """CPU seconds of the server's own threads (not the JIT's or the collector's)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name.startswith(_JVM_THREADS):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _measure(server: Server, work: list[list[Any]], write: Any) -> tuple[float, float]:
    """Server CPU microseconds per item of `work`: (its own threads, the whole process)."""
    time.sleep(SETTLE)
    own, whole = _server_threads_cpu(server.process.pid), cpu_seconds(server.ps)
    for chunk in work:
        write(chunk)
    time.sleep(SETTLE)
    items = sum(len(chunk) for chunk in work)
    return (
        (_server_threads_cpu(server.process.pid) - own) / items * 1e6,
        (cpu_seconds(server.ps) - whole) / items * 1e6,
    )


def _write_guarded(db: Any, chunk: list[UpdateOne]) -> None:
    result = db.patients.bulk_write(chunk, ordered=False)
    if result.modified_count != len(chunk):
        msg = f"{result.modified_count} of {len(chunk)} guarded updates applied: guards missed"
        raise RuntimeError(msg)


def one_round(server: Server) -> dict[str, tuple[float, float]]:
    server.round += 1
    db, r = server.db, server.round
    first = server.next_observation
    server.next_observation += INSERT_BATCHES * 1_600
    observations = []
    for n in range(first, server.next_observation):
        document = observation(n)
        document["_id"] = hashlib.sha256(document["_id"].encode()).hexdigest()[:32]
        observations.append(document)
    at = T0 + timedelta(hours=r)
    kinds = ["heart_rate", "blood_pressure", "spo2", "body_temperature"]
    # As `flows.latest_vitals` writes: guarded on the `measured_at` the patient holds.
    held: Any = {"$exists": False} if r == 1 else T0 + timedelta(hours=r - 1)
    guarded = [
        [
            UpdateOne(
                {"_id": f"patient-{p:04d}", f"last_vitals.{kind}.measured_at": held},
                {
                    "$set": {
                        f"last_vitals.{kind}": {"measured_at": at, "value": 60 + r, "unit": "/min"}
                    }
                },
            )
            for p in range(PATIENTS)
        ]
        for kind in kinds
    ]
    status = [
        [
            UpdateOne(
                {"_id": f"ble:{d:06d}"},
                {"$set": {"last_seen": at, "battery": (d + r) % 100, "online": True}},
                upsert=True,
            )
            for d in range(start, start + 1_000)
        ]
        for start in range(0, DEVICES, 2_000)
    ]
    return {
        "insert, per observation": _measure(
            server,
            [observations[i : i + 1_600] for i in range(0, len(observations), 1_600)],
            lambda chunk: db.observations.insert_many(chunk, ordered=False),
        ),
        "guarded $set, per statement": _measure(server, guarded, partial(_write_guarded, db)),
        "status upsert, per statement": _measure(
            server, status, lambda chunk: db.device_status.bulk_write(chunk, ordered=False)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", nargs="+", type=Path, default=[mongo_home() / "classes"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vf-server-cpu-") as tmp:
        servers = [Server(c, Path(tmp) / f"s{i}") for i, c in enumerate(args.classes)]
        results: list[dict[str, list[tuple[float, float]]]] = [{} for _ in servers]
        try:
            for r in range(args.warmup + args.rounds):
                order = list(enumerate(servers))
                if r % 2:
                    order.reverse()  # neither build always goes first
                for i, server in order:
                    figures = one_round(server)
                    if r >= args.warmup:
                        for name, value in figures.items():
                            results[i].setdefault(name, []).append(value)
                print(f"round {r + 1} done", flush=True)
        finally:
            for server in servers:
                server.stop()
    print(
        f"\nserver CPU, us: its own threads / the whole process with the JIT and collector"
        f" (median of {args.rounds} rounds after {args.warmup} warm-up; range)"
    )
    for classes, figures in zip(args.classes, results, strict=True):
        print(f"- {classes}")
        for name, values in figures.items():
            own = [v for v, _ in values]
            whole = [v for _, v in values]
            print(
                f"    {name:30s} {statistics.median(own):6.1f} ({min(own):.1f}-{max(own):.1f})"
                f" / {statistics.median(whole):6.1f} ({min(whole):.1f}-{max(whole):.1f})"
            )


if __name__ == "__main__":
    main()
