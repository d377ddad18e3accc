"""What the de-dup step's recovery snapshots cost the flow once its windows are full.

Bytewax snapshots the state of every device that got a message during an epoch, at the
epoch's end, and writes it to the recovery store. A device's window holds the ids of its last
`VITALFLOW_DEDUP_TTL_SECONDS` of messages: at 1,000 msg/s over 1,500 devices and the 600 s
default, ~400 ids each, and ~730 devices get a message each second. The pipeline benchmark
starts from empty windows, so it never sees this; here the real de-dup step runs in Bytewax
with windows filled first, then takes paced traffic, once with recovery (SQLite, as
`vitalflow run`) and once without, and prints the flow's CPU per message in each.

    .venv/bin/python tests/bench/bench_dedup_snapshots.py --devices 1500 --entries 400
"""

from __future__ import annotations

import argparse
import pickle
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from flows.deduplicate import DedupLogic, dedup_builder, dedup_key
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus, fingerprint

_TOPIC = "iMEDE_watch/hb"


def envelope(device: int, serial: int) -> Envelope:
    now = datetime.now(UTC)
    payload = f'{{"device":{device},"serial":{serial}}}'.encode()
    delivery = Delivery(_TOPIC, payload, now, fingerprint(_TOPIC, payload))
    outcomes = [
        StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, now),
        StepOutcome(Step.PARSED, StepStatus.SUCCESS, now),
        StepOutcome(Step.LOOKUP, StepStatus.SUCCESS, now),
    ]
    return Envelope(delivery, "Kati", f"dev{device}", {}, outcomes, patient_id="p1")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Traffic(StatelessSourcePartition[Envelope]):
    """One message per device first (its window is filled as it is built), then `rate` new
    messages a second."""

    def __init__(self, args: argparse.Namespace, marks: dict[str, float]) -> None:
        self._args = args
        self._marks = marks
        self._fill = list(range(args.devices))
        self._sent = 0
        self._serial = args.entries
        self._start = 0.0

    def next_batch(self) -> list[Envelope]:
        if self._fill:
            devices, self._fill = self._fill, []
            return [envelope(d, -1) for d in devices]
        if not self._start:
            self._start = time.monotonic()
            self._marks["cpu_start"] = cpu_seconds()
            self._marks["wall_start"] = time.monotonic()
        total = int(self._args.rate * self._args.seconds)
        if self._sent >= total:
            self._marks["cpu_end"] = cpu_seconds()
            self._marks["wall_end"] = time.monotonic()
            raise StopIteration
        due = min(total, int((time.monotonic() - self._start) * self._args.rate))
        batch = []
        for _ in range(due - self._sent):
            batch.append(envelope(random.randrange(self._args.devices), self._serial))
            self._serial += 1
        self._sent = due
        return batch

    def next_awake(self) -> datetime | None:
        return None if self._fill else datetime.now(UTC) + timedelta(milliseconds=5)


class _Source(DynamicSource[Envelope]):
    def __init__(self, args: argparse.Namespace, marks: dict[str, float]) -> None:
        self._args = args
        self._marks = marks

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Traffic:
        return _Traffic(self._args, self._marks)


def run(args: argparse.Namespace, recovery: bool) -> tuple[float, float, int]:
    """Return (CPU ms per paced message, % of a core, bytes of one full window's snapshot)."""
    marks: dict[str, float] = {}
    flow = Dataflow("dedup_snapshots")
    keyed = op.key_on("key", op.input("in", flow, _Source(args, marks)), dedup_key)
    ttl = timedelta(seconds=3600)  # nothing expires during the run
    real_builder = dedup_builder(ttl, int(args.entries + 10 * args.rate))
    filled = iter(range(10**9))

    def builder(resume: object) -> DedupLogic:
        # A window as a steady flow leaves it: `entries` ids of earlier messages.
        logic = real_builder(resume)  # type: ignore[arg-type]
        for _ in range(args.entries):
            logic.on_item(envelope(-1, next(filled)))
        return logic

    deduplicated = op.stateful("dedup", keyed, builder)
    # Nothing is kept: holding every envelope would make the garbage collector the cost.
    op.output("out", op.filter("drop", deduplicated, lambda _: False), TestingSink([]))
    config = None
    with tempfile.TemporaryDirectory(prefix="vf-dedup-") as tmp:
        if recovery:
            init_db_dir(Path(tmp), 1)
            config = RecoveryConfig(tmp)
        run_main(flow, epoch_interval=timedelta(seconds=args.epoch), recovery_config=config)
    paced = int(args.rate * args.seconds)
    cpu = marks["cpu_end"] - marks["cpu_start"]
    wall = marks["wall_end"] - marks["wall_start"]
    window = builder(None)
    size = len(pickle.dumps(window.snapshot()))
    return 1000 * cpu / paced, 100 * cpu / wall, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1500)
    parser.add_argument("--entries", type=int, default=400, help="ids in each window at start")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced messages per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--epoch", type=float, default=1.0, help="epoch interval, seconds")
    args = parser.parse_args()
    print(
        f"{args.devices} devices with {args.entries} ids each, then {args.rate:g} msg/s for "
        f"{args.seconds:g} s, epoch {args.epoch:g} s"
    )
    results = {}
    for recovery in (True, False):
        ms, core, size = run(args, recovery)
        results[recovery] = ms
        print(
            f"  recovery {'on ' if recovery else 'off'}: {ms:.3f} ms of CPU per message "
            f"({core:.0f} % of a core); one window's snapshot {size:,} bytes pickled"
        )
    print(f"  recovery's cost: {results[True] - results[False]:.3f} ms per message")


if __name__ == "__main__":
    main()
