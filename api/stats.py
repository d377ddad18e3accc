"""Counts and rates of the step events an API process has read, answerable per token scope.

Counts are kept per (hospital, patient, device type, step, status) so that /stats can answer a
hospital- or patient-scoped token with its own numbers only; the key space grows with the
number of patients, not with the number of events. Rates come from fixed-width buckets over a
sliding window, keyed by the time each event was written to the topic, so the preloaded
history after a restart lands in the right intervals instead of as a spike at start-up.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

from api.auth import Access
from api.models import MessageOutcomes, Rates, StatsReport, ThroughputBucket
from api.records import StepRecord

__all__ = ["StepStats"]

_FINAL_STEP = "5_medical_stored"
_OUTCOMES = ("events", "stored", "errors", "skipped", "alerts")

_CountKey = tuple[str | None, str | None, str, str, str]
_BucketKey = tuple[str | None, str | None, str]


def _as_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class StepStats:
    """Event counts since start and per-interval throughput over the last `window_seconds`."""

    def __init__(self, bucket_seconds: int = 10, window_seconds: int = 600) -> None:
        self.bucket_seconds = bucket_seconds
        self.window_seconds = window_seconds
        self._bucket_ms = bucket_seconds * 1000
        self._counts: Counter[_CountKey] = Counter()
        self._alerts: Counter[tuple[str | None, str | None]] = Counter()
        self._buckets: dict[int, Counter[_BucketKey]] = defaultdict(Counter)
        self._since_ms: int | None = None

    def add(self, record: StepRecord, now_ms: int | None = None) -> None:
        """Count one valid step event."""
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        # A producer clock ahead of ours must not put events into the future.
        written_ms = min(record.timestamp_ms, now_ms)
        if self._since_ms is None or written_ms < self._since_ms:
            self._since_ms = written_ms
        hospital, patient = record.hospital_id, record.patient_id
        step = record.step or "unknown"
        status = record.status or "unknown"
        self._counts[(hospital, patient, record.device_type or "unknown", step, status)] += 1
        if record.alert:
            self._alerts[(hospital, patient)] += 1
        start = written_ms - written_ms % self._bucket_ms
        if start <= now_ms - self.window_seconds * 1000:
            return
        if start not in self._buckets:
            self._prune(now_ms)
        bucket = self._buckets[start]
        bucket[(hospital, patient, "events")] += 1
        if step == _FINAL_STEP and status == "success":
            bucket[(hospital, patient, "stored")] += 1
        elif status == "error":
            bucket[(hospital, patient, "errors")] += 1
        elif status == "skipped":
            bucket[(hospital, patient, "skipped")] += 1
        if record.alert:
            bucket[(hospital, patient, "alerts")] += 1

    def _prune(self, now_ms: int) -> None:
        oldest = now_ms - self.window_seconds * 1000 - self._bucket_ms
        for start in [s for s in self._buckets if s < oldest]:
            del self._buckets[start]

    def report(self, access: Access, now_ms: int | None = None) -> StatsReport:
        """Report counts and rates of the events `access` may see."""
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        by_device_type: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        by_step: defaultdict[str, Counter[str]] = defaultdict(Counter)
        by_type_step: defaultdict[str, Counter[str]] = defaultdict(Counter)
        events = 0
        for (hospital, patient, device_type, step, status), count in self._counts.items():
            if not access.can_see(patient, hospital):
                continue
            events += count
            by_device_type[device_type] += count
            by_status[status] += count
            by_step[step][status] += count
            by_type_step[device_type][step] += count
        alerts = sum(n for (h, p), n in self._alerts.items() if access.can_see(p, h))
        stored = by_step[_FINAL_STEP]["success"] if _FINAL_STEP in by_step else 0
        failed, skipped = by_status["error"], by_status["skipped"]
        finished = stored + failed + skipped
        throughput = self._throughput(access, now_ms)
        return StatsReport(
            since=_as_datetime(self._since_ms) if self._since_ms is not None else None,
            events=events,
            alerts=alerts,
            by_device_type=dict(by_device_type),
            by_status=dict(by_status),
            by_step={step: dict(statuses) for step, statuses in sorted(by_step.items())},
            by_device_type_and_step={
                device_type: dict(steps) for device_type, steps in sorted(by_type_step.items())
            },
            messages=MessageOutcomes(
                stored=stored,
                failed=failed,
                skipped=skipped,
                success_rate=stored / finished if finished else None,
                failure_rate=failed / finished if finished else None,
            ),
            rates=self._rates(throughput, now_ms),
            bucket_seconds=self.bucket_seconds,
            throughput=throughput,
        )

    def _throughput(self, access: Access, now_ms: int) -> list[ThroughputBucket]:
        current = now_ms - now_ms % self._bucket_ms
        count = self.window_seconds // self.bucket_seconds
        starts = [current - i * self._bucket_ms for i in range(count - 1, -1, -1)]
        result = []
        for start in starts:
            totals: Counter[str] = Counter()
            for (hospital, patient, outcome), n in self._buckets.get(start, Counter()).items():
                if access.can_see(patient, hospital):
                    totals[outcome] += n
            result.append(
                ThroughputBucket(start=_as_datetime(start), **{o: totals[o] for o in _OUTCOMES})
            )
        return result

    def _rates(self, throughput: list[ThroughputBucket], now_ms: int) -> Rates:
        # The current bucket is partly elapsed: dividing by the time it really covers keeps the
        # rate from dipping every time a new interval starts.
        elapsed_current = (now_ms % self._bucket_ms) / 1000 or self.bucket_seconds

        def per_second(seconds: int, field: str) -> float:
            buckets = max(1, seconds // self.bucket_seconds)
            recent = throughput[-buckets:]
            total = sum(getattr(b, field) for b in recent)
            span = (len(recent) - 1) * self.bucket_seconds + elapsed_current
            return round(total / span, 3) if span > 0 else 0.0

        return Rates(
            events_per_second_1m=per_second(60, "events"),
            events_per_second_5m=per_second(300, "events"),
            messages_per_second_1m=round(
                per_second(60, "stored") + per_second(60, "errors") + per_second(60, "skipped"),
                3,
            ),
            errors_per_second_1m=per_second(60, "errors"),
        )
