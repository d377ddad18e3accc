import logging
import random

import pytest

from flows.dedup_window import DedupWindow
from flows.model import fingerprint

HEADER = len(DedupWindow().snapshot())
RECORD = 25


def mid(n: int) -> str:
    return fingerprint("iMEDE_watch/hb", str(n).encode())


def entries(window: DedupWindow) -> list[tuple[str, tuple[float, int, bool]]]:
    """Every entry, oldest first (taken from a copy: the window is left as it was)."""
    copy = DedupWindow.restore(window.snapshot())
    out = []
    while (oldest := copy.oldest()) is not None:
        entry = copy.get(oldest[0])
        assert entry is not None
        out.append((oldest[0], entry))
        copy.drop_oldest()
    return out


def test_updates_keep_their_place_and_a_snapshot_restores_every_entry():
    window = DedupWindow()
    window.put(mid(1), 1000.5, 1, False)
    window.put(mid(2), 1001.0, 1, True)
    window.put(mid(1), 1000.5, 2, True)
    assert window.get(mid(1)) == (1000.5, 2, True)
    assert window.oldest() == (mid(1), 1000.5)
    # First-seen times come back in whole seconds.
    assert entries(window) == [(mid(1), (1000.0, 2, True)), (mid(2), (1001.0, 1, True))]
    assert len(window.snapshot()) == HEADER + 2 * RECORD


def test_a_removed_entry_is_not_restored_and_comes_back_at_the_end():
    window = DedupWindow()
    for n in range(3):
        window.put(mid(n), 1000.0 + n, 1, True)
    window.remove(mid(1))
    assert window.get(mid(1)) is None
    assert [m for m, _ in entries(window)] == [mid(0), mid(2)]
    window.put(mid(1), 2000.0, 1, False)
    assert [m for m, _ in entries(window)] == [mid(0), mid(2), mid(1)]
    window.remove(mid(0))
    assert window.oldest() == (mid(2), 1002.0)


def test_expiry_and_the_cap_drop_from_the_front_and_the_buffer_follows():
    window = DedupWindow()
    for n in range(10_000):
        window.put(mid(n), float(n), 1, True)
        if len(window) > 100:
            window.drop_oldest(len(window) - 100)
    assert len(window) == 100
    assert window.oldest() == (mid(9_900), 9_900.0)
    assert len(window.snapshot()) == HEADER + 100 * RECORD
    assert window.expire(9_949.0) == 50
    assert window.oldest() == (mid(9_950), 9_950.0)
    assert len(window.snapshot()) == HEADER + 50 * RECORD
    assert window.expire(1e12) == 50
    assert window.oldest() is None and len(window.snapshot()) == HEADER
    window.put(mid(1), 5.0, 1, True)
    assert entries(window) == [(mid(1), (5.0, 1, True))]


def test_random_operations_match_a_plain_dict_through_snapshots():
    rng = random.Random(8)
    window, model = DedupWindow(), {}
    for step in range(5_000):
        n = rng.randrange(300)
        action = rng.random()
        if action < 0.5:
            first_seen = float(step)
            if mid(n) in model:
                first_seen = model[mid(n)][0]
            entry = (first_seen, rng.randrange(1, 10), rng.random() < 0.5)
            model[mid(n)] = entry  # updating keeps the place, as in the window
            window.put(mid(n), *entry)
        elif action < 0.7 and mid(n) in model:
            del model[mid(n)]
            window.remove(mid(n))
        elif action < 0.8 and model:
            count = rng.randrange(1, 4)
            for key in list(model)[:count]:
                del model[key]
            window.drop_oldest(count)
        if step % 250 == 0:
            restored = DedupWindow.restore(window.snapshot())
            assert entries(restored) == list(model.items())
        assert len(window) == len(model)
    assert entries(window) == list(model.items())


def test_dict_snapshots_of_earlier_releases_resume():
    window = DedupWindow.restore({mid(1): (1000.0, 2, False), mid(2): (1001.0, 1)})
    # Pairs come from before the stored flag, when only stored messages were kept.
    assert entries(window) == [(mid(1), (1000.0, 2, False)), (mid(2), (1001.0, 1, True))]


def test_a_damaged_snapshot_keeps_what_it_can_and_says_so(caplog: pytest.LogCaptureFixture):
    window = DedupWindow()
    window.put(mid(1), 1000.0, 1, True)
    window.put(mid(2), 1001.0, 1, True)
    data = window.snapshot()
    with caplog.at_level(logging.ERROR):
        assert [m for m, _ in entries(DedupWindow.restore(data[:-3]))] == [mid(1)]
        assert len(DedupWindow.restore(b"not a window")) == 0
    assert "cut short" in caplog.text and "unknown format" in caplog.text


def test_an_id_that_is_not_a_fingerprint_is_kept_until_a_restart():
    window = DedupWindow()
    window.put("not-hex", 1000.0, 1, True)
    assert window.get("not-hex") == (1000.0, 1, True)
    restored = DedupWindow.restore(window.snapshot())
    assert len(restored) == 1 and restored.get("not-hex") is None
