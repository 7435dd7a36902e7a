"""The task generator's agent and timer."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Sequence

from aiokafka import ConsumerRecord

from channels.codec import decode_valid, encode
from channels.records import Label, Task
from pe.common.featurebatch import FeatureBatch, skipping_decoder
from pe.common.linear import feature_matrix
from pe.common.modelbook import ModelBook, model_book
from pe.common.outcomes import Outcomes
from pe.params import AnnotatorParams, ClassifierSpec, FeaturesParams, TaskgenParams
from pe.taskgen.budget import AnswerBudget
from pe.taskgen.sampler import Candidate, ClassifierSampler, LoadGovernor, Scorer, TokenBucket
from runtime.context import PipelineContext
from runtime.dataflow import Pending

__all__ = ["register"]

log = logging.getLogger(__name__)

PE = "taskgen"


def _scorer(book: ModelBook, classifier: str) -> Scorer | None:
    model = book.compiled.get(classifier)
    if model is None:
        return None

    def score(candidates: Sequence[Candidate]) -> Sequence[float]:
        matrix = feature_matrix([(c.idx, c.val) for c in candidates], model.n_features)
        return model.predict_proba(matrix).max(axis=1).tolist()  # type: ignore[no-any-return]

    return score


def register(ctx: PipelineContext) -> None:
    params = ctx.params_of(TaskgenParams)
    annotator = ctx.params_of(AnnotatorParams)
    pool_size = annotator.pool_size
    n_features = ctx.params_of(FeaturesParams).dimensions
    book = model_book(ctx)
    rng = random.Random(params.seed)
    per_second = params.max_tasks_per_minute / 60.0
    samplers: dict[str, ClassifierSampler] = {}
    buckets: dict[str, TokenBucket] = {}

    def add(spec: ClassifierSpec) -> None:
        samplers[spec.name] = ClassifierSampler(
            buffer_size=params.buffer_size,
            active_fraction=params.active_fraction,
            strategy=params.strategy,
            uncertainty_sample=params.uncertainty_sample,
            label_budget=params.label_budget,
            near_dup_bits=params.near_dup_bits,
            near_dup_memory=params.near_dup_memory,
            rng=rng,
            answers=AnswerBudget(params.answer_budget, annotator.most_answers),
        )
        buckets[spec.name] = TokenBucket(
            per_second, max(per_second * params.round_interval_s, 1.0), time.monotonic()
        )

    ctx.catalog.on_added(add)

    governor = LoadGovernor(params.backlog_low, params.backlog_high, params.load_floor)
    #: Crowd tasks from every source without an outcome yet: the crowd's backlog.
    unanswered: set[str] = set()
    answered = Outcomes()

    async def restore(records: Sequence[ConsumerRecord]) -> None:
        await ctx.catalog.caught_up.wait()  # tasks of classifiers added at run time
        # Not ours to judge: the annotator rejects bad tasks.
        for task in decode_valid(Task, (record.value for record in records)):
            if task.task_id not in answered:
                unanswered.add(task.task_id)
            answered.task_read(task.task_id)
            if task.job is not None:
                continue  # a job's task: its item is not a training pick
            sampler = samplers.get(task.classifier)
            if sampler is not None:
                sampler.mark_issued(task.item_id, task.sig, task.task_id)

    async def outcomes(records: Sequence[ConsumerRecord]) -> None:
        await ctx.catalog.caught_up.wait()
        # The learner rejects bad labels.
        for label in decode_valid(Label, (record.value for record in records)):
            if label.task_id is None:
                continue
            answered.read(label.task_id, gold=label.kind == "gold")
            unanswered.discard(label.task_id)
            sampler = samplers.get(label.classifier)
            if label.job is None and sampler is not None:
                sampler.answers.closed(label.task_id, len(label.answers), gold=label.kind == "gold")
            if label.status == "shed" and label.job is None and sampler is not None:
                # A training task shed from a full crowd queue was never labeled.
                sampler.mark_shed(label.item_id, label.task_id)

    logs = (ctx.follow("crowd.tasks", PE, restore), ctx.follow("crowd.labels", PE, outcomes))

    async def taskgen(batch: FeatureBatch) -> Pending:
        # The buffers keep the latest buffer_size items: older ones of a big batch
        # would be evicted by the batch itself.
        tail = slice(max(len(batch) - params.buffer_size, 0), None)
        labeling = ctx.catalog.labeling()  # a paused classifier gets no new picks
        for item, (idx, val), sig in zip(
            batch.items[tail], batch.rows[tail], batch.sigs[tail], strict=True
        ):
            truth = item.meta.get("truth")
            truth_map = truth if isinstance(truth, dict) else {}
            for spec in labeling:
                value = truth_map.get(spec.truth_field)
                samplers[spec.name].offer(
                    Candidate(
                        item.id,
                        item.text,
                        idx,
                        val,
                        sig,
                        {spec.name: str(value)} if value is not None else {},
                        item.ts_in,
                        item.source,
                    )
                )
        ctx.metrics.items_in.labels(ctx.pipeline, PE).inc(len(batch))
        return []

    async def issue_round() -> None:
        if not all(log_.caught_up.is_set() for log_ in logs):
            return  # budget and issued items (less those shed) are not known yet
        backlog = len(unanswered)
        cap = governor.confidence_cap(backlog)
        ctx.metrics.crowd_backlog.labels(ctx.pipeline).set(backlog)
        ctx.metrics.confidence_cap.labels(ctx.pipeline).set(cap)
        pending = []
        for spec in ctx.catalog.labeling():
            sampler, bucket = samplers[spec.name], buckets[spec.name]
            skipped = sampler.near_duplicates
            # A round is one task per pool worker (CLAMShell's p), within the cap.
            round_size = min(bucket.available(time.monotonic()), pool_size)
            picks = sampler.select(
                round_size,
                _scorer(book, spec.name),
                max_confidence=cap,
                passive_share=governor.passive_share(backlog),
            )
            bucket.take(len(picks))
            ctx.metrics.near_duplicates.labels(ctx.pipeline, spec.name).inc(
                sampler.near_duplicates - skipped
            )
            for candidate, kind in picks:
                # Named by the item and its attempt: a replay of the logs names it again
                # the same way, and a task issued again after a shed gets a new name.
                attempt = sampler.attempt(candidate.item_id)
                name = f"{ctx.pipeline}/{spec.name}/{candidate.item_id}/{attempt}"
                task = Task(
                    task_id=uuid.uuid5(uuid.NAMESPACE_URL, name).hex,
                    item_id=candidate.item_id,
                    classifier=spec.name,
                    question=spec.question,
                    tags=spec.tags,
                    na_allowed=spec.na_allowed,
                    examples=spec.task_examples(),
                    text=candidate.text,
                    idx=candidate.idx,
                    val=candidate.val,
                    kind=kind,
                    created=time.time(),
                    truth=candidate.truth.get(spec.name),
                    sig=candidate.sig,
                    ts_in=candidate.ts_in,
                    source=candidate.source,
                    priority=params.priority,
                )
                sampler.mark_issued(task.item_id, task.sig, task.task_id)
                pending.append(await ctx.send("crowd.tasks", task.item_id, encode(task)))
                ctx.metrics.crowd_tasks.labels(ctx.pipeline, spec.name, kind).inc()
                log.debug(
                    "task issued (%s)",
                    kind,
                    extra={
                        "item_id": task.item_id,
                        "task_id": task.task_id,
                        "classifier": spec.name,
                    },
                )
        await ctx.flush(pending)
        ctx.metrics.items_out.labels(ctx.pipeline, PE).inc(len(pending))

    ctx.durable(
        PE,
        lambda: {
            "samplers": {name: sampler.snapshot() for name, sampler in samplers.items()},
            "unanswered": sorted(unanswered),
        },
    )
    ctx.consume("items.features", PE, skipping_decoder(n_features), taskgen)
    ctx.timer(params.round_interval_s, f"{ctx.pipeline}.taskgen.round", issue_round)
