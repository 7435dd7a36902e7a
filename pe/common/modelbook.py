"""The active model of every classifier in this worker, fed by ``control.models``.

Every process follows the whole compacted topic (see runtime.follower), so each
classifier instance gets every model, and a restarted one starts from the latest.
A model is swapped in between two batches: a batch is classified by one model.
An update that is unsigned, signed with another key, of an unknown schema version,
that does not fit the pipeline, or that is not newer than the active model (a stale
learner or a replay) is ignored, logged and counted
(``crowdstream_models_refused_total{reason}``); the active model stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import ConsumerRecord

from channels.records import ModelHeader, ModelUpdate
from channels.signing import ModelRefused
from pe.common.heap import release_free_heap
from pe.common.linear import CompiledModel, compile_model
from pe.params import FeaturesParams
from runtime.context import PipelineContext

__all__ = ["ModelBook", "model_book"]

log = logging.getLogger(__name__)


class ModelBook:
    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        self._catalog = ctx.catalog
        self._n_features = ctx.params_of(FeaturesParams).dimensions
        # Headers only: the weights live on in ``compiled``.
        self.updates: dict[str, ModelHeader] = {}
        self.compiled: dict[str, CompiledModel] = {}
        self._follower = ctx.follow("control.models", "models", self._take)

    @property
    def caught_up(self) -> asyncio.Event:
        """Set once every model already on the topic has been read."""
        return self._follower.caught_up

    def version(self, classifier: str) -> int:
        update = self.updates.get(classifier)
        return update.version if update else 0

    async def _take(self, records: Sequence[ConsumerRecord]) -> None:
        # A model of a classifier added on the running pipeline needs it known.
        await self._catalog.caught_up.wait()
        self.apply(records)

    def apply(self, records: Sequence[ConsumerRecord]) -> None:
        """Take the newest valid model of each classifier from ``records``."""
        taken = False
        for record in records:
            try:
                update = self._ctx.signer.verify(record.value)
                active = self.version(update.classifier)
                if update.version <= active:
                    msg = (
                        f"model {update.classifier} v{update.version} is not newer than "
                        f"the active v{active}: a stale learner or a replay is publishing"
                    )
                    raise ModelRefused(msg, "stale")
                compiled = self._compile(update)
            except ModelRefused as exc:
                log.error("ignoring a model message (offset %d): %s", record.offset, exc)
                self._ctx.metrics.models_refused.labels(self._ctx.pipeline, exc.kind).inc()
                continue
            self.updates[update.classifier] = update.header()
            self.compiled[update.classifier] = compiled
            self._show(update)
            taken = True
        if taken:
            # The decoded weights and the retrain that made them are garbage now.
            release_free_heap()

    def _show(self, update: ModelUpdate) -> None:
        """Metrics and a log line for the model now active."""
        metrics, labels = self._ctx.metrics, (self._ctx.pipeline, update.classifier)
        metrics.model_version.labels(*labels).set(update.version)
        auc, ci = update.metrics.auc, update.metrics.auc_ci
        # A figure the new model lacks (published before intervals, or with no AUC)
        # is withdrawn rather than left showing the previous model's.
        for gauge, value in (
            (metrics.model_auc, auc),
            (metrics.model_auc_low, ci.low if ci else None),
            (metrics.model_auc_high, ci.high if ci else None),
        ):
            if value is not None:
                gauge.labels(*labels).set(value)
            else:
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        log.info(
            "classifier %s: model v%d active (AUC %s, %d labels)",
            update.classifier,
            update.version,
            update.metrics.describe_auc(),
            update.n_train,
        )

    def _compile(self, update: ModelUpdate) -> CompiledModel:
        """The update's model, ready to apply; refused if this pipeline cannot."""
        if self._catalog.get(update.classifier) is None:
            raise ModelRefused(f"unknown classifier {update.classifier!r}", "invalid")
        if update.model.n_features != self._n_features:
            msg = (
                f"model {update.classifier} v{update.version} has "
                f"{update.model.n_features} features; the pipeline hashes {self._n_features}"
            )
            raise ModelRefused(msg, "invalid")
        try:
            return compile_model(update.model)
        except ValueError as exc:
            msg = f"model {update.classifier} v{update.version}: {exc}"
            raise ModelRefused(msg, "invalid") from None


def model_book(ctx: PipelineContext) -> ModelBook:
    """The worker's model book, created on first use."""
    return ctx.shared("model_book", lambda: ModelBook(ctx))
