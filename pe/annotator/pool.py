"""The CLAMShell retainer pool: workers, tasks, scheduling, mitigation, maintenance.

Pure logic: no I/O and no clock (every call takes ``now``). Calls change the state
and queue *effects* (offer a task, terminate or release a worker, recruit, a task or
batch finished) that the caller drains with :meth:`RetainerPool.drain` and carries
out; :mod:`pe.annotator.lifeguard` does that for live and simulated crowds alike.

Rules (CLAMShell, sections 3-4):

- A worker joins, passes a qualification (``qualification`` gold items right) and is
  then *available* or *working* on exactly one assignment. A worker whose last
  heartbeat is older than ``heartbeat_timeout_s`` has vanished: removed, and their
  assignment returns to the queue unpaid.
- The pool keeps ``target_size`` workers (plus one per worker marked for release) by
  asking for recruits in the background.
- Queue: tasks wait by priority (higher first), then age (older first). At most
  ``capacity`` tasks may wait unstarted; when a new one would pass that, the
  lowest-priority, oldest waiting task is shed (the new one, if its priority is
  lower than all of theirs). A job's waiting tasks can be withdrawn. Both are
  reported as :class:`Shed` effects; tasks someone is working on are never shed.
- Scheduler: unassigned tasks go to available workers at once, in queue order. In
  ``batch`` mode only the oldest unfinished batch is assignable; in ``stream`` mode
  every task is.
- Straggler mitigation: an available worker with no unassigned task left gets a
  duplicate of a random active task they have not held. A task needs ``votes``
  answers from distinct workers and stays active until it has them; mitigation adds
  one worker beyond those still needed, never more. When a task has its answers, the
  other assignments are terminated, paid, and their workers reassigned.
- Pool maintenance: after each assignment ends, a worker whose latency per label is
  significantly above the rule's threshold (:class:`MaintenanceRule`), or whose
  accuracy the quality judge finds significantly below its bar, is marked; a
  replacement is recruited, and a marked worker (the inaccurate first, then the
  slowest) is released when a new worker becomes available, so the pool never waits
  for recruitment. Quality thus joins latency in maintenance's objective (CLAMShell,
  section 7).

With a quality judge (:class:`Judge`, the quality assurance loop):

- Adaptive redundancy: when an ``adaptive`` task has the answers it asked for, the
  judge decides whether it needs one more (its answers disagree) or is finished.
- Gold questions: at rate ``gold_rate`` an assignment of queued work is a gold task
  instead (a question with a known answer, from the judge), so that share of the
  answers bought is gold, however long workers wait between tasks. Gold tasks
  are theirs alone: never duplicated, shed or handed to anyone else.
- Routing (``routing``): each queued task goes to the available worker the judge
  rates best at its topic (user-specific task assignment, when several classifiers
  share the pool); without it, to the worker available longest.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sortedcontainers import SortedKeyList

from pe.annotator.costs import CostLedger
from pe.annotator.latency import MaintenanceRule, WorkerLatency

__all__ = [
    "AnswerOutcome",
    "BatchDone",
    "Effect",
    "Finished",
    "Judge",
    "Left",
    "Offer",
    "PoolConfig",
    "PoolTask",
    "PoolWorker",
    "Recruit",
    "Release",
    "RetainerPool",
    "Shed",
    "Terminate",
    "Vote",
]

Mode = Literal["stream", "batch"]
Mark = Literal["slow", "low_quality"]
AnswerOutcome = Literal["vote", "terminated", "rejected"]
#: A label (tag), a count, or a list of distinct things: the pool does not look.
AnswerValue = str | int | tuple[str, ...]
#: How many terminated assignments per worker are remembered to tell a late answer
#: (paid, not a vote) from one that was never theirs.
_TERMINATED_MEMORY = 64
#: A task's place in an order of the queue: priority, age, submission.
_Order = tuple[int, float, int]


@dataclass(frozen=True)
class PoolConfig:
    target_size: int
    votes: int = 1  #: answers each task needs (quality-control redundancy)
    mitigation: bool = True
    mode: Mode = "stream"
    heartbeat_timeout_s: float = 60.0
    qualification: int = 0  #: gold items a new worker must answer right
    maintenance: MaintenanceRule | None = None
    pay_per_minute: float = 0.05
    pay_per_record: float = 0.02
    #: Most tasks waiting unstarted (None: no bound).
    capacity: int | None = None
    #: Share of assignments that are gold questions (needs a judge).
    gold_rate: float = 0.0
    #: Send each task to the available worker the judge rates best at its topic.
    routing: bool = False


@dataclass(frozen=True)
class Vote:
    worker_id: str
    value: AnswerValue
    seconds: float  #: the assignment's latency


@dataclass
class PoolTask:
    task_id: str
    payload: Any
    submitted: float
    votes: int
    size: int = 1  #: records in the task (latency and pay are per record)
    batch: str | None = None
    job: str = "pool"
    priority: int = 5
    paid: int = 0  #: records of work paid for this task, terminated ones included
    topic: str | None = None  #: what skill it needs (a classifier), for the judge
    adaptive: bool = False  #: the judge may ask for more answers than ``votes``
    gold: bool = False  #: a gold question, for the one worker it was made for
    answers: list[Vote] = field(default_factory=list)
    active: dict[str, float] = field(default_factory=dict)  #: worker -> assignment start
    seen: set[str] = field(default_factory=set)
    #: Order of submission to this pool (ties of priority and age keep it).
    seq: int = field(default=0, compare=False, repr=False)

    @property
    def open_slots(self) -> int:
        """Assignments still to make before counting duplicates."""
        return self.votes - len(self.answers) - len(self.active)

    @property
    def unstarted(self) -> bool:
        return not self.answers and not self.active

    def order(self) -> _Order:
        """Queue order: higher priority first, then older first."""
        return (-self.priority, self.submitted, self.seq)

    def shed_order(self) -> _Order:
        """Shedding order: lower priority first, then older first."""
        return (self.priority, self.submitted, self.seq)


@dataclass
class PoolWorker:
    worker_id: str
    joined: float
    last_seen: float
    qualified: bool
    task_id: str | None = None
    available_since: float | None = None
    #: Why maintenance will release the worker once a replacement is available.
    marked: Mark | None = None
    latency: WorkerLatency = field(default_factory=WorkerLatency)
    terminated: deque[str] = field(default_factory=lambda: deque(maxlen=_TERMINATED_MEMORY))
    #: Restored after a restart and not heard from since (see RetainerPool.restore).
    away: bool = False

    @property
    def idle(self) -> bool:
        """Qualified, here, and holding no assignment."""
        return self.qualified and not self.away and self.task_id is None


@dataclass(frozen=True)
class Offer:
    worker_id: str
    task: PoolTask
    duplicate: bool  #: a straggler-mitigation copy of an active task


@dataclass(frozen=True)
class Terminate:
    worker_id: str
    task_id: str


@dataclass(frozen=True)
class Release:
    worker_id: str
    reason: Literal["operator", "slow", "low_quality"] = "operator"


@dataclass(frozen=True)
class Left:
    worker_id: str
    reason: Literal["left", "vanished", "failed_qualification"]


@dataclass(frozen=True)
class Recruit:
    count: int


@dataclass(frozen=True)
class Finished:
    task: PoolTask
    seconds: float  #: from submission to the last needed answer


@dataclass(frozen=True)
class Shed:
    """A waiting task left the queue unanswered: the queue was full, or its job
    withdrew it."""

    task: PoolTask
    reason: Literal["queue_full", "withdrawn"]


@dataclass(frozen=True)
class BatchDone:
    batch: str
    seconds: float  #: from the batch's first submission to its last task finished
    tasks: int


Effect = Offer | Terminate | Release | Left | Recruit | Finished | BatchDone | Shed


class Judge(Protocol):
    """The quality assurance loop, as the pool sees it."""

    def more_answers(self, task: PoolTask, limit: int) -> bool:
        """Should ``task`` (adaptive, with all the answers it asked for) get another?
        ``limit``: the most answers it can have."""

    def skill(self, worker_id: str, topic: str | None) -> float:
        """How good ``worker_id`` is at ``topic`` (higher is better)."""

    def low_quality(self, worker_id: str) -> bool:
        """Is the worker significantly below the quality bar?"""

    def gold_task(self, worker_id: str, now: float) -> PoolTask | None:
        """A gold question ``worker_id`` has not seen, or None."""


@dataclass
class _Batch:
    submitted: float
    left: int
    tasks: int


class RetainerPool:
    def __init__(
        self, config: PoolConfig, rng: random.Random | None = None, judge: Judge | None = None
    ) -> None:
        if config.votes < 1 or config.target_size < 1:
            raise ValueError("votes and target_size must be at least 1")
        if (config.gold_rate > 0 or config.routing) and judge is None:
            raise ValueError("gold questions and routing need a quality judge")
        self.config = config
        self.judge = judge
        self.workers: dict[str, PoolWorker] = {}
        self.tasks: OrderedDict[str, PoolTask] = OrderedDict()  #: by submission
        self.recruiting = 0  #: recruits asked for and not arrived
        self.ledger = CostLedger(config.pay_per_minute, config.pay_per_record)
        self.counts = {
            "duplicates": 0,
            "terminations": 0,
            "releases": 0,
            "recruited": 0,
            "shed": 0,
            "gold": 0,
            "extra_answers": 0,
        }
        self._batches: OrderedDict[str, _Batch] = OrderedDict()
        self._effects: list[Effect] = []
        self._rng = rng or random.Random(0)
        # The queue kept in order as tasks change, so that an answer or a new task
        # costs O(log n) rather than a scan of every task (a pool of hundreds of
        # people with thousands of tasks queued spent its time in such scans):
        # tasks that still need a worker, tasks nobody has started, and tasks that
        # may get a straggler duplicate (every slot taken, no duplicate yet).
        self._open: SortedKeyList[PoolTask, _Order] = SortedKeyList(key=PoolTask.order)
        self._unstarted: SortedKeyList[PoolTask, _Order] = SortedKeyList(key=PoolTask.shed_order)
        self._dupable: SortedKeyList[PoolTask, _Order] = SortedKeyList(key=PoolTask.order)
        #: task -> whether it is in each order (open, unstarted, dupable)
        self._indexed: dict[str, tuple[bool, ...]] = {}
        self._submitted = 0

    # -- views --------------------------------------------------------------------

    @property
    def available(self) -> list[str]:
        return [w.worker_id for w in self.workers.values() if w.idle]

    @property
    def working(self) -> int:
        return sum(w.task_id is not None for w in self.workers.values())

    @property
    def qualifying(self) -> int:
        return sum(not w.qualified for w in self.workers.values())

    @property
    def away(self) -> int:
        """Restored workers that have not come back yet."""
        return sum(w.away for w in self.workers.values())

    @property
    def waiting(self) -> int:
        """Tasks that still need a worker assigned."""
        return len(self._open)

    def drain(self) -> list[Effect]:
        """The effects queued since the last call, in order."""
        effects, self._effects = self._effects, []
        return effects

    # -- workers ------------------------------------------------------------------

    def join(self, worker_id: str, now: float) -> None:
        """A worker arrives (a recruit, or anyone the platform sends)."""
        if worker_id in self.workers:
            self.heartbeat(worker_id, now)
            return
        if self.recruiting:
            self.recruiting -= 1
        self.counts["recruited"] += 1
        needs_test = self.config.qualification > 0
        self.workers[worker_id] = PoolWorker(worker_id, now, now, qualified=not needs_test)
        if not needs_test:
            self._became_available(self.workers[worker_id], now)
        self._schedule(now)

    def qualify(self, worker_id: str, correct: int, now: float) -> bool:
        """Record a qualification result: ``correct`` gold items answered right."""
        worker = self.workers.get(worker_id)
        if worker is None or worker.qualified:
            return worker is not None
        if correct < self.config.qualification:
            del self.workers[worker_id]
            self._effects.append(Left(worker_id, "failed_qualification"))
            self._recruit()
            return False
        worker.qualified = True
        worker.last_seen = now
        self._became_available(worker, now)
        self._schedule(now)
        return True

    def heartbeat(self, worker_id: str, now: float) -> bool:
        worker = self.workers.get(worker_id)
        if worker is None:
            return False
        worker.last_seen = max(worker.last_seen, now)
        if worker.away:  # back after a restart: work again
            worker.away = False
            self._became_available(worker, now)
            self._schedule(now)
        return True

    def restore(self, workers: Iterable[PoolWorker], now: float) -> list[str]:
        """Take back qualified workers the pool had before a restart; their ids.

        They keep their latency records and marks but are *away* (offered nothing)
        until they join or send a heartbeat; one silent for the heartbeat timeout
        vanishes like any other. Meanwhile they count toward the target size, so the
        pool does not recruit replacements for workers about to return.
        """
        restored = []
        for worker in workers:
            if not worker.qualified or worker.worker_id in self.workers:
                continue
            worker.away, worker.task_id, worker.available_since = True, None, None
            worker.last_seen = now
            self.workers[worker.worker_id] = worker
            restored.append(worker.worker_id)
        return restored

    def leave(self, worker_id: str, now: float) -> None:
        self._remove(worker_id, now, "left")
        self._schedule(now)

    def expire(self, now: float) -> list[str]:
        """Remove workers silent for longer than the heartbeat timeout."""
        cutoff = now - self.config.heartbeat_timeout_s
        gone = [w.worker_id for w in self.workers.values() if w.last_seen < cutoff]
        for worker_id in gone:
            self._remove(worker_id, now, "vanished")
        if gone:
            self._schedule(now)
        return gone

    def release(self, worker_id: str, now: float) -> None:
        """Dismiss a worker (maintenance, or an operator); their current work is paid."""
        self._release(worker_id, now)
        self._schedule(now)

    # -- tasks --------------------------------------------------------------------

    def submit(
        self,
        task_id: str,
        payload: Any,
        now: float,
        *,
        size: int = 1,
        votes: int | None = None,
        batch: str | None = None,
        job: str = "pool",
        priority: int = 5,
        submitted: float | None = None,
        topic: str | None = None,
        adaptive: bool = False,
    ) -> bool:
        """Queue a task; an id already queued is ignored (returns False).

        ``submitted``: when the task first entered a queue (its age after a restart).
        Returns False also when the queue is full and the task is the one shed.
        """
        if task_id in self.tasks:
            return False
        task = PoolTask(
            task_id,
            payload,
            now if submitted is None else submitted,
            votes or self.config.votes,
            size=size,
            batch=batch,
            job=job,
            priority=priority,
            topic=topic,
            adaptive=adaptive,
            seq=self._submitted,
        )
        self._submitted += 1
        if not self._make_room(task):
            return False
        self.tasks[task_id] = task
        self._index(task)
        if batch is not None:
            state = self._batches.setdefault(batch, _Batch(now, 0, 0))
            state.left += 1
            state.tasks += 1
        self._schedule(now)
        return True

    def withdraw(self, job: str) -> int:
        """Take ``job``'s waiting tasks out of the queue; returns how many."""
        gone = [t for t in self.tasks.values() if t.job == job and t.unstarted]
        for task in gone:
            self._drop(task, "withdrawn")
        return len(gone)

    def answer(self, worker_id: str, task_id: str, value: AnswerValue, now: float) -> AnswerOutcome:
        """A worker's answer: a vote if the assignment is theirs and still open."""
        worker = self.workers.get(worker_id)
        if worker is None:
            return "rejected"
        worker.last_seen = max(worker.last_seen, now)
        if worker.task_id != task_id:
            return "terminated" if task_id in worker.terminated else "rejected"
        task = self.tasks[task_id]
        started = task.active.pop(worker_id)
        seconds = now - started
        task.answers.append(Vote(worker_id, value, seconds))
        worker.latency.record_completed(seconds / task.size)
        self.ledger.work(task.job, task.size, worker_id)
        task.paid += task.size
        worker.task_id = None
        self._became_available(worker, now)
        if len(task.answers) >= task.votes and self._wants_more(task):
            task.votes += 1
            self.counts["extra_answers"] += 1
        if len(task.answers) >= task.votes:
            self._finish(task, worker, now)
        self._index(task)
        self._maintain(worker, now)
        self._schedule(now)
        return "vote"

    # -- reporting ----------------------------------------------------------------

    def costs(self, now: float) -> dict[str, object]:
        """The ledger's report, with waiting time up to ``now`` paid."""
        for worker in self.workers.values():
            self._settle_wait(worker, now)
            if worker.idle:
                worker.available_since = now
        return self.ledger.report()

    def earnings(self, worker_id: str, now: float) -> dict[str, float | int]:
        """What ``worker_id`` has earned by ``now`` (also after they left the pool)."""
        worker = self.workers.get(worker_id)
        unsettled = 0.0
        if worker is not None and worker.available_since is not None:
            unsettled = now - worker.available_since
        return self.ledger.earnings(worker_id, unsettled)

    def mean_pool_latency(self) -> float | None:
        """Mean per-label latency of the current workers' completed tasks (MPL)."""
        values = [x for w in self.workers.values() for x in w.latency.completed]
        return sum(values) / len(values) if values else None

    # -- internals ----------------------------------------------------------------

    def _became_available(self, worker: PoolWorker, now: float) -> None:
        worker.available_since = now

    def _wants_more(self, task: PoolTask) -> bool:
        # No more answers than distinct workers the pool keeps: a task asking for
        # one nobody can give would never finish.
        limit = self.config.target_size
        return (
            task.adaptive
            and self.judge is not None
            and task.votes < limit
            and self.judge.more_answers(task, limit)
        )

    def _release(self, worker_id: str, now: float) -> None:
        worker = self.workers.get(worker_id)
        if worker is None:
            return
        if worker.task_id is not None:
            self._terminate(worker, self.tasks[worker.task_id], now, finisher=None)
        self._settle_wait(worker, now)
        del self.workers[worker_id]
        self.counts["releases"] += 1
        self._effects.append(Release(worker_id, worker.marked or "operator"))
        self._recruit()

    def _release_replaced(self, now: float) -> None:
        """Release marked workers, the inaccurate then the slowest first, once others
        fill the target size."""
        marked = [w for w in self.workers.values() if w.marked]
        if not marked:  # only maintenance marks workers
            return
        rule = self.config.maintenance

        def order(w: PoolWorker) -> tuple[bool, float]:
            estimate = rule.estimate(w.latency) if rule is not None else None
            return (w.marked == "low_quality", estimate.mean if estimate else 0.0)

        marked.sort(key=order, reverse=True)
        replacements = sum(w.qualified and not w.marked for w in self.workers.values())
        for worker in marked[: max(replacements - self.config.target_size + len(marked), 0)]:
            self._release(worker.worker_id, now)

    def _settle_wait(self, worker: PoolWorker, now: float) -> None:
        if worker.available_since is not None:
            self.ledger.wait(now - worker.available_since, worker.worker_id)
            worker.available_since = None

    def _assign(self, worker: PoolWorker, task: PoolTask, now: float, duplicate: bool) -> None:
        self._settle_wait(worker, now)
        task.active[worker.worker_id] = now
        task.seen.add(worker.worker_id)
        worker.task_id = task.task_id
        self._index(task)
        if duplicate:
            self.counts["duplicates"] += 1
        self._effects.append(Offer(worker.worker_id, task, duplicate))

    def _make_room(self, task: PoolTask) -> bool:
        """Shed the lowest-priority, oldest waiting task if the queue is full; False
        if that is ``task`` itself."""
        capacity = self.config.capacity
        if capacity is None or len(self._unstarted) < capacity:
            return True
        victim = self._unstarted[0]
        if task.priority < victim.priority:
            self.counts["shed"] += 1
            self._effects.append(Shed(task, "queue_full"))
            return False
        self._drop(victim, "queue_full")
        return True

    def _drop(self, task: PoolTask, reason: Literal["queue_full", "withdrawn"]) -> None:
        del self.tasks[task.task_id]
        self._index(task)
        if task.batch is not None:
            state = self._batches[task.batch]
            state.left -= 1
            state.tasks -= 1
            if state.left == 0:
                del self._batches[task.batch]
        if reason == "queue_full":
            self.counts["shed"] += 1
        self._effects.append(Shed(task, reason))

    def _index(self, task: PoolTask) -> None:
        """Put ``task`` in the queue's orders, or take it out, as its slots now say
        (called after every change of its assignments, answers or presence)."""
        live = not task.gold and self.tasks.get(task.task_id) is task
        now = (
            live and task.open_slots > 0,
            live and task.unstarted,
            live and task.open_slots == 0 and bool(task.active),
        )
        was = self._indexed.pop(task.task_id, (False, False, False))
        for order, member, was_member in zip(
            (self._open, self._unstarted, self._dupable), now, was, strict=True
        ):
            if member != was_member:
                (order.add if member else order.remove)(task)
        if any(now):
            self._indexed[task.task_id] = now

    def _batch_filter(self) -> str | None:
        """In batch mode, the only batch whose tasks are assignable (with tasks of no
        batch); None: every task is."""
        if self.config.mode == "batch" and self._batches:
            return next(iter(self._batches))
        return None

    def _schedule(self, now: float) -> None:
        self._release_replaced(now)
        idle = sorted(
            (w for w in self.workers.values() if w.idle), key=lambda w: w.available_since or 0.0
        )
        if not idle or not self.tasks:
            return
        current = self._batch_filter()

        def assignable(task: PoolTask) -> bool:
            return current is None or task.batch in (current, None)

        position = 0
        while idle and position < len(self._open):
            task = self._open[position]
            while assignable(task) and idle and task.open_slots > 0:
                fresh = [w for w in idle if w.worker_id not in task.seen]
                if not fresh:
                    break
                worker = self._best(fresh, task)
                idle.remove(worker)
                # The gold roll is made per assignment, not per idle worker and pass:
                # a worker idle through many passes would else be tested far more
                # often than ``gold_rate``, spending the crowd's answers on gold.
                if not self._give_gold(worker, now):
                    self._assign(worker, task, now, duplicate=False)
            if task.open_slots > 0:
                position += 1  # else it left the order: the next task took its place
        if not idle or not self.config.mitigation:
            return
        for worker in idle:
            # Straggler mitigation: one extra worker per task at a time, random task.
            candidates = [
                t for t in self._dupable if assignable(t) and worker.worker_id not in t.seen
            ]
            if candidates:
                top = max(t.priority for t in candidates)
                candidates = [t for t in candidates if t.priority == top]
                self._assign(worker, self._rng.choice(candidates), now, duplicate=True)

    def _best(self, workers: list[PoolWorker], task: PoolTask) -> PoolWorker:
        """The worker for ``task``: the judge's best at its topic when routing, else the
        one available longest (``workers`` is in that order; ties keep it)."""
        judge = self.judge
        if not self.config.routing or judge is None or len(workers) == 1:
            return workers[0]
        return max(workers, key=lambda w: judge.skill(w.worker_id, task.topic))

    def _give_gold(self, worker: PoolWorker, now: float) -> bool:
        """Hand ``worker`` a gold question, at the gold rate; whether it did."""
        if self.judge is None or self._rng.random() >= self.config.gold_rate:
            return False
        task = self.judge.gold_task(worker.worker_id, now)
        if task is None:
            return False
        task.gold, task.votes = True, 1
        self.tasks[task.task_id] = task
        self.counts["gold"] += 1
        self._assign(worker, task, now, duplicate=False)
        return True

    def _finish(self, task: PoolTask, finisher: PoolWorker, now: float) -> None:
        for worker_id in list(task.active):
            self._terminate(self.workers[worker_id], task, now, finisher=finisher)
        del self.tasks[task.task_id]
        self._index(task)
        self._effects.append(Finished(task, now - task.submitted))
        if task.batch is not None:
            state = self._batches[task.batch]
            state.left -= 1
            if state.left == 0:
                del self._batches[task.batch]
                self._effects.append(BatchDone(task.batch, now - state.submitted, state.tasks))

    def _terminate(
        self, worker: PoolWorker, task: PoolTask, now: float, finisher: PoolWorker | None
    ) -> None:
        """End ``worker``'s assignment of ``task``; the work is paid all the same."""
        task.active.pop(worker.worker_id, None)
        if task.gold:
            self.tasks.pop(task.task_id, None)  # made for this worker alone
        self._index(task)
        worker.task_id = None
        worker.terminated.append(task.task_id)
        self.ledger.work(task.job, task.size, worker.worker_id, terminated=True)
        task.paid += task.size
        self.counts["terminations"] += 1
        self._effects.append(Terminate(worker.worker_id, task.task_id))
        if finisher is not None:
            # TermEst needs who beat this worker, and how fast they usually are.
            worker.latency.record_terminated(finisher.latency.mean_completed or 0.0)
            self._became_available(worker, now)
            self._maintain(worker, now)

    def _maintain(self, worker: PoolWorker, now: float) -> None:
        rule = self.config.maintenance
        if worker.marked or worker.worker_id not in self.workers:
            return
        if self.judge is not None and self.judge.low_quality(worker.worker_id):
            worker.marked = "low_quality"
        elif rule is not None and rule.is_slow(worker.latency):
            worker.marked = "slow"
        if worker.marked:
            self._recruit()

    def _recruit(self) -> None:
        marked = sum(w.marked is not None for w in self.workers.values())
        unmarked = len(self.workers) - marked
        deficit = self.config.target_size - unmarked - self.recruiting
        if deficit > 0:
            self.recruiting += deficit
            self._effects.append(Recruit(deficit))

    def _remove(self, worker_id: str, now: float, reason: Literal["left", "vanished"]) -> None:
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        task = self.tasks.get(worker.task_id) if worker.task_id is not None else None
        if task is not None and task.gold:
            del self.tasks[task.task_id]  # made for this worker alone
        elif task is not None:
            # Unfinished work returns to the queue, unpaid.
            task.active.pop(worker_id, None)
            self._index(task)
        self._settle_wait(worker, now)
        self._effects.append(Left(worker_id, reason))
        self._recruit()

    def fill(self) -> None:
        """Ask for recruits up to the target size (at start, and after a config change)."""
        self._recruit()
