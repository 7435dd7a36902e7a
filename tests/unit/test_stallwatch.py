"""Noticing a broker that holds unread records but answers no fetch."""

from __future__ import annotations

from runtime.stallwatch import StallWatch


def test_a_quiet_reader_checks_once_per_interval() -> None:
    watch = StallWatch(after_s=30.0)
    watch.received(100.0)
    assert not watch.due(120.0)
    assert watch.due(130.0)
    assert watch.judge(130.0, {"p0": 10}, {"p0": 10}) == 0  # nothing waits: just idle
    assert not watch.due(150.0)  # checked at 130: next at 160
    assert watch.due(160.0)


def test_records_waiting_past_the_positions_start_one_stall() -> None:
    watch = StallWatch(after_s=30.0)
    watch.received(0.0)
    assert watch.due(31.0)
    assert watch.judge(31.0, {"p0": 50, "p1": 7}, {"p0": 40, "p1": 9}) == 10
    # reported once, not on every check while it lasts
    assert watch.judge(61.0, {"p0": 60}, {"p0": 40}) == 0
    assert watch.stalled
    # records arrive: the stall ends (and says so once)
    assert watch.received(70.0)
    assert not watch.received(71.0)
    assert watch.judge(110.0, {"p0": 80}, {"p0": 70}) == 10  # a new stall


def test_the_first_quiet_period_counts_from_the_first_look() -> None:
    watch = StallWatch(after_s=30.0)
    assert not watch.due(5.0)  # never received anything: the clock starts now
    assert watch.due(35.0)
    assert watch.judge(35.0, {"p0": 3}, {}) == 0  # partitions without a position
