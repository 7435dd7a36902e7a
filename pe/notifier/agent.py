"""The notifier's agents: events from the control logs (and, with a label-latency
objective, from the crowd's labels), posted to the webhooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import ConsumerRecord
from pydantic import BaseModel, Field, ValidationError

from channels.codec import decode_valid
from channels.jobs import TERMINAL, job_status
from channels.records import Label
from channels.signing import ModelRefused
from pe.common.api import Call, Endpoint
from pe.common.catalog import ClassifierRecord
from pe.common.http import OperatorAccess
from pe.notifier.delivery import Delivery, Event, Sender
from pe.notifier.latency import LatencyObjective
from pe.params import NotifierParams
from runtime.context import PipelineContext
from runtime.dataflow import Decoder, Pending

__all__ = ["register"]

log = logging.getLogger(__name__)

PE = "notifier"


class DeliveryList(BaseModel):
    deliveries: list[Delivery] = Field(description="The newest deliveries, newest first.")


def register(ctx: PipelineContext) -> None:
    params = ctx.params_of(NotifierParams)
    if not params.webhooks:
        log.info("notifier: no webhooks in the topology; nothing to send")
        return
    if ctx.settings.webhook_secret is None:
        msg = "the topology lists webhooks: set webhook_secret (CROWDSTREAM_WEBHOOK_SECRET)"
        raise ValueError(msg)
    sender = Sender(
        ctx.pipeline,
        ctx.settings.webhook_secret.get_secret_value().encode(),
        attempts=params.attempts,
        timeout_s=params.timeout_s,
    )

    def model_events(record: ConsumerRecord) -> Iterable[Event]:
        try:
            update = ctx.signer.verify(record.value)
        except ModelRefused:
            return  # the classifiers refuse it, and count it
        metrics = update.metrics
        yield Event(
            "model.published",
            f"{update.classifier}/{update.version}",
            {
                "classifier": update.classifier,
                "version": update.version,
                "family": update.family,
                "created": update.created,
                "n_train": update.n_train,
                "n_holdout": update.n_holdout,
                "auc": metrics.auc,
                "auc_ci": metrics.auc_ci.model_dump() if metrics.auc_ci else None,
                "accuracy": metrics.accuracy,
            },
        )

    def classifier_events(record: ConsumerRecord) -> Iterable[Event]:
        try:
            change = ClassifierRecord.model_validate_json(record.value or b"")
        except ValidationError:
            return  # every worker dead-letters it
        data: dict[str, Any] = {"classifier": change.name, "state": change.state}
        data |= {"by": change.by, "at": change.at, "question": change.spec.question}
        data["tags"] = change.spec.tags
        yield Event(f"classifier.{change.change}", f"{change.name}/{change.at}", data)

    def job_events(record: ConsumerRecord) -> Iterable[Event]:
        status = job_status(record.value)
        if status is None or status.status not in TERMINAL:
            return
        data = status.model_dump(mode="json", exclude={"window"})
        yield Event("job.finished", f"{status.job_id}/{status.status}", data)

    def batch_decoder(events_of: Callable[[list[ConsumerRecord]], list[Event]]) -> Decoder:
        """The events of a batch's records still news (``max_age_s``)."""

        async def decode(records: Sequence[ConsumerRecord]) -> tuple[list[Event], Pending]:
            oldest_ms = (time.time() - params.max_age_s) * 1000
            fresh = [r for r in records if r.timestamp >= oldest_ms]
            ctx.metrics.items_in.labels(ctx.pipeline, PE).inc(len(records))
            return events_of(fresh), []

        return decode

    def decoder(events_of: Callable[[ConsumerRecord], Iterable[Event]]) -> Decoder:
        """The events of each record on its own."""
        return batch_decoder(lambda fresh: [e for record in fresh for e in events_of(record)])

    async def deliver(events: list[Event]) -> Pending:
        wanted = [
            (event, str(hook.url))
            for event in events
            for hook in params.webhooks
            if event.name in hook.events
        ]
        for done in await sender.send_all(wanted):
            ctx.metrics.webhooks.labels(ctx.pipeline, done.event, done.outcome).inc()
        ctx.metrics.items_out.labels(ctx.pipeline, PE).inc(len(wanted))
        return []

    if params.label_latency_p95_s is not None:
        objective = LatencyObjective(
            params.label_latency_p95_s, params.latency_window_s, params.latency_min_labels
        )

        def label_events(fresh: list[ConsumerRecord]) -> list[Event]:
            # A malformed label is dead-lettered by the PEs that own the log.
            return objective.take(decode_valid(Label, (r.value for r in fresh)))

        ctx.consume("crowd.labels", PE, batch_decoder(label_events), deliver)
    ctx.consume("control.models", PE, decoder(model_events), deliver)
    ctx.consume("control.classifiers", PE, decoder(classifier_events), deliver)
    ctx.consume("jobs.results", PE, decoder(job_events), deliver)

    async def deliveries(call: Call) -> DeliveryList:
        return DeliveryList(deliveries=list(reversed(sender.recent)))

    ctx.endpoints.append(
        Endpoint(
            "GET",
            "/api/v1/webhooks",
            "list_webhook_deliveries",
            "The newest webhook deliveries and their outcome.",
            run=deliveries,
            access=OperatorAccess.from_settings(ctx.settings),
            response=DeliveryList,
            tag="webhooks",
        )
    )
