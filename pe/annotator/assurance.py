"""The quality assurance loop: worker quality, gold questions and adaptive redundancy,
joined to the retainer pool as its :class:`~pe.annotator.pool.Judge`.

The loop owns a :class:`~pe.common.quality.WorkerQuality` model and the gold
questions. It settles finished tasks (their posterior, and the workers' matrices
learn from their answers), scores gold answers, takes an operator's correction of a
label as gold evidence about the workers who answered it, and replays outcomes read
back from the log after a restart, so workers keep their records. Each gold question is shown
to a worker at most once, qualification quizzes included.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from channels.records import Label
from pe.annotator.crowd import GoldItem
from pe.annotator.pool import PoolTask
from pe.common.quality import Verdict, WorkerQuality

__all__ = ["GOLD_JOB", "QualityLoop"]

#: The ledger's name for gold questions' pay.
GOLD_JOB = "gold"


class QualityLoop:
    def __init__(
        self,
        quality: WorkerQuality,
        gold: Sequence[GoldItem],
        payload: Callable[[GoldItem, str, float], Any],
        rng: random.Random | None = None,
    ) -> None:
        """``payload(item, task_id, now)``: what a worker is shown for a gold question."""
        self.quality = quality
        self._gold = [g for g in gold if quality.knows(g.topic)]
        self._payload = payload
        self._rng = rng or random.Random(0)
        self._shown: dict[str, set[str]] = {}  #: worker -> gold ids
        self._pending: dict[str, GoldItem] = {}  #: gold task id -> its question
        self.gold_answers = {"correct": 0, "wrong": 0}

    def add_topic(self, topic: str, tags: Sequence[str], gold: Sequence[GoldItem]) -> None:
        """Judge the answers of a classifier added on a running pipeline, and ask its
        gold questions too."""
        self.quality.register(topic, tags)
        self._gold.extend(g for g in gold if g.topic == topic)

    def add_gold(self, gold: Sequence[GoldItem]) -> None:
        """More gold questions of topics the loop judges (items an operator promoted)."""
        self._gold.extend(g for g in gold if g.topic is not None and self.quality.knows(g.topic))

    # -- the pool's judge ---------------------------------------------------------

    def more_answers(self, task: PoolTask, limit: int) -> bool:
        if task.topic is None or not self.quality.knows(task.topic):
            return False
        return self.quality.needs_more(task.topic, _votes(task), limit)

    def skill(self, worker_id: str, topic: str | None) -> float:
        return self.quality.skill(worker_id, topic)

    def low_quality(self, worker_id: str) -> bool:
        return self.quality.low_quality(worker_id)

    def gold_task(self, worker_id: str, now: float) -> PoolTask | None:
        shown = self._shown.setdefault(worker_id, set())
        fresh = [g for g in self._gold if g.gold_id not in shown]
        if not fresh:
            return None
        item = self._rng.choice(fresh)
        shown.add(item.gold_id)
        task_id = f"gold:{worker_id}:{item.gold_id}"
        self._pending[task_id] = item
        return PoolTask(
            task_id, self._payload(item, task_id, now), now, 1, job=GOLD_JOB, topic=item.topic
        )

    # -- evidence -----------------------------------------------------------------

    def shown(self, worker_id: str, gold_ids: Iterable[str]) -> None:
        """Gold questions a worker saw elsewhere (a qualification quiz)."""
        self._shown.setdefault(worker_id, set()).update(gold_ids)

    def settle(self, task: PoolTask) -> Verdict | None:
        """A finished label task's verdict (a gold task's: its known truth); None for a
        task the loop does not judge (no topic, or not a label)."""
        if task.gold:
            item = self._pending.pop(task.task_id, None)
            if item is None or item.topic is None or not task.answers:
                return None
            self.score_gold(
                item.topic, task.answers[0].worker_id, str(task.answers[0].value), item.truth
            )
            return Verdict(item.truth, 1.0, {item.truth: 1.0})
        if task.topic is None or not self.quality.knows(task.topic):
            return None
        return self.quality.settle(task.topic, _votes(task))

    def score_gold(self, topic: str, worker_id: str, answer: str, truth: str) -> bool:
        right = self.quality.gold(topic, worker_id, answer, truth)
        self.gold_answers["correct" if right else "wrong"] += 1
        return right

    def replay(self, label: Label) -> None:
        """An outcome read back from the log (one written before a restart): its
        answers teach the model again, and a gold question stays shown."""
        scored = self.quality.learn(label)
        if scored is not None:
            worker_id, right = scored
            self.shown(worker_id, [label.item_id])
            self.gold_answers["correct" if right else "wrong"] += 1

    def correct(self, label: Label) -> None:
        """An operator's correction of a label: the item's right tag, hard evidence
        about each worker who answered it, as a gold question's answer is."""
        if label.tag is None or not self.quality.knows(label.classifier):
            return
        for answer in label.answers:
            if answer.tag is None:
                continue
            try:
                self.quality.gold(label.classifier, answer.worker_id, answer.tag, label.tag)
            except ValueError:
                return  # a tag the classifier does not have: the learner refuses it too

    def qualified(self, worker_id: str, quiz: dict[str, GoldItem], answers: dict[str, str]) -> None:
        """A qualification quiz's answers are gold evidence too."""
        self.shown(worker_id, quiz)
        for gold_id, item in quiz.items():
            answer = answers.get(gold_id)
            if answer is not None and item.topic is not None and self.quality.knows(item.topic):
                self.score_gold(item.topic, worker_id, answer, item.truth)


def _votes(task: PoolTask) -> list[tuple[str, str]]:
    return [(vote.worker_id, str(vote.value)) for vote in task.answers]
