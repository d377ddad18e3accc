"""The flow process's switch interval is the one configured."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from flows.settings import Settings
from flows.thread_switching import set_switch_interval


@pytest.fixture
def restore_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.mark.usefixtures("restore_interval")
def test_the_configured_interval_is_applied_in_milliseconds() -> None:
    set_switch_interval(Settings().switch_interval_ms)
    assert sys.getswitchinterval() == pytest.approx(0.001)
    set_switch_interval(2.5)
    assert sys.getswitchinterval() == pytest.approx(0.0025)


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(switch_interval_ms=0)
