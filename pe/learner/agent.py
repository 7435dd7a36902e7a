"""The learner's label handler and training timer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from channels.codec import DecodeError, decode, encode
from channels.records import Label, ModelHeader
from pe.common.embedding import require
from pe.common.featurebatch import FeatureBatch, skipping_decoder
from pe.common.http import OperatorAccess
from pe.common.lifecycle import Helper
from pe.common.modelbook import model_book
from pe.learner.progress import LearningProgress, ProgressApi
from pe.learner.review import LabelReview, LabelsApi
from pe.learner.state import ClassifierLearner
from pe.learner.teacher import PoolItem, StreamSample, Teacher, warm, with_sample
from pe.learner.trainers import make_trainer
from pe.params import ClassifierSpec, FeaturesParams, LearnerParams, TaskgenParams
from runtime.context import PipelineContext
from runtime.dataflow import Pending

__all__ = ["register"]

log = logging.getLogger(__name__)

PE = "learner"
#: How often the learner checks whether a classifier is due for retraining.
TRAIN_CHECK_S = 0.5
#: After the teacher's warm-up failed, the wait before it is tried again.
WARM_RETRY_S = 30.0


def _held(learner: ClassifierLearner) -> Callable[[], float]:
    return lambda: learner.n_labels


def _of(header: ModelHeader) -> tuple[str, int]:
    return header.classifier, header.version


def _finished(learner: ClassifierLearner) -> Callable[[], float]:
    return lambda: learner.finished_at


class Fitter(Helper):
    """The process scikit-learn refits run in (see SklearnTrainer); the retrains and
    the teacher's warm-up share it."""

    def __init__(self) -> None:
        super().__init__("model-fitting")
        #: A retrain round is under way: the teacher's warm-up waits for its end. The
        #: process runs one call at a time, and a warm-up call (7-10 s) between a
        #: round's fits held each of them up: the crowd's labels go first.
        self.retraining = False


def register(ctx: PipelineContext) -> None:
    params = ctx.params_of(LearnerParams)
    book = model_book(ctx)
    n_features = ctx.params_of(FeaturesParams).dimensions
    sample = StreamSample(params.teacher_pool, params.teacher_rate)
    teacher = None
    if params.teacher != "none":
        # At start, not at the first refit in the fitting process, where a missing
        # encoder would only be logged.
        require(params.teacher)
        teacher = Teacher(
            params.teacher,
            params.teacher_c,
            params.teacher_weight,
            sample,
            params.second_opinion_share,
            params.teacher_smoothing,
        )
    learners: dict[str, ClassifierLearner] = {}
    passive_share = ctx.params_of(TaskgenParams).passive_share

    def add(spec: ClassifierSpec) -> None:
        learner = ClassifierLearner(
            spec,
            params,
            make_trainer(
                spec.family or params.family_default,
                spec.tags,
                n_features,
                c=params.c,
                lr=params.river_lr,
                min_precision=params.min_precision,
                teacher=teacher,
                anchors=spec.anchors(),
            ),
            passive_share=passive_share,
        )
        learners[spec.name] = learner
        # Read at scrape time; after a restart it shows the count coming back.
        ctx.metrics.learner_labels.labels(ctx.pipeline, spec.name).set_function(_held(learner))
        ctx.metrics.learner_trained.labels(ctx.pipeline, spec.name).set_function(_finished(learner))

    # Retired ones too: their labels are read (and ignored) like any other's.
    ctx.catalog.on_added(add)
    published: dict[str, int] = {}
    fitter = Fitter()
    labels_in = ctx.metrics.items_in.labels(ctx.pipeline, PE)

    review = LabelReview(params.review_labels)
    progress = LearningProgress()

    async def append(label: Label) -> None:
        await (await ctx.send("crowd.labels", label.item_id, encode(label)))

    def correctable() -> dict[str, ClassifierSpec]:
        return {spec.name: spec for spec in ctx.catalog.serving()}

    async def on_labels(records: Sequence[ConsumerRecord]) -> None:
        await ctx.catalog.caught_up.wait()  # labels of classifiers added at run time
        for record in records:
            labels_in.inc()
            try:
                label = decode(Label, record.value)
            except DecodeError as exc:
                await (await ctx.reject(PE, exc.kind, str(exc), record.value))
                continue
            review.take(label)
            progress.take_label(label)
            learner = learners.get(label.classifier)
            if learner is not None and ctx.catalog.state(label.classifier) != "retired":
                learner.add(label)

    labels_log = ctx.follow("crowd.labels", PE, on_labels)
    api = LabelsApi(
        review,
        correctable,
        append,
        operator=OperatorAccess.from_settings(ctx.settings),
        ready=labels_log.caught_up,
    )
    ctx.endpoints.extend(api.endpoints())

    async def on_history(records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            try:
                progress.take_model(decode(ModelHeader, record.value))
            except DecodeError as exc:
                await (await ctx.reject(PE, exc.kind, str(exc), record.value))

    history = ctx.follow("models.history", PE, on_history)
    ctx.endpoints.extend(
        ProgressApi(
            progress,
            lambda: {record.name for record in ctx.catalog.records()},
            operator=OperatorAccess.from_settings(ctx.settings),
            ready=(labels_log.caught_up, history.caught_up),
        ).endpoints()
    )

    async def record_history(header: ModelHeader) -> None:
        try:
            await (await ctx.send("models.history", header.classifier, encode(header)))
        except KafkaError as exc:  # the next retrain's check writes it again
            log.error("classifier %s: model v%d not in models.history: %r", *_of(header), exc)
            return
        progress.take_model(header)

    async def take_sample(batch: FeatureBatch) -> Pending:
        for i in sample.choose(len(batch), time.monotonic()):
            idx, val = batch.rows[i]
            sample.add(PoolItem(batch.items[i].id, batch.items[i].text, idx, val, batch.sigs[i]))
        return []

    if teacher is not None:
        ctx.consume("items.features", PE, skipping_decoder(n_features), take_sample)
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
        if history.caught_up.is_set():
            # A model published just before a crash may have missed its history.
            for header in list(book.updates.values()):
                if not progress.knows(header):
                    await record_history(header)
        fitter.retraining = True
        try:
            await retrain_due()
        finally:
            fitter.retraining = False

    async def retrain_due() -> None:
        for spec in ctx.catalog.labeling():  # not while paused
            name, learner = spec.name, learners[spec.name]
            active = book.updates.get(name)
            learner.sync(active)
            if not learner.due():
                continue
            version = max(book.version(name), published.get(name, 0)) + 1
            executor = fitter.executor
            try:
                update, outcome = await learner.train_off_loop(active, version, executor)
            except BrokenProcessPool as exc:
                fitter.renew(executor, exc)
                log.info("classifier %s: the retrain is tried again", name)
                return
            if update is not None:
                try:
                    await (await ctx.send("control.models", name, ctx.signer.sign(update)))
                except KafkaError as exc:
                    # The broker refused the model (too large for its message limit, a
                    # topic misconfigured): the active model stays, the learner goes on.
                    log.error("classifier %s: model v%d not published: %r", name, version, exc)
                    update, outcome = None, "unpublishable"
            ctx.metrics.models_trained.labels(ctx.pipeline, name, outcome).inc()
            learner.finish_training()
            if update is None:
                log.info("classifier %s: trained on %d labels, %s", name, learner.n_train, outcome)
                continue
            published[name] = version
            await record_history(update.header())
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

    async def warm_teacher(teacher: Teacher) -> None:
        # The fitting process embeds the sample a batch at a time, so that a refit
        # finds it ready: a slow encoder (minilm, about 85 items/s a thread) embeds
        # fewer items a second than a fast stream is sampled at. Its own task, not the
        # retrain timer's: a batch takes seconds. The process runs one call at a time,
        # so a refit waits for one batch at most.
        seen: tuple[int, int] | None = None  # the sample and process last warmed
        embedded = 0
        while True:
            now = (sample.added, fitter.generation)
            if fitter.retraining or (now == seen and embedded >= len(sample.items)):
                await asyncio.sleep(TRAIN_CHECK_S)
                continue
            executor = fitter.executor
            try:
                embedded, size = await with_sample(
                    executor, warm, lambda whole: (teacher.teaching(whole),)
                )
            except BrokenProcessPool as exc:
                fitter.renew(executor, exc)
                continue
            except Exception:  # an encoder's fault: the warm-up waits, the refits go on
                log.exception("the teacher's warm-up failed; tried again in %.0f s", WARM_RETRY_S)
                await asyncio.sleep(WARM_RETRY_S)
                continue
            seen = now
            ctx.metrics.teacher_sample.labels(ctx.pipeline, "sampled").set(size)
            ctx.metrics.teacher_sample.labels(ctx.pipeline, "embedded").set(embedded)

    if teacher is not None:
        ctx.task(partial(warm_teacher, teacher))
