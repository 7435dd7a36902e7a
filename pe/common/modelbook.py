"""The active model of every classifier in this worker, fed by ``control.models``.

Every process follows the whole compacted topic (see channels.follower), so each
classifier instance gets every model, and a restarted one starts from the latest.
A model is swapped in between two batches: a batch is classified by one model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import ConsumerRecord

from channels.codec import DecodeError, decode
from channels.records import ModelUpdate
from pe.common.context import PipelineContext
from pe.common.linear import CompiledModel, compile_model

__all__ = ["ModelBook", "model_book"]

log = logging.getLogger(__name__)


class ModelBook:
    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        self._names = set(ctx.classifier_names())
        self._n_features = ctx.params.features.dimensions
        self.updates: dict[str, ModelUpdate] = {}
        self.compiled: dict[str, CompiledModel] = {}
        self._follower = ctx.follow("control.models", self.apply)

    @property
    def caught_up(self) -> asyncio.Event:
        """Set once every model already on the topic has been read."""
        return self._follower.caught_up

    def version(self, classifier: str) -> int:
        update = self.updates.get(classifier)
        return update.version if update else 0

    def apply(self, records: Sequence[ConsumerRecord]) -> None:
        """Take the newest valid model of each classifier from ``records``."""
        for record in records:
            try:
                update = decode(ModelUpdate, record.value)
            except DecodeError as exc:
                log.error("ignoring a bad model message: %s", exc)
                self._ctx.metrics.items_rejected.labels(
                    self._ctx.pipeline, "modelbook", exc.kind
                ).inc()
                continue
            if update.classifier not in self._names:
                log.warning("ignoring a model for unknown classifier %r", update.classifier)
                continue
            if update.version <= self.version(update.classifier):
                continue
            try:
                if update.model.n_features != self._n_features:
                    msg = (
                        f"it has {update.model.n_features} features; the pipeline "
                        f"hashes {self._n_features}"
                    )
                    raise ValueError(msg)
                compiled = compile_model(update.model)
            except ValueError as exc:
                log.error("ignoring model %s v%d: %s", update.classifier, update.version, exc)
                self._ctx.metrics.items_rejected.labels(
                    self._ctx.pipeline, "modelbook", "model"
                ).inc()
                continue
            self.updates[update.classifier] = update
            self.compiled[update.classifier] = compiled
            labels = (self._ctx.pipeline, update.classifier)
            self._ctx.metrics.model_version.labels(*labels).set(update.version)
            if update.metrics.auc is not None:
                self._ctx.metrics.model_auc.labels(*labels).set(update.metrics.auc)
            log.info(
                "classifier %s: model v%d active (AUC %s, %d labels)",
                update.classifier,
                update.version,
                update.metrics.auc,
                update.n_train,
            )


def model_book(ctx: PipelineContext) -> ModelBook:
    """The worker's model book, created on first use."""
    return ctx.shared("model_book", lambda: ModelBook(ctx))
