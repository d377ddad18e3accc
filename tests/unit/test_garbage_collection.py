"""The flow process collects cycles less often, and still collects them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from flows.garbage_collection import THRESHOLDS, tune_garbage_collection


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Node:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("restore_gc")
def test_tuning_freezes_what_exists_and_raises_the_thresholds() -> None:
    tune_garbage_collection()
    assert gc.get_threshold() == THRESHOLDS
    assert THRESHOLDS[0] > 700
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_cycles_made_afterwards_are_still_collected() -> None:
    tune_garbage_collection()
    node = _Node()
    ref = weakref.ref(node)
    del node
    assert ref() is not None  # a cycle: reference counting alone cannot free it
    # No explicit collect: allocating past the young generation's threshold triggers one.
    kept = [[] for _ in range(THRESHOLDS[0] + 1000)]
    assert ref() is None
    assert len(kept) > THRESHOLDS[0]
