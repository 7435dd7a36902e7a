"""Load shedding decisions (pure logic: time and randomness are given)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from channels.shedding import Shedder, SheddingPolicy


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


# Small batches here: any backlog counts.
ON = SheddingPolicy(enabled=True, max_age_s=1.0, adapt_every_s=0.1, min_backlog=1)


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


def test_late_input_lowers_the_kept_fraction_and_counts_every_drop() -> None:
    shedder = make(ON)
    kept_total = shed_total = 0
    for step in range(1, 11):
        now = step * 0.2
        items = batch(1000, ts_in=now - 5.0, prefix=f"b{step}-")
        keep, shed = run(shedder, items, now)
        kept_total += sum(keep)
        shed_total += sum(shed.values())
        assert sum(keep) + sum(shed.values()) == len(items)
    assert shedder.keep_fraction == pytest.approx(0.7**10)
    assert kept_total + shed_total == 10_000
    assert shed_total > 5_000


def test_the_fraction_recovers_once_caught_up() -> None:
    shedder = make(ON)
    for step in range(1, 6):
        run(shedder, batch(10, ts_in=0.0), now=step * 0.2 + 5)
    low = shedder.keep_fraction
    for step in range(6, 60):
        now = step * 0.2 + 5
        run(shedder, batch(10, ts_in=now), now=now)
    assert low < 0.2 and shedder.keep_fraction == 1.0


def test_near_duplicates_go_before_a_uniform_sample() -> None:
    shedder = make(ON)
    now = 10.0
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
    for step in range(1, 30):
        items = [
            Rec(f"s{step}-{i}", 0.0, source="911" if i % 10 == 0 else "twitter") for i in range(100)
        ] + [Rec(f"m{step}", 0.0, meta={"mandatory": True}), Rec(f"n{step}", 0.0, meta={})]
        keep, _ = run(shedder, items, 100.0 + step)
        assert all(k for item, k in zip(items, keep, strict=True) if item.source == "911")
        assert keep[-2]
    assert shedder.keep_fraction == pytest.approx(0.02)


def test_a_short_late_backlog_is_kept_whole() -> None:
    shedder = make(SheddingPolicy(enabled=True, max_age_s=1.0, min_backlog=1000))
    for step in range(1, 20):  # a few late records, nothing more waiting: caught up soon
        keep, shed = run(shedder, batch(5, ts_in=0.0), now=100.0 + step, lag=0)
        assert all(keep) and not shed
    # The same lateness with a long queue behind it is load to shed.
    _, shed = run(shedder, batch(500, ts_in=0.0), now=200.0, lag=600)
    assert sum(shed.values()) == 150


def test_a_lag_bound_also_counts_as_behind() -> None:
    shedder = make(SheddingPolicy(enabled=True, max_age_s=60.0, max_lag=1000))
    _, shed = run(shedder, batch(100, ts_in=9.9), now=10.0, lag=500)
    assert not shed
    _, shed = run(shedder, batch(100, ts_in=10.0), now=10.2, lag=5000)
    assert sum(shed.values()) == 30


def test_the_fraction_changes_at_most_every_adapt_interval() -> None:
    shedder = make(ON)
    for i in range(20):
        run(shedder, batch(10, ts_in=0.0), now=10.0 + i * 0.001)
    assert shedder.keep_fraction == pytest.approx(0.7)


def test_a_draining_backlog_holds_the_fraction() -> None:
    shedder = make(ON)
    run(shedder, batch(10, ts_in=0.0), now=5.0)  # 5 s late: cut
    assert shedder.keep_fraction == pytest.approx(0.7)
    for step in range(1, 10):  # still late, but less and less
        now = 5.0 + step * 0.2
        run(shedder, batch(10, ts_in=now - 5.0 + step * 0.4), now=now)
    assert shedder.keep_fraction == pytest.approx(0.7)
    run(shedder, batch(10, ts_in=0.0), now=8.0)  # worse again: cut
    assert shedder.keep_fraction == pytest.approx(0.49)


def test_records_that_are_not_json_objects_are_kept_for_the_stage_to_reject() -> None:
    shedder = make(SheddingPolicy(enabled=True, min_keep=0.02, min_backlog=1))
    for step in range(1, 20):
        keep, _ = shedder.select([0.0] * 100, 100.0 + step, lambda i: None)
        assert all(keep)
