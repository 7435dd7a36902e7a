"""The retainer pool's rules: scheduling, straggler mitigation, maintenance, costs."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pe.annotator.latency import MaintenanceRule
from pe.annotator.pool import (
    BatchDone,
    Effect,
    Finished,
    Left,
    Offer,
    PoolConfig,
    Recruit,
    Release,
    RetainerPool,
    Shed,
    Terminate,
)


def _pool(workers: int = 0, *, target: int | None = None, **config: object) -> RetainerPool:
    pool = RetainerPool(
        PoolConfig(target_size=target or max(workers, 1), **config),  # type: ignore[arg-type]
        random.Random(1),
    )
    for i in range(workers):
        pool.join(f"w{i}", 0.0)
    pool.drain()
    return pool


def _offers(effects: list[Effect]) -> list[tuple[str, str, bool]]:
    return [(e.worker_id, e.task.task_id, e.duplicate) for e in effects if isinstance(e, Offer)]


def test_unassigned_tasks_go_to_available_workers_at_once_oldest_first() -> None:
    pool = _pool(3, votes=2, mitigation=False)
    pool.submit("t1", None, 1.0)
    pool.submit("t2", None, 1.0)
    # t1 needs two distinct workers, then t2 gets the third
    assert _offers(pool.drain()) == [("w0", "t1", False), ("w1", "t1", False)] + [
        ("w2", "t2", False)
    ]
    assert pool.available == [] and pool.waiting == 1  # t2 still needs a worker
    assert pool.answer("w0", "t1", "yes", 3.0) == "vote"
    # w0 is free: it gets t2, never t1 again
    assert _offers(pool.drain()) == [("w0", "t2", False)]


def test_a_duplicate_task_id_is_queued_once() -> None:
    pool = _pool(0)
    assert pool.submit("t1", None, 0.0)
    assert not pool.submit("t1", None, 0.0)
    assert pool.waiting == 1


def test_idle_workers_get_one_duplicate_of_an_active_task_and_the_first_answer_wins() -> None:
    pool = _pool(3, votes=1)
    pool.submit("t1", "payload", 0.0)
    # w0 gets it, w1 a duplicate; w2 stays idle: one extra worker at a time
    assert _offers(pool.drain()) == [("w0", "t1", False), ("w1", "t1", True)]
    assert pool.available == ["w2"]
    assert pool.answer("w1", "t1", "yes", 4.0) == "vote"
    effects = pool.drain()
    assert Terminate("w0", "t1") in effects
    finished = [e for e in effects if isinstance(e, Finished)]
    assert len(finished) == 1 and finished[0].seconds == 4.0
    assert [v.worker_id for v in finished[0].task.answers] == ["w1"]
    # the terminated work is paid, and the late answer is not a vote
    assert pool.ledger.records["pool"] == 2 and pool.ledger.terminated_records["pool"] == 1
    assert pool.answer("w0", "t1", "no", 5.0) == "terminated"
    assert pool.ledger.records["pool"] == 2
    assert sorted(pool.available) == ["w0", "w1", "w2"]
    assert pool.counts["duplicates"] == 1 and pool.counts["terminations"] == 1


def test_mitigation_is_decoupled_from_redundancy() -> None:
    pool = _pool(5, votes=3)
    pool.submit("t1", None, 0.0)
    offers = _offers(pool.drain())
    # three assignments for three votes, one duplicate, the fifth worker waits
    assert [d for _, _, d in offers] == [False, False, False, True]
    assert pool.available == ["w4"]
    assert pool.answer("w0", "t1", "yes", 1.0) == "vote"
    effects = pool.drain()
    # one answer of three: nothing terminated; w0 (idle) may not hold t1 again
    assert not any(isinstance(e, Terminate | Finished) for e in effects)
    assert pool.tasks["t1"].open_slots == -1  # still one extra beyond the two needed
    # w4 gets no second duplicate while the first is running
    assert _offers(effects) == []
    pool.answer("w1", "t1", "no", 2.0)
    pool.answer("w3", "t1", "yes", 3.0)  # the duplicate's worker answers third
    effects = pool.drain()
    assert Terminate("w2", "t1") in effects
    done = next(e for e in effects if isinstance(e, Finished))
    assert [v.worker_id for v in done.task.answers] == ["w0", "w1", "w3"]


def test_without_mitigation_idle_workers_wait() -> None:
    pool = _pool(3, votes=1, mitigation=False)
    pool.submit("t1", None, 0.0)
    assert _offers(pool.drain()) == [("w0", "t1", False)]
    assert sorted(pool.available) == ["w1", "w2"]


def test_the_duplicated_task_is_chosen_at_random() -> None:
    chosen: Counter[str] = Counter()
    for seed in range(40):
        pool = RetainerPool(PoolConfig(target_size=3, votes=1), random.Random(seed))
        pool.submit("t1", None, 0.0)
        pool.submit("t2", None, 0.0)
        pool.join("a", 0.0)
        pool.join("b", 0.0)
        pool.drain()
        pool.join("c", 1.0)
        (offer,) = [e for e in pool.drain() if isinstance(e, Offer)]
        assert offer.duplicate
        chosen[offer.task.task_id] += 1
    assert set(chosen) == {"t1", "t2"} and min(chosen.values()) >= 10


def test_batch_mode_assigns_the_next_batch_only_when_the_current_one_is_done() -> None:
    pool = _pool(2, votes=1, mode="batch", mitigation=False)
    pool.submit("a1", None, 0.0, batch="A")
    pool.submit("b1", None, 0.0, batch="B")
    assert _offers(pool.drain()) == [("w0", "a1", False)]  # w1 waits: b1 is the next batch
    pool.answer("w0", "a1", "x", 6.0)
    effects = pool.drain()
    assert BatchDone("A", 6.0, 1) in effects
    assert _offers(effects) == [("w1", "b1", False)]


def test_streaming_mode_assigns_across_batches() -> None:
    pool = _pool(2, votes=1, mitigation=False)
    pool.submit("a1", None, 0.0, batch="A")
    pool.submit("b1", None, 0.0, batch="B")
    assert _offers(pool.drain()) == [("w0", "a1", False), ("w1", "b1", False)]


def test_the_pool_recruits_to_its_target_size_and_replaces_who_leaves() -> None:
    pool = RetainerPool(PoolConfig(target_size=3))
    pool.fill()
    assert pool.drain() == [Recruit(3)]
    pool.join("a", 1.0)
    pool.join("b", 1.0)
    pool.fill()
    assert pool.drain() == []  # one recruit is still on its way
    pool.leave("a", 2.0)
    assert Recruit(1) in pool.drain()


def test_a_silent_worker_vanishes_and_their_task_returns_to_the_queue_unpaid() -> None:
    pool = _pool(1, target=2, heartbeat_timeout_s=10.0, mitigation=False)
    pool.submit("t1", None, 0.0)
    pool.drain()
    pool.join("late", 5.0)  # arrives while w0 works: nothing to do yet
    pool.heartbeat("late", 12.0)
    assert pool.expire(11.0) == ["w0"]  # w0's last sign of life was at 0
    effects = pool.drain()
    assert Left("w0", "vanished") in effects and Recruit(1) in effects
    assert _offers(effects) == [("late", "t1", False)]
    assert pool.answer("w0", "t1", "x", 12.0) == "rejected"
    assert pool.ledger.records == {}


def test_a_heartbeat_keeps_a_worker_in_the_pool() -> None:
    pool = _pool(1, heartbeat_timeout_s=10.0)
    assert pool.heartbeat("w0", 8.0)
    assert pool.expire(15.0) == []
    assert not pool.heartbeat("nobody", 8.0)


def test_a_new_worker_works_only_after_passing_the_qualification() -> None:
    pool = _pool(0, target=2, qualification=2)
    pool.submit("t1", None, 0.0)
    pool.join("a", 1.0)
    pool.join("b", 1.0)
    assert _offers(pool.drain()) == [] and pool.qualifying == 2
    assert not pool.qualify("a", 1, 2.0)
    assert pool.drain() == [Left("a", "failed_qualification"), Recruit(1)]
    assert pool.qualify("b", 2, 3.0)
    assert _offers(pool.drain()) == [("b", "t1", False)]


def _maintained(**rule: object) -> RetainerPool:
    return _pool(
        2,
        votes=1,
        mitigation=False,
        maintenance=MaintenanceRule(threshold_s=8.0, **rule),  # type: ignore[arg-type]
    )


def test_maintenance_replaces_a_significantly_slow_worker_in_the_background() -> None:
    pool = _maintained(min_tasks=3)
    now, effects = 0.0, []
    for i, seconds in enumerate((20.0, 22.0, 21.0)):
        pool.submit(f"a{i}", None, now)
        pool.submit(f"b{i}", None, now)
        held = {w: pool.workers[w].task_id for w in ("w0", "w1")}
        pool.answer("w1", str(held["w1"]), "x", now + 2.0)  # w1: 2 s a task
        pool.answer("w0", str(held["w0"]), "x", now + seconds)  # w0: about 21 s a task
        effects += pool.drain()
        now += seconds
    # w0 is marked and a replacement is asked for; w0 keeps working meanwhile
    assert Recruit(1) in effects and pool.workers["w0"].marked
    assert not pool.workers["w1"].marked
    pool.submit("t", None, now)
    pool.submit("u", None, now)
    assert sorted(_offers(pool.drain())) == [("w0", "u", False), ("w1", "t", False)]
    pool.join("fresh", now + 1)
    effects = pool.drain()
    # the replacement arrived: w0 goes, its assignment terminated (and paid) and
    # given to the newcomer
    assert Release("w0", "slow") in effects and Terminate("w0", "u") in effects
    assert ("fresh", "u", False) in _offers(effects)
    assert "w0" not in pool.workers and pool.counts["releases"] == 1
    assert pool.ledger.terminated_records["pool"] == 1


def test_maintenance_needs_evidence_before_releasing() -> None:
    pool = _maintained(min_tasks=3)
    pool.submit("t", None, 0.0)
    pool.drain()
    pool.answer("w0", "t", "x", 60.0)  # one slow task is not enough
    assert not pool.workers["w0"].marked


@pytest.mark.parametrize(("termest", "marked"), [(True, True), (False, False)])
def test_termest_keeps_mitigation_from_hiding_a_slow_worker(termest: bool, marked: bool) -> None:
    """A worker whose every task is finished first by a faster duplicate looks fast
    from completed tasks alone (they have none) unless TermEst estimates the rest."""
    pool = _pool(
        2,
        votes=1,
        maintenance=MaintenanceRule(threshold_s=8.0, min_tasks=3, use_termest=termest),
    )
    now = 0.0
    for i in range(5):
        pool.submit(f"t{i}", None, now)
        offers = _offers(pool.drain())
        fast = next(w for w, _, _ in offers if w == "w1")
        pool.answer(fast, f"t{i}", "x", now + 6.0)  # w1 finishes first: w0 is terminated
        now += 6.0
    pool.drain()
    assert pool.workers["w0"].latency.terminated >= 4
    assert (pool.workers["w0"].marked == "slow") is marked


def test_waiting_is_paid_per_minute_and_work_per_record() -> None:
    pool = _pool(2, votes=1, mitigation=False, pay_per_minute=0.05, pay_per_record=0.02)
    pool.submit("t", None, 60.0, size=5, job="job-1")
    pool.drain()
    pool.answer("w0", "t", "x", 120.0)
    report = pool.costs(180.0)
    # w0 waited 60 s then 60 s; w1 180 s: 5 minutes in all
    assert report["waiting_minutes"] == pytest.approx(5.0)
    assert report["waiting"] == pytest.approx(0.25)
    assert report["work"] == pytest.approx(0.10)  # 5 records
    assert report["jobs"] == {"job-1": {"records": 5, "terminated_records": 0, "cost": 0.1}}


def test_mean_pool_latency_is_per_record() -> None:
    pool = _pool(1, votes=1)
    pool.submit("t", None, 0.0, size=4)
    pool.drain()
    pool.answer("w0", "t", "x", 20.0)
    assert pool.mean_pool_latency() == 5.0


def _shed(effects: list[Effect]) -> list[tuple[str, str]]:
    return [(e.task.task_id, e.reason) for e in effects if isinstance(e, Shed)]


def test_higher_priority_tasks_are_assigned_first_then_older_ones() -> None:
    pool = _pool()
    pool.submit("low", None, 0.0, priority=1)
    pool.submit("mid-old", None, 1.0, priority=5)
    pool.submit("high", None, 2.0, priority=9)
    pool.submit("mid-new", None, 3.0, priority=5)
    for i in range(4):
        pool.join(f"w{i}", 4.0 + i)
    assert [task for _, task, _ in _offers(pool.drain())] == ["high", "mid-old", "mid-new", "low"]


def test_a_full_queue_sheds_the_lowest_priority_oldest_waiting_task() -> None:
    pool = _pool(capacity=3)
    assert pool.submit("a-low", None, 0.0, priority=1)
    assert pool.submit("b-low", None, 1.0, priority=1)
    assert pool.submit("c-mid", None, 2.0, priority=5)
    pool.drain()
    assert pool.submit("d-mid", None, 3.0, priority=5)  # full: the oldest lowest goes
    assert _shed(pool.drain()) == [("a-low", "queue_full")]
    assert not pool.submit("e-lower", None, 4.0, priority=0)  # lower than all: itself
    assert _shed(pool.drain()) == [("e-lower", "queue_full")]
    assert pool.submit("f-low", None, 5.0, priority=1)  # ties: the older one goes
    assert _shed(pool.drain()) == [("b-low", "queue_full")]
    assert set(pool.tasks) == {"c-mid", "d-mid", "f-low"}
    assert pool.counts["shed"] == 3


def test_tasks_being_answered_are_never_shed_and_a_job_can_withdraw_its_waiting_ones() -> None:
    pool = _pool(1, capacity=1)
    pool.submit("working", None, 0.0, priority=0, job="j1")  # w0 takes it
    pool.submit("waiting", None, 1.0, priority=0, job="j1")
    pool.drain()
    assert pool.submit("other", None, 2.0, priority=5, job="j2")
    assert _shed(pool.drain()) == [("waiting", "queue_full")]
    pool.submit("again", None, 3.0, priority=4, job="j1")  # lower than the waiting one
    assert _shed(pool.drain()) == [("again", "queue_full")]
    assert pool.withdraw("j2") == 1
    assert _shed(pool.drain()) == [("other", "withdrawn")]
    assert pool.withdraw("j1") == 0  # "working" is being answered: it stays
    assert set(pool.tasks) == {"working"}


def test_a_task_records_the_work_paid_for_it_duplicates_included() -> None:
    pool = _pool(2, votes=1, mitigation=True)
    pool.submit("t", None, 0.0, size=3)
    pool.answer("w1", "t", "yes", 1.0)  # w1 holds a duplicate and answers first
    finished = [e for e in pool.drain() if isinstance(e, Finished)]
    assert finished[0].task.paid == 6  # 3 records answered + 3 terminated
    assert pool.ledger.job_cost("pool") == pytest.approx(6 * 0.02)


@pytest.mark.parametrize("seed", range(20))
def test_the_queue_stays_in_order_through_any_sequence_of_events(seed: int) -> None:
    """The pool keeps its queue ordered as tasks change (not rescanned per event):
    after every event, no idle worker is left beside a task they could take (or
    duplicate), the waiting count is the tasks that need a worker, and a full queue
    sheds the lowest-priority, oldest task nobody has started."""
    rng = random.Random(seed)
    pool = _pool(0, target=12, capacity=15)
    now, workers, tasks = 0.0, 0, 0
    for _ in range(400):
        now += rng.uniform(0.1, 2.0)
        working = [w for w in pool.workers.values() if w.task_id is not None]
        event = rng.choice(["join", "submit", "submit", "answer", "answer", "leave", "beat"])
        if event == "join" and len(pool.workers) < 12:
            pool.join(f"w{workers}", now)
            workers += 1
        elif event == "submit":
            before = {t.task_id for t in pool.tasks.values() if t.unstarted}
            pool.submit(f"t{tasks}", None, now, votes=rng.randint(1, 3), priority=rng.randint(0, 2))
            tasks += 1
            for shed in (e for e in pool.drain() if isinstance(e, Shed)):
                rivals = [pool.tasks[t] for t in before if t in pool.tasks]
                assert all(
                    (shed.task.priority, shed.task.submitted) <= (t.priority, t.submitted)
                    for t in rivals
                )
            # The cap holds at submission (a task whose worker left waits again).
            assert sum(t.unstarted for t in pool.tasks.values()) <= max(15, len(before))
        elif event == "answer" and working:
            worker = rng.choice(working)
            assert worker.task_id is not None
            pool.answer(worker.worker_id, worker.task_id, "yes", now)
        elif event == "leave" and working:
            pool.leave(rng.choice(working).worker_id, now)
        elif event == "beat":
            # Everyone but one sends a heartbeat; that one may vanish.
            for worker in list(pool.workers.values())[1:]:
                pool.heartbeat(worker.worker_id, now)
            pool.expire(now)
        pool.drain()
        open_tasks = [t for t in pool.tasks.values() if not t.gold and t.open_slots > 0]
        assert pool.waiting == len(open_tasks)
        # Straggler mitigation: every slot taken, no duplicate yet.
        dupable = [t for t in pool.tasks.values() if t.open_slots == 0 and t.active]
        for worker in (w for w in pool.workers.values() if w.idle):
            assert all(worker.worker_id in t.seen for t in open_tasks + dupable)


def test_workers_freed_together_take_the_next_tasks_in_order() -> None:
    pool = _pool(2)
    pool.submit("t1", None, 1.0)
    pool.drain()  # w0 takes t1; w1, idle, gets a duplicate of it
    pool.submit("t2", None, 2.0)
    pool.submit("t3", None, 3.0)
    assert pool.waiting == 2
    pool.answer("w0", "t1", "yes", 4.0)  # w1's duplicate ends with it: both are free
    offers = _offers(pool.drain())
    assert sorted(task for _, task, _ in offers) == ["t2", "t3"] and pool.waiting == 0
