"""The overlapped store step's logic: order, batches in flight bounded, nothing acked unwritten.

The writer here is a stand-in whose writes finish when the test says so (pure logic; the real
store runs under it in every integration test of `vitalflow run`, which has recovery on).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from flows.model import Delivery, Envelope
from flows.store_pipeline import PipelinedStore, StoreLogic, WorkerKey


def _envelope(n: int, device: str = "d1") -> Envelope:
    delivery = Delivery("t", b"{}", datetime(2026, 1, 1, tzinfo=UTC), f"m{n}")
    return Envelope(delivery=delivery, device_type="kati", device_id=device, payload={"n": n})


class _GatedWriter:
    """Writes each batch (marks it `written`) only once the test opens its gate."""

    def __init__(self) -> None:
        self.gates: list[threading.Event] = []
        self.written: list[list[str]] = []
        self.fail_next = False

    def __call__(self, batch: list[Envelope]) -> Iterable[Envelope]:
        gate = threading.Event()
        self.gates.append(gate)
        assert gate.wait(10), "the test never let this write finish"
        if self.fail_next:
            msg = "store refused"
            raise RuntimeError(msg)
        self.written.append([e.delivery.message_id for e in batch])
        return [e.replace(patient_id="p") for e in batch]

    def open(self, index: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.gates) <= index:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        self.gates[index].set()


def _ids(envelopes: Iterable[Envelope]) -> list[str]:
    return [e.delivery.message_id for e in envelopes]


def _logic(writer: _GatedWriter, most_in_flight: int = 1) -> StoreLogic:
    return PipelinedStore(lambda: writer, most_in_flight)(None)


def _later(action: object, delay: float = 0.05) -> threading.Thread:
    thread = threading.Timer(delay, action)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_batch_is_emitted_once_written_and_in_order() -> None:
    writer = _GatedWriter()
    logic = _logic(writer)
    first, second = [_envelope(1), _envelope(2)], [_envelope(3)]

    out, discard = logic.on_batch(first)
    assert (list(out), discard) == ([], False)
    assert logic.notify_at() is not None  # something in flight: look again soon
    assert list(logic.on_notify()[0]) == []  # not written yet: nothing to emit

    writer.open(0)
    # The next batch waits for the one before and emits it, written, before its own.
    out, _ = logic.on_batch(second)
    assert _ids(out) == ["m1", "m2"]
    assert all(e.patient_id == "p" for e in out)

    writer.open(1)
    deadline = time.monotonic() + 10
    emitted: list[Envelope] = []
    while not emitted:
        assert time.monotonic() < deadline
        emitted, discard = logic.on_notify()  # type: ignore[assignment]
        emitted = list(emitted)
    assert _ids(emitted) == ["m3"]
    assert discard is True  # idle: nothing held, nothing in flight
    assert logic.notify_at() is None
    assert writer.written == [["m1", "m2"], ["m3"]]


def test_with_one_in_flight_the_next_batch_waits_for_the_one_before() -> None:
    writer = _GatedWriter()
    logic = _logic(writer)
    logic.on_batch([_envelope(1)])
    done = threading.Event()

    def second_batch() -> None:
        logic.on_batch([_envelope(2)])
        done.set()

    thread = threading.Thread(target=second_batch)
    thread.start()
    # The second batch is not handed to the writer while the first is unwritten.
    assert not done.wait(0.2)
    assert len(writer.gates) == 1
    writer.open(0)
    assert done.wait(10)
    thread.join()
    writer.open(1)


def test_batches_up_to_the_limit_go_out_without_waiting_and_are_emitted_in_order() -> None:
    writer = _GatedWriter()
    logic = _logic(writer, most_in_flight=2)
    assert list(logic.on_batch([_envelope(1)])[0]) == []
    assert list(logic.on_batch([_envelope(2)])[0]) == []  # the first still unwritten
    # A third waits for the oldest: at most two out at once. (Called from this thread, as
    # Bytewax calls a worker's logic from that worker's thread.)
    opened = _later(lambda: writer.open(0), 0.2)
    started = time.monotonic()
    emitted = list(logic.on_batch([_envelope(3)])[0])
    assert time.monotonic() - started >= 0.15
    assert _ids(emitted) == ["m1"]
    opened.join()
    writer.open(1)
    writer.open(2)
    assert _ids(logic.on_eof()[0]) == ["m2", "m3"]
    assert writer.written == [["m1"], ["m2"], ["m3"]]


def test_the_epochs_snapshot_waits_for_every_batch_in_flight() -> None:
    writer = _GatedWriter()
    logic = _logic(writer, most_in_flight=3)
    logic.on_batch([_envelope(1)])
    logic.on_batch([_envelope(2)])
    opened = _later(lambda: (writer.open(0), writer.open(1)), 0.2)
    held = logic.snapshot()
    assert writer.written == [["m1"], ["m2"]]
    assert _ids(held) == ["m1", "m2"]
    opened.join()


def test_the_epochs_snapshot_waits_for_the_batch_in_flight_and_holds_it() -> None:
    writer = _GatedWriter()
    logic = _logic(writer)
    logic.on_batch([_envelope(1), _envelope(2)])
    opened = _later(lambda: writer.open(0), 0.2)
    started = time.monotonic()

    held = logic.snapshot()

    # The epoch closes (and the source acks it) only once the batch is written.
    assert time.monotonic() - started >= 0.15
    assert writer.written == [["m1", "m2"]]
    assert _ids(held) == ["m1", "m2"]
    # Held over the epoch's end, then emitted at the next look.
    assert logic.notify_at() is not None
    out, discard = logic.on_notify()
    assert _ids(out) == ["m1", "m2"]
    assert discard is True
    assert logic.snapshot() == []
    opened.join()


def test_a_resume_emits_what_the_snapshot_held() -> None:
    writer = _GatedWriter()
    logic = _logic(writer)
    logic.on_batch([_envelope(1)])
    writer.open(0)
    snapshot = pickle.loads(pickle.dumps(logic.snapshot()))  # as recovery stores it

    resumed = PipelinedStore(lambda: writer)(snapshot)

    assert resumed.notify_at() is not None
    out, _ = resumed.on_notify()
    assert _ids(out) == ["m1"]
    assert writer.written == [["m1"]]  # emitted, not written again


def test_end_of_input_waits_for_the_last_batch() -> None:
    writer = _GatedWriter()
    logic = _logic(writer)
    logic.on_batch([_envelope(1)])
    opened = _later(lambda: writer.open(0))
    out, discard = logic.on_eof()
    assert _ids(out) == ["m1"]
    assert discard is True
    opened.join()


def test_a_failed_write_is_raised_in_the_worker() -> None:
    writer = _GatedWriter()
    writer.fail_next = True
    logic = _logic(writer)
    logic.on_batch([_envelope(1)])
    writer.open(0)
    with pytest.raises(RuntimeError, match="store refused"):
        logic.on_batch([_envelope(2)])


def test_the_key_is_one_per_worker_thread() -> None:
    key = WorkerKey()
    assert key(_envelope(1, "a")) == "kati/a"
    assert key(_envelope(2, "b")) == "kati/a"  # the first device seen keeps the key
    other: list[str] = []
    thread = threading.Thread(target=lambda: other.append(key(_envelope(3, "c"))))
    thread.start()
    thread.join()
    assert other == ["kati/c"]


def test_each_worker_thread_has_its_own_writer() -> None:
    made: list[_GatedWriter] = []

    def new_writer() -> _GatedWriter:
        made.append(_GatedWriter())
        return made[-1]

    store = PipelinedStore(new_writer)
    here = store(None)
    here.on_batch([_envelope(1)])
    made[0].open(0)
    here.on_batch([_envelope(2)])  # same thread: same writer
    assert len(made) == 1
    made[0].open(1)

    def elsewhere() -> None:
        logic = store(None)
        logic.on_batch([_envelope(3)])
        made[1].open(0)
        logic.on_eof()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(10)
    assert len(made) == 2
    assert made[1].written == [["m3"]]


def _written(batch: list[Envelope]) -> list[Envelope]:
    return [e.replace(patient_id="p") for e in batch]


def test_inline_writes_emit_each_batch_as_soon_as_it_is_written() -> None:
    writers: list[threading.Thread] = []

    def write(batch: list[Envelope]) -> list[Envelope]:
        writers.append(threading.current_thread())
        return _written(batch)

    logic = PipelinedStore(lambda: write, overlap=False)(None)
    out, discard = logic.on_batch([_envelope(1), _envelope(2)])
    assert _ids(out) == ["m1", "m2"]
    assert all(e.patient_id == "p" for e in out)
    assert discard is False
    assert logic.notify_at() is None  # nothing held, nothing in flight
    assert logic.snapshot() == []
    assert _ids(logic.on_batch([_envelope(3)])[0]) == ["m3"]
    assert writers == [threading.current_thread()] * 2  # in the worker, no thread of its own


def test_a_resume_with_the_overlap_off_emits_what_an_overlapped_snapshot_held() -> None:
    writer = _GatedWriter()
    overlapped = _logic(writer)
    overlapped.on_batch([_envelope(1)])
    writer.open(0)
    snapshot = pickle.loads(pickle.dumps(overlapped.snapshot()))  # a crash after this epoch

    resumed = PipelinedStore(lambda: _written, overlap=False)(snapshot)

    assert resumed.notify_at() is not None  # what it holds goes out even if no batch comes
    out, _ = resumed.on_batch([_envelope(2)])
    assert _ids(out) == ["m1", "m2"]  # the held one first, not written again
    assert writer.written == [["m1"]]


def test_an_inline_write_that_fails_raises_in_the_worker() -> None:
    def refuse(_batch: list[Envelope]) -> list[Envelope]:
        msg = "store refused"
        raise RuntimeError(msg)

    logic = PipelinedStore(lambda: refuse, overlap=False)(None)
    with pytest.raises(RuntimeError, match="store refused"):
        logic.on_batch([_envelope(1)])
