"""The learner's label handler and training timer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from aiokafka import ConsumerRecord

from channels.codec import DecodeError, decode
from channels.records import Label
from pe.common.lifecycle import helper_pool
from pe.common.modelbook import model_book
from pe.learner.state import ClassifierLearner
from pe.learner.trainers import make_trainer
from pe.params import FeaturesParams, LearnerParams, TaskgenParams
from runtime.context import PipelineContext

__all__ = ["register"]

log = logging.getLogger(__name__)

PE = "learner"
#: How often the learner checks whether a classifier is due for retraining.
TRAIN_CHECK_S = 0.5


def _held(learner: ClassifierLearner) -> Callable[[], float]:
    return lambda: learner.n_labels


class Fitter:
    """The process scikit-learn refits run in (see SklearnTrainer), started at once:
    a fresh interpreter importing scikit-learn at the first retrain took seconds of
    CPU from the event loop while items flowed. If that process dies (killed, out of
    memory), :meth:`renew` starts another: a dead pool would fail every retrain."""

    def __init__(self) -> None:
        self.executor = self._start()

    @staticmethod
    def _start() -> ProcessPoolExecutor:
        executor = helper_pool()
        executor.submit(int)
        return executor

    def renew(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._start()


def register(ctx: PipelineContext) -> None:
    params = ctx.params_of(LearnerParams)
    book = model_book(ctx)
    learners = {
        spec.name: ClassifierLearner(
            spec,
            params,
            make_trainer(
                spec.family or params.family_default,
                spec.tags,
                ctx.params_of(FeaturesParams).dimensions,
                c=params.c,
                lr=params.river_lr,
                min_precision=params.min_precision,
            ),
            passive_share=ctx.params_of(TaskgenParams).passive_share,
        )
        for spec in ctx.classifiers
    }
    for name, learner in learners.items():
        # Read at scrape time; after a restart it shows the count coming back.
        ctx.metrics.learner_labels.labels(ctx.pipeline, name).set_function(_held(learner))
    published: dict[str, int] = {}
    fitter = Fitter()
    labels_in = ctx.metrics.items_in.labels(ctx.pipeline, PE)

    async def on_labels(records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            labels_in.inc()
            try:
                label = decode(Label, record.value)
            except DecodeError as exc:
                await (await ctx.reject(PE, exc.kind, str(exc), record.value))
                continue
            learner = learners.get(label.classifier)
            if learner is not None:
                learner.add(label)

    labels_log = ctx.follow("crowd.labels", PE, on_labels)
    ctx.durable(
        PE,
        lambda: {
            name: {
                "items": sorted(learner.items),
                "train": learner.n_train,
                "holdout": len(learner.holdout),
            }
            for name, learner in learners.items()
        },
    )

    async def train_due() -> None:
        # Until both logs are read, a retrain would repeat models already published.
        if not (book.caught_up.is_set() and labels_log.caught_up.is_set()):
            return
        for name, learner in learners.items():
            active = book.updates.get(name)
            learner.sync(active)
            if not learner.due():
                continue
            version = max(book.version(name), published.get(name, 0)) + 1
            try:
                update, outcome = await learner.train_off_loop(active, version, fitter.executor)
            except BrokenProcessPool as exc:
                log.error(
                    "classifier %s: the model-fitting process died (%s); starting another, "
                    "the retrain is tried again",
                    name,
                    exc,
                )
                fitter.renew()
                return
            ctx.metrics.models_trained.labels(ctx.pipeline, name, outcome).inc()
            if update is None:
                log.info("classifier %s: trained on %d labels, %s", name, learner.n_train, outcome)
                continue
            await (await ctx.send("control.models", name, ctx.signer.sign(update)))
            published[name] = version
            ctx.metrics.items_out.labels(ctx.pipeline, PE).inc()
            log.info(
                "classifier %s: published model v%d (held-out AUC %s on %d labels, trained on %d)",
                name,
                version,
                update.metrics.describe_auc(),
                update.n_holdout,
                update.n_train,
            )

    ctx.timer(TRAIN_CHECK_S, f"{ctx.pipeline}.learner.train", train_due)
