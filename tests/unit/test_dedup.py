"""The dedup rule for readers of items.classified: the first record of each (id,
revision) wins."""

from __future__ import annotations

import pytest

from channels.dedup import FirstById


def test_first_record_of_an_id_wins_and_repeats_are_counted() -> None:
    once = FirstById()
    stream = ["a", "b", "a", "c", "b", "a"]
    assert [item for item in stream if once.first(item)] == ["a", "b", "c"]
    assert once.repeats == 3


def test_a_revision_is_not_a_repeat_but_a_repeat_of_it_is() -> None:
    once = FirstById()
    stream = [("a", 0), ("a", 17), ("a", 0), ("a", 17), ("a", 23), ("b", 17)]
    assert [key for key in stream if once.first(*key)] == [
        ("a", 0),
        ("a", 17),
        ("a", 23),
        ("b", 17),
    ]
    assert once.repeats == 2


def test_memory_is_bounded_to_the_latest_ids() -> None:
    once = FirstById(memory=2)
    assert once.first("a") and once.first("b") and once.first("c")
    assert once.first("a")  # forgotten: outside the window
    assert not once.first("c")
    with pytest.raises(ValueError, match="at least 1"):
        FirstById(memory=0)
