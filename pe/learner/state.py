"""One classifier's learning state: held-out split, retrain schedule, activation rule."""

from __future__ import annotations

import math
import time
import zlib
from array import array
from concurrent.futures import Executor

from channels.records import Label, LinearModel, ModelHeader, ModelUpdate
from pe.common.linear import features_in_range
from pe.learner.evaluate import evaluate
from pe.learner.trainers import Example, Trainer
from pe.params import ClassifierSpec, LearnerParams

__all__ = ["ClassifierLearner", "in_holdout", "replaces"]


def in_holdout(item_id: str, fraction: float) -> bool:
    """A stable split by item id, so a restarted learner splits the same way."""
    return zlib.crc32(item_id.encode()) % 10_000 < fraction * 10_000


def replaces(active: ModelHeader | None, candidate: ModelHeader, params: LearnerParams) -> bool:
    """AIDR's rule on intervals: a new model replaces the active one unless the held-out
    labels show it worse by more than a tolerance, or if it learned from enough more
    labels.

    AIDR compared the two AUCs as points, but a held-out AUC from a few positives is
    far from exact (0.875 from 4 positives among 38 is 0.58-0.97): a model measured
    high by luck then refused its better successors. So the rule compares intervals:
    it refuses a new model only if the lower end of the 95% interval of (active AUC -
    new AUC) is above ``auc_tolerance``. That interval is MOVER's (Zou and Donner
    2008), built from each model's own interval; it takes the two held-out sets as
    independent, while the newer contains the older, so it is wider than the truth:
    in doubt, the model that learned from more labels wins. Models published before
    they had intervals are compared as points, as AIDR did.
    """
    if active is None:
        return True
    if candidate.n_train >= active.n_train + params.more_labels:
        return True
    new, old = candidate.metrics, active.metrics
    if new.auc is None or old.auc is None:
        return candidate.n_train > active.n_train
    if new.auc_ci is None or old.auc_ci is None:
        return new.auc >= old.auc - params.auc_tolerance
    worse_by_at_least = (old.auc - new.auc) - math.hypot(
        old.auc - old.auc_ci.low, new.auc_ci.high - new.auc
    )
    return worse_by_at_least <= params.auc_tolerance


class ClassifierLearner:
    def __init__(
        self,
        spec: ClassifierSpec,
        params: LearnerParams,
        trainer: Trainer,
        *,
        passive_share: float = 1.0,
    ) -> None:
        """``passive_share``: the share of labels the task generator picks at random."""
        self.spec = spec
        self.params = params
        self.trainer = trainer
        # Only randomly picked items are held out: actively picked ones are the hard
        # cases, and scoring on them would understate the model on the stream. With no
        # random picks at all, hold out from every label rather than from none.
        self._holdout_kinds = {"passive"} if passive_share > 0 else {"passive", "active"}
        self._holdout_rate = min(params.holdout_fraction / (passive_share or 1.0), 1.0)
        self.holdout: list[Example] = []
        self.n_train = 0
        self.items: set[str] = set()
        self.trained_at = 0  #: labels (train + held out) when last trained
        #: labels the last finished training saw (trained_at, once its model is out)
        self.finished_at = 0
        self.last_label_at = time.monotonic()  #: when the last label was taken
        #: Operators' corrections taken, and how many of them the last training saw.
        self.corrections = 0
        self.corrections_trained = 0

    @property
    def n_labels(self) -> int:
        return self.n_train + len(self.holdout)

    def add(self, label: Label) -> bool:
        """Take a crowd label; False if it cannot train (no agreement, N/A, unknown tag,
        no features or features that do not fit the model, or an item already labeled:
        the first label of an item wins, unless an operator corrects it)."""
        if label.tag is None or label.tag not in self.spec.tags:
            return False
        correction = label.corrected_by is not None and label.item_id in self.items
        if label.item_id in self.items and not correction:
            return False
        # Gold questions (the annotator's, or a counting job's) measure workers and
        # carry no features.
        if label.kind == "gold" or not label.idx:
            return False
        if not features_in_range(label.idx, self.trainer.n_features):
            return False
        self.items.add(label.item_id)
        self.last_label_at = time.monotonic()
        weight = 1.0 if label.posterior is None else label.posterior
        # Kept for every retrain until the budget is spent: as machine arrays (12 bytes a
        # feature) rather than the label's lists of Python numbers (about 60).
        idx, val = array("i", label.idx), array("d", label.val)
        example = Example(idx, val, label.tag, weight, label.item_id, label.text)
        if correction:
            self._correct(example)
        elif label.kind in self._holdout_kinds and in_holdout(label.item_id, self._holdout_rate):
            self.holdout.append(example)
        else:
            self.trainer.add(example)
            self.n_train += 1
        return True

    def _correct(self, example: Example) -> None:
        """An operator's tag replaces the crowd's, where the item's label is kept."""
        self.corrections += 1
        for i, held in enumerate(self.holdout):
            if held.item_id == example.item_id:
                self.holdout[i] = example
                return
        self.trainer.correct(example)

    def sync(self, active: ModelHeader | None) -> None:
        """After a restart, do not retrain for labels the active model already saw."""
        if active is not None:
            self.trained_at = max(self.trained_at, active.n_train + active.n_holdout)
            self.finished_at = max(self.finished_at, active.n_train + active.n_holdout)

    def due(self, now: float | None = None) -> bool:
        """Retrain? After ``retrain_every`` new labels, or after any once labels have
        stopped coming for ``retrain_idle_s`` (``now``: time.monotonic())."""
        new = self.n_labels - self.trained_at + self.corrections - self.corrections_trained
        idle = (time.monotonic() if now is None else now) - self.last_label_at
        return self.n_train >= self.params.min_train and (
            new >= self.params.retrain_every or (new > 0 and idle >= self.params.retrain_idle_s)
        )

    async def train_off_loop(
        self, active: ModelHeader | None, version: int, executor: Executor
    ) -> tuple[ModelUpdate | None, str]:
        """Train, with the trainer's long computations sent to ``executor``; the update
        to publish (or None) and an outcome for metrics.

        A model to be published is then refitted on its training labels and the
        held-out ones (scikit-learn family): the held-out labels judge the recipe,
        then teach the model too. Its metrics are the first fit's, which learned from
        fewer labels: they understate the published model a little, never flatter it.
        """
        n_train = self.start_training()
        update, outcome = self.judge(
            await self.trainer.export_off_loop(executor), n_train, active, version
        )
        if update is not None and self.holdout:
            held_out = list(self.holdout)
            final = await self.trainer.refit_off_loop(executor, n_train, held_out)
            if final is not None:
                update = update.model_copy(update={"model": final})
        return update, outcome

    def finish_training(self) -> None:
        """The last training's model is judged, and published if it was to be."""
        self.finished_at = self.trained_at

    def start_training(self) -> int:
        """Mark the labels seen now as trained on; the training-set size."""
        self.trained_at = self.n_labels
        self.corrections_trained = self.corrections
        return self.n_train

    def judge(
        self, model: LinearModel | None, n_train: int, active: ModelHeader | None, version: int
    ) -> tuple[ModelUpdate | None, str]:
        """Evaluate a trained model on the held-out labels and apply the activation rule."""
        if model is None:
            return None, "untrainable"
        update = ModelUpdate(
            classifier=self.spec.name,
            version=version,
            family=self.trainer.family,
            created=time.time(),
            n_train=n_train,
            n_holdout=len(self.holdout),
            metrics=evaluate(model, self.holdout, self.spec.tags),
            model=model,
        )
        if not replaces(active, update, self.params):
            return None, "kept_active"
        return update, "published"
