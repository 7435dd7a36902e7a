"""Counting jobs: how many, and what fraction, of a set or window have a tag.

The population is the job's items, or a uniform sample (reservoir) of a stream
window's items with the number the window saw (and the number shedding dropped,
when the window was not protected). Three methods (docs/jobs.md compares them):

- ``label``: items drawn at random without replacement, one answer each (Qurk:
  breadth beats redundancy for counts); Wilson interval.
- ``count``: Qurk's count batches: ``batch_size`` items, some of them gold, one
  count answer each; Thresh with the gold correction (:mod:`pe.jobs.thresh`).
- ``model``: the classifier's prediction for every item (taken as the window
  filled), corrected by crowd labels of a random sample (difference estimator).

The job stops when the interval is no wider than ``ci_width`` after at least
``min_answers`` answers, when every item was asked (label and model methods), or
before the budget would be passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.jobs import CountingJob, JobItem
from channels.records import BatchItem, Task
from pe.jobs.proportion import Estimate, difference, wilson
from pe.jobs.run import JobRun, Plan, truth_tag
from pe.jobs.thresh import CountAnswer, gold_count, thresh

__all__ = ["CountingRun"]


@dataclass
class CountingRun(JobRun):
    spec: CountingJob
    scored_version: int = 0  #: the model version a set's predictions come from

    def score(
        self,
        version: int,
        probability: Callable[[list[tuple[list[int], list[float]]]], list[float]],
    ) -> None:
        """Model method on a set: predict every item with the latest model.

        Any fixed prediction per item keeps the difference estimator unbiased, so
        labels already bought stay valid when a newer model rescores the set.
        A window's items were scored as they arrived and keep those predictions.
        """
        if self.window is not None or version == self.scored_version or version == 0:
            return
        items = list(self.items.values())
        predicted = probability([(item.idx, item.val) for item in items])
        self.items = {
            item.id: item.model_copy(update={"predicted": round(p, 6)})
            for item, p in zip(items, predicted, strict=True)
        }
        self.scored_version = version

    # -- answers --------------------------------------------------------------

    def _labels(self) -> list[tuple[str, int]]:
        """(item id, 1 if the answer is the tag else 0) of the label answers."""
        out = []
        for task, label in self.answered():
            if task.form == "label" and label.answers and label.answers[0].tag is not None:
                out.append((task.item_id, int(label.answers[0].tag == self.spec.tag)))
        return out

    def _counts(self) -> list[CountAnswer]:
        out = []
        for task, label in self.answered():
            for answer in label.answers:
                if task.form == "count" and answer.count is not None:
                    out.append(
                        CountAnswer(
                            answer.worker_id,
                            answer.count,
                            len(task.batch),
                            task.gold,
                            task.gold_positive,
                        )
                    )
        return out

    def _estimate(self) -> tuple[Estimate, list[str]]:
        confidence = self.spec.confidence
        if self.spec.method == "count":
            result = thresh(self._counts(), confidence=confidence)
            return result.estimate, result.spammers
        labels = self._labels()
        if self.spec.method == "label":
            return wilson(sum(y for _, y in labels), len(labels), confidence), []
        population = len(self.items)
        predicted_mean = self._predicted_mean()
        residuals = [y - (self.items[i].predicted or 0.0) for i, y in labels if i in self.items]
        return difference(predicted_mean, residuals, confidence, population), []

    def _predicted_mean(self) -> float:
        if self.window is not None and self.window.seen:
            return self.predicted_sum / self.window.seen
        values = [item.predicted or 0.0 for item in self.items.values()]
        return sum(values) / len(values) if values else 0.0

    @property
    def population(self) -> int:
        """Items the count is about: what the window saw (and shed), or the set."""
        if self.window is not None:
            return self.window.seen + (0 if self.window.spec.protect else self.window.shed)
        return len(self.items)

    # -- planning -------------------------------------------------------------

    def _unasked(self) -> list[JobItem]:
        asked = self.asked_items()
        return [item for item in self.items.values() if item.id not in asked]

    def next_task(self, plan: Plan) -> Task | None:
        if not self.items:
            return None
        if self.spec.method == "count":
            return self._count_task(plan)
        unasked = self._unasked()
        if not unasked:
            return None
        spec = plan.classifiers[self.spec.classifier]
        return self.label_task(plan, spec, self.rng.choice(unasked), redundancy=1)

    def _count_task(self, plan: Plan) -> Task:
        spec = plan.classifiers[self.spec.classifier]
        size = min(self.spec.batch_size, len(self.items) + int(self.spec.gold_per_batch))
        gold_pool = list(plan.gold.get(spec.name, []))
        n_gold = min(gold_count(size, self.spec.gold_per_batch, self.rng), len(gold_pool))
        real = self.rng.sample(list(self.items.values()), min(size - n_gold, len(self.items)))
        gold = self.rng.sample(gold_pool, n_gold)
        batch = [
            BatchItem(id=i.id, text=i.text, truth=truth_tag(i, spec.truth_field)) for i in real
        ]
        batch += [
            BatchItem(id=f"gold-{k}", text=text, truth=tag) for k, (text, tag) in enumerate(gold)
        ]
        self.rng.shuffle(batch)
        task_id = self.task_id()
        return self.new_task(
            plan,
            task_id=task_id,
            item_id=f"{self.job_id}:batch:{task_id[:12]}",
            classifier=spec.name,
            question=spec.question,
            tags=list(spec.tags),
            text=f"How many of these {len(batch)} messages have the answer {self.spec.tag!r}?",
            form="count",
            count_tag=self.spec.tag,
            batch=batch,
            gold=n_gold,
            gold_positive=sum(1 for _, tag in gold if tag == self.spec.tag),
            redundancy=1,
        )

    def done_reason(self, plan: Plan) -> str | None:
        estimate, _ = self._estimate()
        if estimate.n >= self.spec.min_answers and estimate.width <= self.spec.ci_width:
            return "the interval reached the target width"
        if self.spec.method != "count" and not self._unasked() and not self.open_tasks:
            return "every item was asked"
        return None

    def exhausted_reason(self) -> str | None:
        return "every item was asked" if self.items else "the window had no items"

    # -- reporting ------------------------------------------------------------

    def progress(self) -> dict[str, int | float]:
        return {**self.counts(), "population": self.population}

    def estimate(self) -> dict[str, Any] | None:
        if self.window is not None and not self.window.closed:
            return None
        estimate, spammers = self._estimate()
        n = self.population
        return {
            "method": self.spec.method,
            "tag": self.spec.tag,
            "fraction": round(estimate.value, 6),
            "ci": [round(estimate.low, 6), round(estimate.high, 6)],
            "confidence": self.spec.confidence,
            "count": round(estimate.value * n, 2),
            "count_ci": [round(estimate.low * n, 2), round(estimate.high * n, 2)],
            "population": n,
            "answers": estimate.n,
            "crowd_tasks": len(self.answered()),
            "cost": round(self.cost, 6),
            "spammers": len(spammers),
        }
