"""Load shedding decisions (pure logic: time and randomness are given)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from channels.shedding import SheddingPolicy
from runtime.shedding import Shedder


@dataclass(frozen=True)
class Rec:
    text: str
    ts_in: float
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def make(policy: SheddingPolicy, now: float = 0.0) -> Shedder:
    return Shedder(policy, str.lower, random.Random(3), now)


def run(
    shedder: Shedder, records: list[Rec], now: float, lag: int | None = None
) -> tuple[list[bool], Counter[str]]:
    """Shed a batch; records are opened (peeked) as the stage would, as JSON objects."""
    opened: list[int] = []

    def peek(i: int) -> dict[str, Any]:
        opened.append(i)
        return asdict(records[i])

    keep, shed = shedder.select([r.ts_in for r in records], now, peek, lag)
    if shedder.keep_fraction >= 1.0:
        assert not opened  # records are opened only while shedding
    return keep, shed


# Small batches here: any backlog counts, and any wait past the age bound may be shed.
ON = SheddingPolicy(enabled=True, max_age_s=1.0, adapt_every_s=0.1, min_backlog=1, max_drain_s=1.0)


def batch(n: int, ts_in: float, prefix: str = "t") -> list[Rec]:
    return [Rec(f"{prefix}{i}", ts_in) for i in range(n)]


def test_disabled_policy_keeps_everything_however_late() -> None:
    shedder = make(SheddingPolicy(enabled=False))
    keep, shed = run(shedder, batch(100, ts_in=0.0), now=1000.0)
    assert all(keep) and not shed


def test_fresh_input_is_never_shed() -> None:
    shedder = make(ON)
    for step in range(1, 50):
        now = step * 0.2
        keep, shed = run(shedder, batch(100, ts_in=now - 0.5), now=now)
        assert all(keep) and not shed
    assert shedder.keep_fraction == 1.0


def overload(shedder: Shedder, now: float = 10.0, lag: int | None = None) -> float:
    """Feed records that wait longer and longer until the shedder judges it overloaded
    (one cut); the time of that step."""
    for step in range(100):
        at = now + step * 0.2
        run(shedder, [Rec(f"warm{step}", 0.0)], at, lag)
        if shedder.overloaded:
            return at
    raise AssertionError("never overloaded")


def test_input_that_falls_further_behind_is_shed_and_every_drop_counted() -> None:
    shedder = make(ON)
    kept_total = shed_total = 0
    for step in range(20):
        now = 5.0 + step * 0.2
        items = batch(1000, ts_in=0.0, prefix=f"b{step}-")  # older at every step
        keep, shed = run(shedder, items, now)
        kept_total += sum(keep)
        shed_total += sum(shed.values())
        assert sum(keep) + sum(shed.values()) == len(items)
        if now - 5.0 < ON.trend_s:  # not judged on less than a whole window
            assert not shed and not shedder.overloaded
    assert shedder.overloaded
    assert shedder.keep_fraction == pytest.approx(0.7**10)  # a cut a step once judged
    assert kept_total + shed_total == 20_000
    assert shed_total > 7_000


def test_a_backlog_that_drains_is_caught_up_whole() -> None:
    # A restart, an outage or a rebalance left 30 s of input waiting; the stage reads
    # it faster than new input arrives, so every batch is less late than the last.
    shedder = make(ON)
    for step in range(120):
        now = 100.0 + step * 0.2
        age = 30.0 - step * 0.25
        keep, shed = run(shedder, batch(500, ts_in=now - age), now, lag=50_000 - 400 * step)
        assert all(keep) and not shed
    assert not shedder.overloaded and shedder.keep_fraction == 1.0


def test_a_backlog_with_jitter_is_judged_over_the_window_not_a_step() -> None:
    # Batches from partitions at different depths: the age goes up and down from one
    # batch to the next, but drains over any two seconds.
    shedder = make(ON)
    for step in range(100):
        now = 100.0 + step * 0.2
        age = 30.0 - step * 0.25 + (1.5 if step % 2 else 0.0)
        _, shed = run(shedder, batch(100, ts_in=now - age), now, lag=20_000)
        assert not shed
    assert shedder.keep_fraction == 1.0


def test_resumed_reading_starts_afresh() -> None:
    shedder = make(ON)
    now = overload(shedder)
    assert shedder.keep_fraction == pytest.approx(0.7)
    shedder.resume()  # partitions assigned, or a rewind: the backlog is our own
    assert not shedder.overloaded and shedder.keep_fraction == 1.0
    _, shed = run(shedder, batch(100, ts_in=0.0), now + 0.2)
    assert not shed


def test_the_fraction_recovers_once_caught_up() -> None:
    shedder = make(ON)
    now = overload(shedder)
    for step in range(1, 10):
        run(shedder, batch(10, ts_in=0.0), now=now + step * 0.2)
    low = shedder.keep_fraction
    for step in range(10, 80):
        at = now + step * 0.2
        run(shedder, batch(10, ts_in=at), now=at)
    assert low < 0.05 and shedder.keep_fraction == 1.0 and not shedder.overloaded


def test_near_duplicates_go_before_a_uniform_sample() -> None:
    shedder = make(ON)
    now = overload(shedder) + 0.01  # within the adapt interval: the fraction holds
    # 50 distinct texts and 50 copies of them (different case: same key here).
    items = batch(50, ts_in=0.0) + [Rec(r.text.upper(), 0.0) for r in batch(50, ts_in=0.0)]
    keep, shed = run(shedder, items, now)
    assert shedder.keep_fraction == pytest.approx(0.7)
    assert shed["near_duplicate"] == 30 and shed["sample"] == 0
    assert all(keep[:50])  # first occurrences kept; only copies were dropped
    # More to drop than there are duplicates: the rest is a uniform sample.
    keep, shed = run(shedder, batch(100, ts_in=0.0, prefix="new"), now=now + 0.2)
    assert shed["sample"] == round(100 * (1 - 0.49)) and shed["near_duplicate"] == 0


def test_protected_items_are_never_shed() -> None:
    policy = SheddingPolicy(
        enabled=True,
        min_keep=0.02,
        min_backlog=1,
        protect_sources=["911"],
        protect_meta_key="mandatory",
    )
    shedder = make(policy)
    for step in range(1, 40):
        items = [
            Rec(f"s{step}-{i}", 0.0, source="911" if i % 10 == 0 else "twitter") for i in range(100)
        ] + [Rec(f"m{step}", 0.0, meta={"mandatory": True}), Rec(f"n{step}", 0.0, meta={})]
        keep, _ = run(shedder, items, 100.0 + step)
        assert all(k for item, k in zip(items, keep, strict=True) if item.source == "911")
        assert keep[-2]
    assert shedder.keep_fraction == pytest.approx(0.02)


def test_a_short_late_backlog_is_kept_whole() -> None:
    shedder = make(SheddingPolicy(enabled=True, max_age_s=1.0, min_backlog=1000, max_drain_s=1.0))
    for step in range(1, 20):  # a few late records, nothing more waiting: caught up soon
        keep, shed = run(shedder, batch(5, ts_in=0.0), now=100.0 + step, lag=0)
        assert all(keep) and not shed
    # The same lateness, growing, with a long queue behind it is load to shed.
    overload(shedder, now=200.0, lag=1000)
    _, shed = run(shedder, batch(500, ts_in=0.0), now=203.0, lag=1000)
    assert sum(shed.values()) > 0


def test_a_lag_bound_also_counts_as_behind() -> None:
    shedder = make(SheddingPolicy(enabled=True, max_age_s=60.0, max_lag=1000, max_drain_s=1.0))
    for step in range(20):  # under the bound: never behind
        _, shed = run(shedder, batch(100, ts_in=9.9), now=10.0 + step * 0.2, lag=500)
        assert not shed
    for step in range(20):  # past it and growing: overload
        now = 20.0 + step * 0.2
        _, shed = run(shedder, batch(100, ts_in=now), now=now, lag=5000 + 100 * step)
    assert shedder.overloaded and sum(shed.values()) > 0


def test_the_fraction_changes_at_most_every_adapt_interval() -> None:
    shedder = make(ON)
    now = overload(shedder)
    for i in range(1, 20):
        run(shedder, batch(10, ts_in=0.0), now=now + i * 0.001)
    assert shedder.keep_fraction == pytest.approx(0.7)


def test_a_draining_backlog_holds_the_fraction() -> None:
    shedder = make(ON)
    now = overload(shedder)  # late and getting later: cut
    assert shedder.keep_fraction == pytest.approx(0.7)
    age = now
    for step in range(1, 10):  # still late, but less and less
        age -= 0.2
        run(shedder, batch(10, ts_in=now + step * 0.2 - age), now=now + step * 0.2)
    assert shedder.keep_fraction == pytest.approx(0.7)
    run(shedder, batch(10, ts_in=0.0), now=now + 2.2)  # worse again: cut
    assert shedder.keep_fraction == pytest.approx(0.49)


def test_records_that_are_not_json_objects_are_kept_for_the_stage_to_reject() -> None:
    shedder = make(SheddingPolicy(enabled=True, min_keep=0.02, min_backlog=1))
    for step in range(1, 20):
        keep, _ = shedder.select([0.0] * 100, 100.0 + step, lambda i: None)
        assert all(keep)


def test_a_burst_the_stage_clears_within_the_drain_bound_is_kept_whole() -> None:
    # 60,000 items arrive within 2 s; the stage reads 5,000 a second: the last waits
    # 12 s, within a 15 s bound, so nothing is shed however late it gets.
    shedder = make(SheddingPolicy(enabled=True, max_age_s=1.0, max_drain_s=15.0))
    for step in range(1, 61):
        now = 100.0 + step * 0.2
        arrived, read = min(60_000, 30_000 * step * 0.2), 1000 * (step - 1)
        keep, shed = run(
            shedder, batch(1000, ts_in=100.0 + read / 30_000), now, lag=int(arrived - read - 1000)
        )
        assert all(keep) and not shed
    assert not shedder.overloaded


def test_a_feed_faster_than_the_stage_is_shed_once_its_wait_passes_the_drain_bound() -> None:
    # 15,000 items a second arrive; the stage reads 5,000: the wait grows 2 s a second.
    shedder = make(SheddingPolicy(enabled=True, max_age_s=1.0, max_drain_s=10.0))
    first_shed = None
    for step in range(1, 100):
        now = 100.0 + step * 0.2
        arrived, read = 15_000 * step * 0.2, 5_000 * (step - 1) * 0.2
        _, shed = run(
            shedder, batch(1000, ts_in=100.0 + read / 15_000), now, lag=int(arrived - read - 1000)
        )
        if shed and first_shed is None:
            first_shed = now - 100.0
    assert first_shed is not None
    # Shed once the wait (what waits / 5,000 a second) reached 10 s, not before.
    assert 5.0 <= first_shed <= 6.0
