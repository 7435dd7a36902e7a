"""Worker quality: an online Dawid-Skene model, posteriors, and adaptive redundancy.

Pure logic (no I/O, no clock). For each topic (a classifier) and each worker the
model keeps a confusion matrix of soft counts, ``counts[true tag][answered tag]``,
under a Dirichlet prior that believes in ``prior_accuracy`` with the weight of
``prior_strength`` answers; and a class prior per topic from the settled tasks.

- Posterior of a task (Dawid & Skene's E-step for one item):
  ``p(k | answers) ∝ prior(k) · Π_w π_w[k][answer_w]``, with π the posterior mean of
  the worker's confusion row. "No label" answers carry no evidence.
- Online update (the M-step, one item at a time): when a task settles, each of its
  answers adds ``p(k)`` to ``counts_w[k][answer]`` for every tag ``k``, and the class
  prior counts add ``p``. An answer with no other evidence beside it counts too:
  skipped, the rates of a rare tag learnt only from the tasks extended because an
  answer named it, where false alarms abound. It is not evidence for judging its
  worker (below): alone, it vouches for itself, and a spammer who answered alone
  would look as good as the prior. Gold answers add a
  hard count for the known truth, with ``gold_weight``. Nothing is recomputed over
  past items: memory is O(workers × tags²), and the model keeps learning for as
  long as the stream runs.
- Adaptive redundancy (the quality assurance loop): a task gets another answer only
  while its leading tag's posterior is below ``threshold`` and it has fewer than
  ``max_answers``; agreeing good workers settle it with fewer answers than a fixed
  "3 each", disagreement buys more.
- A worker's accuracy is judged on the pooled evidence of all topics as a Beta
  posterior: ``low_quality`` when, with at least ``min_evidence`` answers weighed,
  the chance that their accuracy is above ``bar`` falls below ``significance``.
- Outcomes read back from ``crowd.labels`` teach the model as they did when they
  settled (:meth:`WorkerQuality.learn`): the annotator's loop after a restart; the
  jobs PE, from gold answers only, to correct counts for worker error
  (:meth:`WorkerQuality.tag_counts`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import betainc

from channels.records import NA_TAG, Label
from pe.params import ClassifierSpec, QualityParams

__all__ = ["QualityConfig", "TagCounts", "Verdict", "WorkerQuality", "worker_model"]

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class QualityConfig:
    prior_accuracy: float = 0.75  #: what an unknown worker is believed to get right
    prior_strength: float = 4.0  #: ... with the weight of this many answers
    gold_weight: float = 1.0  #: evidence of one gold answer, in answers
    threshold: float = 0.9  #: stop asking once the leading tag's posterior reaches it
    min_answers: int = 1
    max_answers: int = 5
    bar: float = 0.7  #: accuracy below which a worker is released
    significance: float = 0.05  #: of the one-sided test against ``bar``
    min_evidence: float = 8.0  #: answers weighed before a worker can be judged

    def __post_init__(self) -> None:
        if not 0 < self.prior_accuracy < 1 or self.prior_strength <= 0:
            raise ValueError("prior_accuracy must be in (0, 1), prior_strength above 0")
        if not 1 <= self.min_answers <= self.max_answers:
            raise ValueError("need 1 <= min_answers <= max_answers")


@dataclass(frozen=True)
class Verdict:
    """A settled task: the leading tag, its posterior, and every tag's."""

    tag: str | None  #: None on a tie, with no evidence, or when "no label" leads
    posterior: float
    probs: dict[str, float]


class TagCounts(NamedTuple):
    """A worker's record on one tag, in answers (the prior's included): the tag said
    when it was the truth (``hit``) or not (``false_alarm``), and another tag said in
    each case (``miss``, ``rejection``). With more than two tags, the rows of the
    other true tags are pooled."""

    hit: float
    miss: float
    false_alarm: float
    rejection: float


@dataclass
class _Topic:
    tags: list[str]
    index: dict[str, int]
    classes: Matrix  #: soft counts of true tags of settled tasks
    workers: dict[str, Matrix] = field(default_factory=dict)


class WorkerQuality:
    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()
        self._topics: dict[str, _Topic] = {}
        #: Pooled over topics: [weighted correct, weighted answers] per worker.
        self._totals: dict[str, list[float]] = {}

    # -- set-up -------------------------------------------------------------------

    def register(self, topic: str, tags: Sequence[str]) -> None:
        """Declare a topic's tags ("no label" is implicit and never a true tag)."""
        tags = [t for t in tags if t != NA_TAG]
        if topic in self._topics:
            if self._topics[topic].tags != tags:
                raise ValueError(f"topic {topic!r} is registered with other tags")
            return
        if len(tags) < 2:
            raise ValueError("a topic needs at least two tags")
        self._topics[topic] = _Topic(
            tags, {t: i for i, t in enumerate(tags)}, np.ones(len(tags), dtype=np.float64)
        )

    def knows(self, topic: str | None) -> bool:
        return topic is not None and topic in self._topics

    # -- estimates ----------------------------------------------------------------

    def posterior(self, topic: str, answers: Iterable[tuple[str, str]]) -> Verdict:
        """The posterior over ``topic``'s tags given ``(worker, tag)`` answers."""
        state = self._topics[topic]
        log_p = np.log(state.classes / state.classes.sum())
        evidence = False
        for worker, tag in answers:
            j = state.index.get(tag)
            if j is None:  # "no label" or a tag the topic does not have
                continue
            log_p = log_p + np.log(self._pi(state, worker)[:, j])
            evidence = True
        probs = np.exp(log_p - log_p.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        lead = float(probs[order[0]])
        tied = math.isclose(lead, float(probs[order[1]]), rel_tol=1e-9)
        lead_tag: str | None = state.tags[int(order[0])] if evidence and not tied else None
        return Verdict(
            lead_tag, lead, {t: float(p) for t, p in zip(state.tags, probs, strict=True)}
        )

    def needs_more(self, topic: str, answers: Sequence[tuple[str, str]], limit: int) -> bool:
        """Adaptive redundancy: ask for another answer? ``limit``: the most answers the
        task may get (the distinct workers available caps it too)."""
        cap = min(self.config.max_answers, limit)
        if len(answers) < min(self.config.min_answers, cap):
            return True
        if len(answers) >= cap:
            return False
        verdict = self.posterior(topic, answers)
        # A hair below the threshold counts as reaching it: 0.75² / (0.75² + 0.25²)
        # is 0.9 on paper and 0.8999... in floating point.
        return verdict.tag is None or verdict.posterior < self.config.threshold - 1e-9

    def skill(self, worker: str, topic: str | None) -> float:
        """Expected accuracy of ``worker`` on ``topic`` (all topics when unknown)."""
        if topic is not None and topic in self._topics:
            state = self._topics[topic]
            prior = state.classes / state.classes.sum()
            return float(prior @ np.diag(self._pi(state, worker)))
        return self.accuracy(worker)[0]

    def tag_counts(self, topic: str, worker: str, tag: str) -> TagCounts:
        """What the model knows of how ``worker`` says ``tag`` on ``topic``."""
        state = self._topics[topic]
        matrix = state.workers.get(worker)
        if matrix is None:
            matrix = self._prior(len(state.tags))
        k = state.index[tag]
        hit, said, truly = float(matrix[k, k]), float(matrix[:, k].sum()), float(matrix[k].sum())
        rest = float(matrix.sum()) - truly
        return TagCounts(hit, truly - hit, said - hit, rest - (said - hit))

    def accuracy(self, worker: str) -> tuple[float, float]:
        """(posterior mean accuracy over all topics, answers weighed)."""
        correct, total = self._totals.get(worker, (0.0, 0.0))
        a, b = self._beta(correct, total)
        return a / (a + b), total

    def low_quality(self, worker: str) -> bool:
        correct, total = self._totals.get(worker, (0.0, 0.0))
        if total < self.config.min_evidence:
            return False
        a, b = self._beta(correct, total)
        # P(accuracy > bar) under Beta(a, b): the upper tail, I_{1-bar}(b, a). The
        # special function, not scipy.stats.beta.sf, which costs 40 times more on
        # every answer of a busy crowd.
        return float(betainc(b, a, 1.0 - self.config.bar)) < self.config.significance

    # -- learning -----------------------------------------------------------------

    def settle(self, topic: str, answers: Sequence[tuple[str, str]]) -> Verdict:
        """A task's final posterior; its answers then update the workers' matrices."""
        verdict = self.posterior(topic, answers)
        state = self._topics[topic]
        probs = np.array([verdict.probs[t] for t in state.tags])
        if any(tag in state.index for _, tag in answers):
            state.classes += probs
        for i, (worker, tag) in enumerate(answers):
            j = state.index.get(tag)
            if j is None:
                continue
            others = [*answers[:i], *answers[i + 1 :]]
            # An answer alone teaches its worker's rates too, by the task's posterior:
            # skipped, the tasks a rare tag's rates learnt from were mostly those a
            # first answer of that tag had extended, and its false alarms looked
            # frequent enough to run away (docs/quality.md). It vouches for itself,
            # so it is not evidence for judging the worker.
            judged = any(t in state.index for _, t in others)
            self._add(state, worker, probs, j, 1.0, judged=judged)
        return verdict

    def aggregate(
        self, topic: str, rows: Iterable[tuple[str, str, str]]
    ) -> tuple[dict[str, str | None], dict[str, str | None]]:
        """Offline aggregation of ``(item, worker, answer)`` rows: each item settled
        once, in order of first appearance (the tags the stream would have had), and
        each item's tag under the final estimates."""
        by_item: dict[str, list[tuple[str, str]]] = {}
        for item, worker, answer in rows:
            by_item.setdefault(item, []).append((worker, answer))
        online = {item: self.settle(topic, votes).tag for item, votes in by_item.items()}
        final = {item: self.posterior(topic, votes).tag for item, votes in by_item.items()}
        return online, final

    def learn(self, label: Label) -> tuple[str, bool] | None:
        """Learn from an outcome read from ``crowd.labels``, as when it settled: a label
        task's answers settle again, a gold answer scores its worker. Returns a gold
        answer's (worker, whether it was right); None for any other outcome."""
        if label.status != "labeled" or label.form != "label" or not self.knows(label.classifier):
            return None
        answers = [(a.worker_id, a.tag) for a in label.answers if a.tag is not None]
        if label.kind != "gold":
            self.settle(label.classifier, answers)
            return None
        if label.tag not in self._topics[label.classifier].index or not answers:
            return None
        worker, answer = answers[0]
        return worker, self.gold(label.classifier, worker, answer, label.tag)

    def gold(self, topic: str, worker: str, answer: str, truth: str) -> bool:
        """A gold answer: hard evidence about ``worker``. Returns whether it was right."""
        state = self._topics[topic]
        k, j = state.index.get(truth), state.index.get(answer)
        if k is None:
            raise ValueError(f"gold truth {truth!r} is not a tag of {topic!r}")
        if j is not None:
            truth_row = np.zeros(len(state.tags))
            truth_row[k] = 1.0
            self._add(state, worker, truth_row, j, self.config.gold_weight)
        return answer == truth

    # -- internals ----------------------------------------------------------------

    def _prior(self, n: int) -> Matrix:
        """An unknown worker's counts over ``n`` tags."""
        cfg = self.config
        matrix = np.full((n, n), cfg.prior_strength * (1 - cfg.prior_accuracy) / (n - 1))
        np.fill_diagonal(matrix, cfg.prior_strength * cfg.prior_accuracy)
        return matrix

    def _matrix(self, state: _Topic, worker: str) -> Matrix:
        matrix = state.workers.get(worker)
        if matrix is None:
            matrix = state.workers[worker] = self._prior(len(state.tags))
        return matrix

    def _pi(self, state: _Topic, worker: str) -> Matrix:
        matrix = self._matrix(state, worker)
        pi: Matrix = matrix / matrix.sum(axis=1, keepdims=True)
        return pi

    def _add(
        self,
        state: _Topic,
        worker: str,
        probs: Matrix,
        j: int,
        weight: float,
        *,
        judged: bool = True,
    ) -> None:
        self._matrix(state, worker)[:, j] += weight * probs
        if not judged:
            return
        totals = self._totals.setdefault(worker, [0.0, 0.0])
        totals[0] += weight * float(probs[j])  # expected correctness of this answer
        totals[1] += weight

    def _beta(self, correct: float, total: float) -> tuple[float, float]:
        cfg = self.config
        return (
            cfg.prior_strength * cfg.prior_accuracy + correct,
            cfg.prior_strength * (1 - cfg.prior_accuracy) + total - correct,
        )


def worker_model(params: QualityParams, classifiers: Iterable[ClassifierSpec]) -> WorkerQuality:
    """The loop's model for a pipeline's quality parameters, its classifiers registered."""
    # The model's settings are the parameters, less the pool's and the switches.
    settings = params.model_dump(exclude={"enabled", "adaptive", "gold_rate", "routing"})
    model = WorkerQuality(QualityConfig(**settings))
    for spec in classifiers:
        model.register(spec.name, spec.tags)
    return model
