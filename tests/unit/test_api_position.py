"""Resume positions: the text form carried in SSE ids, and the vector arithmetic on them."""

from __future__ import annotations

import pytest

from api.position import Position, PositionError


def test_position_round_trips_through_its_text_form() -> None:
    position = Position((15, 20, 7))
    assert position.encode() == "0-15.1-20.2-7"
    assert Position.decode("0-15.1-20.2-7") == position


def test_partitions_may_come_in_any_order_and_missing_ones_start_at_zero() -> None:
    assert Position.decode("2-7.0-15") == Position((15, 0, 7))


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "0-1.0-2", "0-", "-5", "0-1..1-2", "0-1;1-2", "0--1", "99999-1", "0-1\n"],
)
def test_malformed_positions_are_refused(text: str) -> None:
    with pytest.raises(PositionError):
        Position.decode(text)


def test_advancing_moves_one_partition_past_the_record_and_never_back() -> None:
    position = Position((5, 5))
    assert position.advanced(1, 9) == Position((5, 10))
    assert position.advanced(0, 2) == position


def test_merge_takes_the_furthest_offset_of_each_partition() -> None:
    assert Position((1, 9, 4)).merged(Position((3, 2, 4))) == Position((3, 9, 4))


def test_covers_means_at_or_past_in_every_partition() -> None:
    assert Position((3, 4)).covers(Position((3, 2)))
    assert not Position((3, 4)).covers(Position((4, 0)))


def test_resizing_keeps_known_partitions_and_starts_new_ones_at_zero() -> None:
    assert Position((4, 5)).resized(3) == Position((4, 5, 0))
    assert Position((4, 5, 6)).resized(2) == Position((4, 5))
