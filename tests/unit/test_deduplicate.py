from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.dedup_window import DedupWindow
from flows.deduplicate import DedupLogic, dedup_builder, dedup_key
from flows.model import Delivery, Envelope, Step, StepOutcome, StepStatus, fingerprint

# Near the wall clock: expiry (`on_notify`) runs on wall time, and would clear entries dated
# long ago between two items.
T0 = datetime.now(UTC).replace(microsecond=0)


def envelope(
    payload: bytes,
    at: datetime = T0,
    device: str = "861265061482607",
    failed: bool = False,
    replay_of: int | None = None,
) -> Envelope:
    delivery = Delivery(
        "iMEDE_watch/hb", payload, at, fingerprint("iMEDE_watch/hb", payload), replay_of
    )
    outcomes = [
        StepOutcome(Step.RECEIVED, StepStatus.SUCCESS, at),
        StepOutcome(Step.PARSED, StepStatus.SUCCESS, at),
        StepOutcome(
            Step.LOOKUP,
            StepStatus.ERROR if failed else StepStatus.SUCCESS,
            at,
            error_code="unknown_device" if failed else None,
        ),
    ]
    return Envelope(delivery, "Kati", device, {}, outcomes, patient_id=None if failed else "p1")


def run_dedup(items: list[Envelope], ttl: timedelta = timedelta(minutes=10)) -> list[Envelope]:
    flow = Dataflow("dedup_test")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(items)), dedup_key)
    out: list[tuple[str, Envelope]] = []
    op.output("out", op.stateful("dedup", keyed, dedup_builder(ttl, 100)), TestingSink(out))
    run_main(flow)
    return [e for _, e in out]


def test_duplicate_delivery_is_skipped_at_step_2_with_ids_of_its_own():
    first, again = envelope(b'{"a":1}'), envelope(b'{"a":1}', T0 + timedelta(seconds=2))
    out = run_dedup([first, again])
    assert out[0].outcomes == first.outcomes
    assert [(o.step, o.status, o.reason) for o in out[1].outcomes] == [
        (Step.RECEIVED, StepStatus.SUCCESS, None),
        (Step.PARSED, StepStatus.SKIPPED, "duplicate"),
    ]
    assert out[1].delivery_number == 2
    assert out[1].observations == [] and out[1].parsed is None


def test_different_payloads_and_devices_are_not_duplicates():
    out = run_dedup([envelope(b"1"), envelope(b"2"), envelope(b"1", device="other")])
    assert all(len(e.outcomes) == 3 for e in out)


def test_copy_of_a_failed_message_is_processed_again_with_ids_of_its_own():
    out = run_dedup([envelope(b"x", failed=True), envelope(b"x", failed=True)])
    assert [e.outcomes[-1].status for e in out] == [StepStatus.ERROR, StepStatus.ERROR]
    assert [e.delivery_number for e in out] == [1, 2]


def test_a_copy_that_succeeds_after_failures_is_stored_and_later_copies_are_duplicates():
    # Unknown device twice, then registered: the third copy goes on; the fourth is a repeat.
    out = run_dedup(
        [envelope(b"x", failed=True), envelope(b"x", failed=True), envelope(b"x"), envelope(b"x")]
    )
    assert [e.delivery_number for e in out] == [1, 2, 3, 4]
    assert [e.outcomes[-1].status for e in out] == [
        StepStatus.ERROR,
        StepStatus.ERROR,
        StepStatus.SUCCESS,
        StepStatus.SKIPPED,
    ]


def test_a_replay_is_never_a_duplicate_and_numbers_on_from_the_failed_delivery():
    # The first pass went on to the store (and failed there): de-dup only saw it pass.
    out = run_dedup([envelope(b"x"), envelope(b"x", replay_of=1), envelope(b"x")])
    assert [e.outcomes[-1].status for e in out] == [
        StepStatus.SUCCESS,
        StepStatus.SUCCESS,
        StepStatus.SKIPPED,
    ]
    assert [e.delivery_number for e in out] == [1, 2, 3]


def test_a_replay_after_the_ttl_still_gets_a_number_of_its_own():
    late = T0 + timedelta(hours=5)
    out = run_dedup([envelope(b"x", failed=True), envelope(b"x", late, replay_of=1)])
    assert [e.delivery_number for e in out] == [1, 2]
    assert out[1].outcomes[-1].status is StepStatus.SUCCESS
    assert run_dedup([envelope(b"y", late, replay_of=4)])[0].delivery_number == 5


def test_copy_after_the_ttl_is_not_a_duplicate():
    out = run_dedup([envelope(b"x"), envelope(b"x", T0 + timedelta(minutes=11))])
    assert [len(e.outcomes) for e in out] == [3, 3]


def test_state_is_capped_oldest_first():
    logic = DedupLogic(DedupWindow(), timedelta(minutes=10), max_entries=2)
    for payload in (b"1", b"2", b"3"):
        logic.on_item(envelope(payload))
    window = DedupWindow.restore(logic.snapshot())
    assert [window.oldest()] == [(fingerprint("iMEDE_watch/hb", b"2"), int(T0.timestamp()))]
    window.drop_oldest()
    assert [window.oldest()] == [(fingerprint("iMEDE_watch/hb", b"3"), int(T0.timestamp()))]
    assert len(window) == 1


def test_state_resumes_from_snapshot():
    logic = DedupLogic(DedupWindow(), timedelta(minutes=10), 100)
    logic.on_item(envelope(b"1"))
    resumed = dedup_builder(timedelta(minutes=10), 100)(logic.snapshot())
    emitted, _ = resumed.on_item(envelope(b"1", T0 + timedelta(seconds=1)))
    assert emitted[0].outcomes[1].reason == "duplicate"


def test_expired_entries_are_dropped_and_empty_state_discarded():
    logic = DedupLogic(DedupWindow(), timedelta(seconds=1), 100)
    logic.on_item(envelope(b"1", datetime.now(UTC) - timedelta(seconds=5)))
    assert logic.notify_at() is not None
    emitted, discard = logic.on_notify()
    assert emitted == [] and discard is True and len(DedupWindow.restore(logic.snapshot())) == 0


def test_snapshots_of_pairs_from_before_the_stored_flag_resume_as_stored():
    resumed = dedup_builder(timedelta(minutes=10), 100)(
        {fingerprint("iMEDE_watch/hb", b"1"): (T0.timestamp(), 1)}
    )
    emitted, _ = resumed.on_item(envelope(b"1", T0 + timedelta(seconds=1)))
    assert emitted[0].outcomes[1].reason == "duplicate" and emitted[0].delivery_number == 2


def test_dict_snapshots_of_the_release_before_the_window_resume():
    resumed = dedup_builder(timedelta(minutes=10), 100)(
        {
            fingerprint("iMEDE_watch/hb", b"1"): (T0.timestamp(), 1, True),
            fingerprint("iMEDE_watch/hb", b"2"): (T0.timestamp(), 1, False),
        }
    )
    stored, _ = resumed.on_item(envelope(b"1", T0 + timedelta(seconds=1)))
    failed_before, _ = resumed.on_item(envelope(b"2", T0 + timedelta(seconds=1)))
    assert stored[0].outcomes[1].reason == "duplicate" and stored[0].delivery_number == 2
    assert len(failed_before[0].outcomes) == 3 and failed_before[0].delivery_number == 2
