"""AIDR's task sampler: pick items for the crowd from a bounded buffer of the latest ones.

Pure logic: no I/O, time and randomness are passed in, so it is unit-tested alone.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pe.common.outcomes import Outcomes
from pe.common.simhash import SignatureSet
from pe.taskgen.budget import AnswerBudget

__all__ = ["Candidate", "ClassifierSampler", "LoadGovernor", "TokenBucket"]

Kind = Literal["active", "passive"]
Strategy = Literal["hybrid", "active", "passive"]
#: Scores candidates: the probability of the most likely tag for each, in order.
Scorer = Callable[[Sequence["Candidate"]], Sequence[float]]


@dataclass(frozen=True)
class Candidate:
    item_id: str
    text: str
    idx: list[int]
    val: list[float]
    sig: int
    truth: dict[str, str]
    ts_in: float | None = None  #: the item's arrival, for its task (Task.ts_in)
    source: str | None = None  #: the item's producer source, for its task


class TokenBucket:
    """At most ``rate_per_s`` tokens a second on average, bursting to ``capacity``."""

    def __init__(self, rate_per_s: float, capacity: float, now: float) -> None:
        self.rate = rate_per_s
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def available(self, now: float) -> int:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return int(self.tokens)

    def take(self, n: int) -> None:
        self.tokens -= n


@dataclass(frozen=True)
class LoadGovernor:
    """Fewer items go to the crowd while its backlog grows (CSP's load adaptability).

    At a backlog (crowd tasks issued by anyone and not yet answered) of ``low`` or
    less nothing changes. Above it, uncertainty picks need a model confidence below
    a cap that falls linearly from 1 to ``floor`` at ``high`` (items the model is
    surer of stay with the machine), and random picks thin out linearly to none at
    ``high`` (they stay uniform, so the learner's held-out labels stay unbiased).
    """

    low: int
    high: int
    floor: float

    def _load(self, backlog: int) -> float:
        if backlog <= self.low:
            return 0.0
        return min((backlog - self.low) / max(self.high - self.low, 1), 1.0)

    def confidence_cap(self, backlog: int) -> float:
        return 1.0 - (1.0 - self.floor) * self._load(backlog)

    def passive_share(self, backlog: int) -> float:
        return 1.0 - self._load(backlog)


class _Share:
    """Whole picks from a share of each round, the fraction carried to the next round.

    Rounding each round alone loses the share when rounds are small: half of a
    one-item round rounds to none, every round. Carried, the picks over any run of
    rounds are within one of the share of their items.
    """

    def __init__(self) -> None:
        self.owed = 0.0  #: what earlier rounds took more (< 0) or less than their share

    def take(self, amount: float) -> int:
        due = amount + self.owed
        whole = math.floor(due + 0.5)
        self.owed = due - whole
        return whole


@dataclass
class _Issued:
    sig: int
    #: Its tasks not shed; none while the pick is on its way to the log.
    tasks: set[str] = field(default_factory=set)


class ClassifierSampler:
    """The sampling state of one classifier: its buffer, issued items, budget."""

    def __init__(
        self,
        *,
        buffer_size: int,
        active_fraction: float,
        uncertainty_sample: int,
        strategy: Strategy = "hybrid",
        label_budget: int,
        near_dup_bits: int,
        near_dup_memory: int,
        rng: random.Random,
        answers: AnswerBudget | None = None,
        keep: int = 100_000,
    ) -> None:
        self.buffer: deque[Candidate] = deque(maxlen=buffer_size)
        self.active_fraction = active_fraction
        self.strategy = strategy
        self.uncertainty_sample = uncertainty_sample
        self.label_budget = label_budget
        self.answers = answers or AnswerBudget(None, 1)
        self.near_dup_bits = near_dup_bits
        self.issued: dict[str, _Issued] = {}
        self.signatures = SignatureSet(near_dup_memory)
        self.near_duplicates = 0
        self._rng = rng
        self._active = _Share()
        self._passive = _Share()
        #: Sheds, while their task's record may still be read: it is then not issued.
        self._shed = Outcomes(keep)
        #: The tasks of the latest ``keep`` items shed (only a shed item is picked
        #: again): they number its next task. Not every item ever issued: that grew
        #: for as long as the worker ran.
        self._tasks_of: OrderedDict[str, set[str]] = OrderedDict()
        self._keep = keep

    @property
    def budget_left(self) -> int:
        """Picks the label budget and the answer budget still allow."""
        left = max(self.label_budget - len(self.issued), 0)
        tasks = self.answers.tasks_left
        return left if tasks is None else min(left, tasks)

    def offer(self, candidate: Candidate) -> None:
        """A new item from the stream."""
        if candidate.item_id not in self.issued:
            self.buffer.append(candidate)

    def mark_issued(self, item_id: str, sig: int, task_id: str | None = None) -> None:
        """Record a task of ``item_id`` issued (here, by another instance, or read back
        from the log); idempotent. ``task_id`` None: a pick whose task has no id yet."""
        if task_id is not None:
            if item_id in self._tasks_of:
                self._tasks_of[item_id].add(task_id)
            if task_id in self._shed:  # its shed was read first (two logs, read apart)
                self._shed.task_read(task_id)
                return
            self.answers.opened(task_id)
        issued = self.issued.get(item_id)
        if issued is None:
            issued = self.issued[item_id] = _Issued(sig)
            self.signatures.add(sig)
        if task_id is not None:
            issued.tasks.add(task_id)

    def mark_shed(self, item_id: str, task_id: str) -> None:
        """A task of ``item_id`` left the crowd queue unanswered: unless another task
        of the item is open, its budget returns and the item and its near-duplicates
        may be picked again. Idempotent, and either of the task and its shed may be
        read first."""
        self.answers.closed(task_id, 0)
        issued = self.issued.get(item_id)
        tasks = self._tasks_of.setdefault(item_id, set())
        self._tasks_of.move_to_end(item_id)
        tasks.add(task_id)
        if issued is not None:
            tasks.update(issued.tasks)
        if len(self._tasks_of) > self._keep:
            self._tasks_of.popitem(last=False)
        self._shed.read(task_id)
        if issued is None or task_id not in issued.tasks:
            return
        self._shed.task_read(task_id)  # its record was read: settled
        issued.tasks.discard(task_id)
        if not issued.tasks:
            del self.issued[item_id]
            self.signatures.discard(issued.sig)

    def attempt(self, item_id: str) -> int:
        """How many tasks of ``item_id`` were issued before (the number of the next)."""
        return len(self._tasks_of.get(item_id, ()))

    def snapshot(self) -> dict[str, object]:
        """What this sampler rebuilds from the logs (the buffer refills from the stream)."""
        return {
            "issued": {item: sorted(issued.tasks) for item, issued in sorted(self.issued.items())},
            "shed": sorted(self._shed),
            "budget_left": self.budget_left,
            "answers": self.answers.snapshot(),
        }

    def select(
        self,
        n: int,
        scorer: Scorer | None,
        *,
        max_confidence: float = 1.0,
        passive_share: float = 1.0,
    ) -> list[tuple[Candidate, Kind]]:
        """Pick up to ``n`` items (a round: the pool size p, within the rate cap).

        ``hybrid``: k = ``active_fraction`` * n by uncertainty, n - k at random (k is
        whole, the fraction carried to the next round, so small rounds keep the share);
        ``active``: only the k; ``passive``: n at random. Without a model (``scorer``
        is None) every strategy picks at random, which gives active learning its
        seed set. Uncertainty is scored over a random sample of the buffer, so
        selection costs the same however large the buffer is. Candidates are
        checked for near-duplicates of issued items only as they are examined (a
        check against every issued signature is the costly part), and those found
        are dropped from the buffer, as are the picks and items issued elsewhere.

        Under load (:class:`LoadGovernor`), uncertainty picks need a confidence
        below ``max_confidence`` and only ``passive_share`` of the random picks are
        made.
        """
        n = min(n, self.budget_left)
        if n <= 0:
            return []
        pool = [c for c in self.buffer if c.item_id not in self.issued]
        picked: list[tuple[Candidate, Kind]] = []
        dropped: set[str] = set()
        n_active = 0
        if scorer is not None and self.strategy != "passive":
            n_active = self._active.take(n * self.active_fraction)
            if self.strategy == "active":
                n = n_active
        if n_active and pool:
            sample = self._rng.sample(pool, min(self.uncertainty_sample, len(pool)))
            confidence = scorer(sample)  # type: ignore[misc]  # checked above
            ranked = sorted(zip(confidence, range(len(sample)), strict=True))
            for score, i in ranked:
                if len(picked) == n_active or score >= max_confidence:
                    break
                if self._claim(sample[i], dropped):
                    picked.append((sample[i], "active"))
        # The rest at random (also what uncertainty could not fill), thinned under load.
        target = len(picked) + self._passive.take((n - len(picked)) * passive_share)
        for i in self._rng.sample(range(len(pool)), len(pool)):
            if len(picked) >= target:
                break
            if self._claim(pool[i], dropped):
                picked.append((pool[i], "passive"))
        self.buffer = deque(
            (c for c in self.buffer if c.item_id not in self.issued and c.item_id not in dropped),
            maxlen=self.buffer.maxlen,
        )
        return picked

    def _claim(self, candidate: Candidate, dropped: set[str]) -> bool:
        """Issue ``candidate`` unless it was issued or is a near-duplicate of an issued one.

        Near-duplicates within one round are caught too: picks are issued at once.
        """
        if candidate.item_id in self.issued or candidate.item_id in dropped:
            return False
        if self.signatures.has_near(candidate.sig, self.near_dup_bits):
            self.near_duplicates += 1
            dropped.add(candidate.item_id)
            return False
        self.mark_issued(candidate.item_id, candidate.sig)
        return True
