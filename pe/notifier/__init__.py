"""Notifier PE: the pipeline's events as signed HTTP POSTs to the topology's webhooks.

Input: ``control.models`` (a model published: ``model.published``, only models
signed with ``model_key``), ``control.classifiers`` (``classifier.added``,
``.paused``, ``.resumed``, ``.retired``, ``.gold_added``), ``jobs.results`` (a job's
final status: ``job.finished``) and, with ``label_latency_p95_s`` set,
``crowd.labels`` (``label.latency_missed``: pe.notifier.latency), read in the
notifier's consumer groups.
Output: POSTs to each webhook subscribed to the event: a JSON body ``{"event",
"pipeline", "delivery", "data"}``, signed with ``webhook_secret`` (headers
``X-Crowdstream-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<body>">``,
``X-Crowdstream-Timestamp``, ``X-Crowdstream-Event``, ``X-Crowdstream-Delivery``).
State: the newest deliveries and their outcome, for ``GET /api/v1/webhooks`` (not
durable: the counts are in the metrics).
Guarantee: at least once per event and webhook, within ``attempts`` tries with
backoff; a batch's offsets are committed once each of its deliveries succeeded or
gave up. The same event always has the same ``delivery`` id, for receivers to
drop duplicates. Events older than ``max_age_s`` when read are not sent. A webhook
that fails holds only the notifier's reading, never the pipeline's.
Metrics: ``crowdstream_webhooks_total{event, outcome}`` (delivered, failed).
Run one notifier per pipeline.
"""

from pe.params import NotifierParams
from pe.registry import PeSpec, register_pe

__all__ = ["SPEC"]

SPEC = register_pe(
    PeSpec(
        name="notifier",
        package=__name__,
        summary="the pipeline's events as signed webhooks",
        inputs=("control.models", "control.classifiers", "jobs.results", "crowd.labels"),
        outputs=("http:webhooks",),
        agents="pe.notifier.agent:register",
        params=NotifierParams,
        singleton=True,
    )
)
