"""Counting jobs: how many, and what fraction, of a set or window have a tag.

The population is the job's items, or a uniform sample (reservoir) of a stream
window's items with the number the window saw (and the number shedding dropped,
when the window was not protected). Three methods (docs/jobs.md compares them):

- ``label``: items drawn at random without replacement, one answer each (Qurk:
  breadth beats redundancy for counts); the share corrected for each worker's
  error, with a score interval (:func:`pe.jobs.proportion.corrected_share`).
- ``count``: Qurk's count batches: ``batch_size`` items, some of them gold, one
  count answer each; ``calibration_share`` of the batches are all gold, with a
  varying known count, and measure the crowd's counting error, which corrects the
  others (:func:`pe.jobs.calibrated_count.calibrated_share`).
- ``model``: the classifier's prediction for every item (taken as the window
  filled), corrected by crowd labels of a random sample (difference estimator),
  each corrected for its worker's error.

A worker's rates of saying the tag when it is true and when it is not are Beta
posteriors: the quality loop's prior for an unknown worker (``workers``, the
model the jobs PE keeps), plus the worker's answers to gold questions: the
annotator's (read from ``crowd.labels``) and the job's own. Label and model
methods make ``gold_share`` of their label tasks gold questions, as Qurk hides
gold in every count batch. The agreement of redundant answers is not used: the
loop learns it online under adaptive redundancy, which asks for another answer
when the first ones look doubtful, and its rates come out biased toward error
(docs/jobs.md). Without a model every worker is taken as always right.

The job stops when the interval is no wider than ``ci_width`` (before it is cut to
[0, 1]: a cut interval is short, not precise) after at least ``min_answers``
answers, when every item was asked (label and model methods), or before the
budget would be passed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.jobs import CountingJob, JobItem
from channels.records import NA_TAG, BatchItem, Task
from pe.common.quality import TagCounts, WorkerQuality
from pe.jobs.calibrated_count import calibrated_share, calibration_batch, calibration_due
from pe.jobs.proportion import Estimate, WorkerRates, corrected_difference, corrected_share
from pe.jobs.run import JobRun, Plan, truth_tag
from pe.jobs.thresh import CountAnswer, gold_count
from pe.params import ClassifierSpec

__all__ = ["CountingRun", "gold_record", "worker_rates"]


def gold_record(answers: Iterable[tuple[str, bool, bool]]) -> dict[str, TagCounts]:
    """Each worker's gold answers as counts, from ``(worker, said the tag, the
    question has it)``."""
    out: dict[str, TagCounts] = {}
    for worker, said, truly in answers:
        hit, miss, false_alarm, rejection = out.get(worker, TagCounts(0, 0, 0, 0))
        if truly:
            out[worker] = TagCounts(hit + said, miss + (not said), false_alarm, rejection)
        else:
            out[worker] = TagCounts(hit, miss, false_alarm + said, rejection + (not said))
    return out


def worker_rates(
    model: WorkerQuality | None,
    classifier: str,
    tag: str,
    workers: Iterable[str],
    gold: Mapping[str, TagCounts],
) -> dict[str, WorkerRates]:
    """Each worker's rates of saying ``tag``: the model's counts (its prior and the
    gold answers it learnt) plus ``gold``, the job's own. Empty without a model: the
    workers are then taken as always right."""
    if model is None or not model.knows(classifier):
        return {}
    rates = {}
    for worker in workers:
        known = model.tag_counts(classifier, worker, tag)
        own = gold.get(worker, TagCounts(0, 0, 0, 0))
        rates[worker] = WorkerRates.from_counts(*(a + b for a, b in zip(known, own, strict=True)))
    return rates


@dataclass
class CountingRun(JobRun):
    spec: CountingJob
    scored_version: int = 0  #: the model version a set's predictions come from
    workers: WorkerQuality | None = None  #: the quality loop's model of the workers

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

    def _said(self) -> list[tuple[Task, str, int]]:
        """(task, worker, 1 if the answer is the tag else 0) of the label answers;
        "no label" answers carry no evidence, as in the quality loop."""
        out = []
        for task, label in self.answered():
            if task.form != "label" or not label.answers:
                continue
            answer = label.answers[0]
            if answer.tag is not None and answer.tag != NA_TAG:
                out.append((task, answer.worker_id, int(answer.tag == self.spec.tag)))
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

    def _estimate(self) -> Estimate:
        confidence = self.spec.confidence
        if self.spec.method == "count":
            return calibrated_share(self._counts(), confidence)
        answers = self._said()
        gold = gold_record(
            (worker, bool(y), bool(task.gold_positive)) for task, worker, y in answers if task.gold
        )
        labels = [(task.item_id, worker, y) for task, worker, y in answers if not task.gold]
        workers = {worker for _, worker, _ in labels}
        rates = worker_rates(self.workers, self.spec.classifier, self.spec.tag, workers, gold)
        if self.spec.method == "label":
            said = [(worker, y) for _, worker, y in labels]
            return corrected_share(said, rates, confidence)
        sample = [
            (worker, y, self.items[i].predicted or 0.0)
            for i, worker, y in labels
            if i in self.items
        ]
        return corrected_difference(self._predicted_mean(), sample, rates, confidence)

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
        gold = plan.gold.get(spec.name)
        if gold and self.rng.random() < self.spec.gold_share:
            return self._gold_task(plan, spec, self.rng.choice(gold))
        return self.label_task(plan, spec, self.rng.choice(unasked), redundancy=1)

    def _gold_task(self, plan: Plan, spec: ClassifierSpec, gold: tuple[str, str]) -> Task:
        """A gold question: a label task like the others, on a message of known tag."""
        text, tag = gold
        task_id = self.task_id()
        return self.new_task(
            plan,
            task_id=task_id,
            item_id=f"{self.job_id}:gold:{task_id[:12]}",
            classifier=spec.name,
            question=spec.question,
            tags=list(spec.tags),
            text=text,
            redundancy=1,
            truth=tag,
            gold=1,
            gold_positive=int(tag == self.spec.tag),
        )

    def _count_task(self, plan: Plan) -> Task:
        spec = plan.classifiers[self.spec.classifier]
        size = min(self.spec.batch_size, len(self.items) + int(self.spec.gold_per_batch))
        gold_pool = list(plan.gold.get(spec.name, []))
        batches = [t for t in self.tasks.values() if t.form == "count"]
        calibrations = sum(1 for t in batches if t.gold == len(t.batch))
        if gold_pool and calibration_due(calibrations, len(batches), self.spec.calibration_share):
            positives = [g for g in gold_pool if g[1] == self.spec.tag]
            negatives = [g for g in gold_pool if g[1] != self.spec.tag]
            real: list[JobItem] = []
            gold = calibration_batch(positives, negatives, self.spec.batch_size, self.rng)
        else:
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
            gold=len(gold),
            gold_positive=sum(1 for _, tag in gold if tag == self.spec.tag),
            redundancy=1,
        )

    def done_reason(self, plan: Plan) -> str | None:
        estimate = self._estimate()
        if estimate.n >= self.spec.min_answers and estimate.precision <= self.spec.ci_width:
            return "the interval reached the target width"
        if self.spec.method != "count" and not self._unasked():
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
        estimate = self._estimate()
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
        }
