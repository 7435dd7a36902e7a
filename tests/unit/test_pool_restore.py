"""The pool's workers after a restart: written to crowd.pool, restored, and back."""

from __future__ import annotations

import random

from channels.codec import decode, encode
from channels.records import PoolMember
from pe.annotator.clock import VirtualClock
from pe.annotator.crowd import GoldItem, SimulatedCrowd
from pe.annotator.journal import PoolJournal
from pe.annotator.latency import WorkerLatency
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.pool import Finished, Left, Offer, PoolConfig, PoolWorker, Recruit, RetainerPool
from pe.annotator.population import PRESETS


def _worker(worker_id: str, *, qualified: bool = True, slow: bool = False) -> PoolWorker:
    latency = WorkerLatency([2.0, 3.0], 1, [1.5])
    worker = PoolWorker(worker_id, 0.0, 0.0, qualified, latency=latency)
    if slow:
        worker.marked = "slow"
    return worker


def test_restored_workers_are_offered_nothing_until_they_come_back() -> None:
    pool = RetainerPool(PoolConfig(target_size=2, heartbeat_timeout_s=60.0), random.Random(1))
    assert pool.restore([_worker("a", slow=True), _worker("b")], now=100.0) == ["a", "b"]
    pool.fill()
    # They count toward the target size, but a worker marked slow is replaced, as
    # before the restart.
    assert [e for e in pool.drain() if isinstance(e, Recruit)] == [Recruit(1)]
    pool.submit("t1", None, 101.0)
    assert pool.away == 2 and pool.available == [] and pool.waiting == 1
    assert not [e for e in pool.drain() if isinstance(e, Offer)]
    assert pool.heartbeat("a", 102.0)  # back: work at once
    offers = [e for e in pool.drain() if isinstance(e, Offer)]
    assert [(o.worker_id, o.task.task_id) for o in offers] == [("a", "t1")]
    assert pool.away == 1
    # what maintenance knew of them came back with them
    assert pool.workers["a"].latency.completed == [2.0, 3.0]
    assert pool.workers["a"].marked == "slow"


def test_a_restored_worker_who_never_returns_vanishes_and_is_replaced() -> None:
    pool = RetainerPool(PoolConfig(target_size=1, heartbeat_timeout_s=60.0), random.Random(1))
    pool.restore([_worker("a")], now=100.0)
    assert pool.expire(150.0) == []
    assert pool.expire(161.0) == ["a"]
    effects = pool.drain()
    assert Left("a", "vanished") in effects and Recruit(1) in effects


def test_only_qualified_workers_new_to_the_pool_are_restored() -> None:
    pool = RetainerPool(PoolConfig(target_size=3), random.Random(1))
    pool.join("here", 0.0)
    restored = pool.restore([_worker("here"), _worker("quiz", qualified=False)], now=1.0)
    assert restored == []
    assert not pool.workers["here"].away


def test_the_journal_writes_changes_and_departures_and_restores_them() -> None:
    pool = RetainerPool(PoolConfig(target_size=2, mitigation=False), random.Random(1))
    pool.join("a", 0.0)
    pool.join("b", 0.0)
    journal = PoolJournal()
    first = journal.changes(pool.workers, 1.0)
    assert sorted(m.worker_id for m in first) == ["a", "b"]
    assert journal.changes(pool.workers, 2.0) == []  # nothing changed, nothing written
    pool.submit("t1", None, 2.0)
    worker = next(e.worker_id for e in pool.drain() if isinstance(e, Offer))
    pool.answer(worker, "t1", "yes", 5.0)
    second = journal.changes(pool.workers, 6.0)
    assert [(m.worker_id, m.completed) for m in second] == [(worker, [3.0])]
    pool.leave("b" if worker == "a" else "a", 7.0)
    gone = journal.changes(pool.workers, 8.0)
    assert [(m.worker_id, m.present) for m in gone] == [("b" if worker == "a" else "a", False)]

    # A restarted annotator reads the log (through the wire format) and restores.
    again = PoolJournal()
    for member in [*first, *second, *gone]:
        again.read(decode(PoolMember, encode(member)))
    restored = again.restorable()
    assert [(w.worker_id, w.latency.completed) for w in restored] == [(worker, [3.0])]
    fresh = RetainerPool(PoolConfig(target_size=2), random.Random(1))
    fresh.restore(restored, now=0.0)
    assert again.changes(fresh.workers, 1.0) == []  # nothing to write again


def test_workers_of_a_simulated_crowd_come_back_after_a_restart_without_a_quiz() -> None:
    gold = [GoldItem(f"g{i}", "text", "q?", ["yes", "no"], "yes") for i in range(5)]
    config = PoolConfig(target_size=3, qualification=2, heartbeat_timeout_s=60.0)

    def guard(clock: VirtualClock, finished: list[Finished]) -> LifeGuard:
        return LifeGuard(RetainerPool(config), clock, on_finished=finished.append, gold=gold)

    clock = VirtualClock()
    before = guard(clock, [])
    crowd = SimulatedCrowd(PRESETS["demo"], clock, seed=4)
    before.start(crowd)
    clock.run(until=600.0)
    journal = PoolJournal()
    written = journal.changes(before.pool.workers, clock.now())
    # The newest worker leaves: nobody may get that id after the restart either.
    newest = max(crowd.members, key=lambda w: int(w.split("-")[1]))
    crowd.release(newest)
    before.leave(newest)
    written += journal.changes(before.pool.workers, clock.now())
    members = set(crowd.members)
    before.stop()

    # The restart: a new pool, a new simulator process, the same seed.
    restarted = PoolJournal()
    for member in written:
        restarted.read(member)
    clock = VirtualClock()
    finished: list[Finished] = []
    after = guard(clock, finished)
    returning = after.pool.restore(restarted.restorable(), clock.now())
    assert sorted(returning) == sorted(members) and newest not in returning
    crowd = SimulatedCrowd(PRESETS["demo"], clock, seed=4)
    after.start(crowd, returning)
    clock.run(until=30.0)  # within two heartbeat periods
    assert set(members) <= set(after.pool.available)  # back within a heartbeat period
    clock.run(until=600.0)  # and the replacement of the one who left has qualified
    assert set(members) <= set(after.pool.available)
    assert after.pool.counts["recruited"] == 1  # the returning were not quizzed again
    for i in range(6):
        after.submit(f"t{i}", None)
    clock.run(until=3600.0, stop=lambda: len(finished) == 6)
    assert len(finished) == 6
    # The recruit after the restart got an id nobody had, not even the one who left.
    (new,) = set(crowd.members) - set(members)
    assert new != newest
