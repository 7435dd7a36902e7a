"""The simulated crowd: populations, presets, clocks, and driving a pool."""

from __future__ import annotations

import asyncio
import random
import statistics
from dataclasses import dataclass, field, replace

import pytest

from channels.records import NA_TAG
from pe.annotator.clock import LoopClock, VirtualClock
from pe.annotator.crowd import GoldItem, SimulatedCrowd
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.pool import Effect, Finished, Left, PoolConfig, Recruit, RetainerPool
from pe.annotator.population import PRESETS, SimulatedWorker


@dataclass(frozen=True)
class _Item:
    truth: str | None = "yes"
    tags: list[str] = field(default_factory=lambda: ["yes", "no"])


def test_a_worker_answers_with_its_accuracy_and_latency() -> None:
    rng = random.Random(3)
    worker = SimulatedWorker("w", mean_s=10.0, std_s=5.0, accuracy=0.8)
    answers = [worker.answer("yes", ["yes", "no"], rng) for _ in range(5000)]
    assert answers.count("yes") / len(answers) == pytest.approx(0.8, abs=0.02)
    assert worker.answer(None, ["yes", "no"], rng) is None
    latencies = [worker.latency(rng) for _ in range(20000)]
    assert statistics.fmean(latencies) == pytest.approx(10.0, rel=0.05)
    assert statistics.stdev(latencies) == pytest.approx(5.0, rel=0.1)
    # a task of 5 records takes 5 times as long
    five = [worker.latency(rng, records=5) for _ in range(20000)]
    assert statistics.fmean(five) == pytest.approx(50.0, rel=0.05)


def test_the_medical_preset_matches_the_deployment_statistics() -> None:
    """CLAMShell section 2.1 / figure 2: per-worker mean latency median ~4 min, 90th
    percentile ~1.1 h; per-worker std median ~2 min, 90th percentile ~3 h; fastest
    worker ~28.5 s; recruitment at least 5 min, median 36 min."""
    model = PRESETS["medical"]
    rng = random.Random(1)
    workers = [model.draw(f"w{i}", rng) for i in range(4000)]
    means = sorted(w.mean_s for w in workers)
    stds = sorted(w.std_s for w in workers)
    assert statistics.median(means) == pytest.approx(240.0, rel=0.1)
    assert means[int(0.9 * len(means))] == pytest.approx(3960.0, rel=0.25)
    assert 28.5 <= means[0] < 35.0
    assert statistics.median(stds) == pytest.approx(120.0, rel=0.15)
    assert 2 * 3600 < stds[int(0.9 * len(stds))] < 4 * 3600
    recruits = [model.recruit_latency(rng) for _ in range(4000)]
    assert min(recruits) >= 300.0
    assert statistics.median(recruits) == pytest.approx(2160.0, rel=0.05)


def test_a_seed_reproduces_the_population() -> None:
    model = PRESETS["live"]
    first = [model.draw(str(i), random.Random(7)) for i in range(3)]
    again = [model.draw(str(i), random.Random(7)) for i in range(3)]
    assert first == again


def _guard(
    clock: VirtualClock, config: PoolConfig, gold: list[GoldItem] | None = None
) -> tuple[LifeGuard, list[Finished]]:
    finished: list[Finished] = []
    guard = LifeGuard(RetainerPool(config), clock, on_finished=finished.append, gold=gold)
    return guard, finished


def test_the_simulated_crowd_fills_the_pool_and_labels_through_the_worker_api() -> None:
    clock = VirtualClock()
    guard, finished = _guard(clock, PoolConfig(target_size=4, votes=3))
    crowd = SimulatedCrowd(PRESETS["demo"], clock, seed=2)
    guard.start(crowd)
    clock.run(until=60.0)  # recruitment takes seconds of virtual time
    assert len(guard.pool.available) == 4
    for i in range(20):
        guard.submit(f"t{i}", _Item("yes" if i % 2 else "no"))
    clock.run(until=3600.0, stop=lambda: len(finished) == 20)
    assert len(finished) == 20
    for done in finished:
        assert len({v.worker_id for v in done.task.answers}) == 3
        assert all(v.value in ("yes", "no") for v in done.task.answers)
    truth_votes = sum(v.value == d.task.payload.truth for d in finished for v in d.task.answers)
    assert truth_votes / 60 > 0.6  # demo workers are mostly right
    guard.stop()


def test_qualification_admits_only_workers_who_answer_the_gold_items_right() -> None:
    clock = VirtualClock()
    gold = [GoldItem(f"g{i}", "text", "q?", ["yes", "no"], "yes") for i in range(5)]
    guard, _ = _guard(clock, PoolConfig(target_size=6, qualification=3), gold)
    crowd = SimulatedCrowd(PRESETS["demo"], clock, seed=4)
    guard.start(crowd)
    clock.run(until=600.0)
    pool = guard.pool
    assert len(pool.available) == 6 and pool.qualifying == 0
    # some demo workers (accuracy ~0.86) fail three items; each is replaced
    assert pool.counts["recruited"] > 6
    assert crowd.members.keys() == pool.workers.keys()


def test_vanished_workers_are_noticed_and_replaced() -> None:
    clock = VirtualClock()
    finished: list[Finished] = []
    effects: list[Effect] = []
    guard = LifeGuard(
        RetainerPool(PoolConfig(target_size=5, heartbeat_timeout_s=60.0)),
        clock,
        on_finished=finished.append,
        observe=effects.append,
    )
    model = replace(PRESETS["live"], vanish_per_hour=10.0)  # one in six minutes
    crowd = SimulatedCrowd(model, clock, seed=5, heartbeat_s=15.0)
    guard.start(crowd)
    for i in range(400):
        guard.submit(f"t{i}", _Item())
    clock.run(until=8 * 3600.0, stop=lambda: len(finished) == 400)
    assert len(finished) == 400  # nothing lost to workers who vanished mid-task
    vanished = [e for e in effects if isinstance(e, Left) and e.reason == "vanished"]
    assert len(vanished) >= 3
    # each one was noticed by the missing heartbeats and a replacement asked for
    assert sum(e.count for e in effects if isinstance(e, Recruit)) == 5 + len(vanished)


def test_no_label_when_the_truth_is_unknown() -> None:
    clock = VirtualClock()
    guard, finished = _guard(clock, PoolConfig(target_size=1))
    guard.start(SimulatedCrowd(PRESETS["demo"], clock, seed=1))
    guard.submit("t", _Item(truth=None))
    clock.run(until=600.0, stop=lambda: bool(finished))
    assert [v.value for v in finished[0].task.answers] == [NA_TAG]


async def test_the_loop_clock_runs_speed_times_faster_than_real_time() -> None:
    clock = LoopClock(speed=100.0)
    fired = asyncio.Event()
    clock.call_later(2.0, fired.set)  # two virtual seconds: 20 ms
    await asyncio.wait_for(fired.wait(), timeout=5)
    assert clock.now() >= 2.0
    with pytest.raises(ValueError, match="speed"):
        LoopClock(speed=0)


def test_the_virtual_clock_runs_callbacks_in_time_order() -> None:
    clock = VirtualClock()
    seen: list[tuple[float, str]] = []
    clock.call_later(5.0, lambda: seen.append((clock.now(), "b")))
    clock.call_later(1.0, lambda: seen.append((clock.now(), "a")))
    cancelled = clock.call_later(3.0, lambda: seen.append((clock.now(), "x")))
    cancelled.cancel()
    clock.call_later(5.0, lambda: seen.append((clock.now(), "c")))
    clock.run(until=4.0)
    assert seen == [(1.0, "a")] and clock.now() == 4.0
    clock.run()
    assert seen == [(1.0, "a"), (5.0, "b"), (5.0, "c")]
