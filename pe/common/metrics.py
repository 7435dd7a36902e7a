"""Prometheus metrics of a worker, declared once.

Labels are low-cardinality on purpose: pipeline, PE, classifier, a reason category.
Never item or worker ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LATENCY_BUCKETS", "Metrics"]

#: End-to-end and processing latencies range from a millisecond (one fused batch)
#: to tens of seconds (a worker that falls behind); these buckets resolve both ends.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Crowd answers take seconds to minutes.
CROWD_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
POSTERIOR_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
ANSWER_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0)


@dataclass(frozen=True)
class Metrics:
    items_in: Counter
    items_out: Counter
    items_rejected: Counter
    items_shed: Counter
    keep_fraction: Gauge
    batch_seconds: Histogram
    e2e_latency: Histogram
    crowd_tasks: Counter
    near_duplicates: Counter
    crowd_answers: Counter
    crowd_labels: Counter
    crowd_label_answers: Histogram
    crowd_label_posterior: Histogram
    crowd_gold: Counter
    crowd_answer_seconds: Histogram
    crowd_queue: Gauge
    consumer_lag: Gauge
    stream_stalled: Gauge
    broker_up: Gauge
    pool_workers: Gauge
    crowd_task_seconds: Histogram
    pool_events: Counter
    crowd_cost: Gauge
    model_version: Gauge
    model_auc: Gauge
    model_auc_low: Gauge
    model_auc_high: Gauge
    models_trained: Counter
    learner_labels: Gauge
    learner_trained: Gauge
    teacher_sample: Gauge
    models_refused: Counter
    jobs: Gauge
    job_tasks: Counter
    crowd_backlog: Gauge
    confidence_cap: Gauge
    crowd_tags: Counter
    revisions: Counter
    second_opinions: Counter
    second_opinion_waiting: Gauge
    second_opinion_embeddings: Counter
    webhooks: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(f"crowdstream_{name}", doc, ["pipeline", *labels], registry=registry)

        def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
            return Gauge(f"crowdstream_{name}", doc, ["pipeline", *labels], registry=registry)

        def histogram(
            name: str, doc: str, labels: list[str], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(
                f"crowdstream_{name}",
                doc,
                ["pipeline", *labels],
                buckets=buckets,
                registry=registry,
            )

        return cls(
            items_in=counter("items_in", "Records a PE read.", ["pe"]),
            items_out=counter("items_out", "Records a PE wrote to its output topic.", ["pe"]),
            items_rejected=counter(
                "items_rejected", "Records a PE sent to items.rejected.", ["pe", "reason"]
            ),
            items_shed=counter(
                "items_shed", "Records a PE dropped to keep up (load shedding).", ["pe", "reason"]
            ),
            keep_fraction=gauge(
                "shedding_keep_fraction",
                "Fraction of unprotected records a PE keeps (1: no shedding).",
                ["pe"],
            ),
            batch_seconds=histogram(
                "batch_processing_seconds",
                "Time a PE spent on one batch.",
                ["pe"],
                LATENCY_BUCKETS,
            ),
            e2e_latency=histogram(
                "end_to_end_latency_seconds",
                "ts_out - ts_in of classified items.",
                [],
                LATENCY_BUCKETS,
            ),
            crowd_tasks=counter("crowd_tasks", "Crowd tasks issued.", ["classifier", "kind"]),
            near_duplicates=counter(
                "near_duplicates",
                "Items the task generator skipped as near-duplicates of issued ones.",
                ["classifier"],
            ),
            crowd_answers=counter("crowd_answers", "Crowd answers received.", ["classifier"]),
            crowd_labels=counter(
                "crowd_labels", "Aggregated crowd labels.", ["classifier", "outcome"]
            ),
            crowd_label_answers=histogram(
                "crowd_label_answers",
                "Answers per settled label task (adaptive redundancy buys more only "
                "where answers disagree).",
                ["classifier"],
                ANSWER_BUCKETS,
            ),
            crowd_label_posterior=histogram(
                "crowd_label_posterior",
                "The quality loop's posterior of each aggregated label's tag.",
                ["classifier"],
                POSTERIOR_BUCKETS,
            ),
            crowd_gold=counter("crowd_gold", "Gold questions answered, by outcome.", ["outcome"]),
            crowd_answer_seconds=histogram(
                "crowd_answer_seconds",
                "Time from assignment to answer (simulated or real).",
                [],
                CROWD_BUCKETS,
            ),
            crowd_queue=gauge("crowd_queue", "Crowd tasks waiting for a worker.", []),
            stream_stalled=gauge(
                "stream_stalled",
                "1 while a data-plane reader gets no records though the broker holds unread "
                "ones for it (the worker is then not ready), else 0.",
                ["topic"],
            ),
            consumer_lag=gauge(
                "consumer_lag",
                "Records a data-plane reader of this worker is behind the end of its partitions.",
                ["topic"],
            ),
            broker_up=gauge(
                "broker_up",
                "1 while the broker answers this worker's probes, 0 during an outage.",
                [],
            ),
            pool_workers=gauge(
                "pool_workers",
                "Workers in the retainer pool (qualifying, available, working).",
                ["state"],
            ),
            crowd_task_seconds=histogram(
                "crowd_task_seconds",
                "Time from a crowd task's arrival in the pool to its last needed answer.",
                [],
                CROWD_BUCKETS,
            ),
            pool_events=counter(
                "pool_events",
                "Retainer pool events: duplicates (straggler mitigation), gold questions "
                "handed out, terminations, releases (pool maintenance: release for the "
                "slow, release_low_quality for the inaccurate), recruits asked for, "
                "departures.",
                ["event"],
            ),
            crowd_cost=gauge(
                "crowd_cost",
                'Crowd pay so far: waiting (per minute, job="pool") and work (per '
                "record, terminated work included) by job (the classifier the task was for).",
                ["kind", "job"],
            ),
            model_version=gauge("model_version", "Active model version.", ["classifier"]),
            model_auc=gauge("model_auc", "Held-out AUC of the active model.", ["classifier"]),
            model_auc_low=gauge(
                "model_auc_low",
                "Lower end of the 95% confidence interval of the active model's held-out AUC.",
                ["classifier"],
            ),
            model_auc_high=gauge(
                "model_auc_high",
                "Upper end of the 95% confidence interval of the active model's held-out AUC.",
                ["classifier"],
            ),
            learner_labels=gauge(
                "learner_labels",
                "Crowd labels the learner holds for a classifier (training and held out).",
                ["classifier"],
            ),
            learner_trained=gauge(
                "learner_trained_labels",
                "Crowd labels the learner's last finished training of a classifier saw.",
                ["classifier"],
            ),
            teacher_sample=gauge(
                "learner_teacher_sample",
                "The learner's sample of the stream for its teacher (pe.learner.teacher): its "
                "items (state=sampled), and those embedded for the teacher (state=embedded).",
                ["state"],
            ),
            models_trained=counter(
                "models_trained", "Models the learner trained.", ["classifier", "outcome"]
            ),
            models_refused=counter(
                "models_refused",
                "Model updates a worker ignored: unsigned, tampered, unknown schema version, "
                "invalid, or stale (not newer than the active model).",
                ["reason"],
            ),
            jobs=gauge("jobs", "Jobs by kind and status.", ["kind", "status"]),
            job_tasks=counter("job_tasks", "Crowd tasks jobs issued.", ["kind"]),
            crowd_backlog=gauge(
                "crowd_backlog",
                "Crowd tasks (every source) issued and not answered, shed or withdrawn yet.",
                [],
            ),
            confidence_cap=gauge(
                "taskgen_confidence_cap",
                "Model confidence under which the task generator still sends items to the "
                "crowd (1: no limit; it falls as the crowd backlog grows).",
                [],
            ),
            crowd_tags=counter(
                "crowd_tags",
                "Tags the classifier took from crowd labels rather than its model: the "
                "item's own (source crowd) or a near-duplicate's (propagated).",
                ["classifier", "source"],
            ),
            revisions=counter(
                "revisions",
                "Records the classifier wrote again on items.classified, revised by a crowd "
                "label of the item, by the label's classifier.",
                ["classifier"],
            ),
            second_opinions=counter(
                "second_opinions",
                "Tags the classifier's second pass (pe.classifier.second_opinion) decided again "
                "(outcome kept or changed), shed from its full queue (shed), or dropped after "
                "waiting longer than second_opinion_max_age_s (expired).",
                ["classifier", "outcome"],
            ),
            second_opinion_waiting=gauge(
                "second_opinion_waiting",
                "Items queued for the classifier's second pass or being decided again.",
                [],
            ),
            second_opinion_embeddings=counter(
                "second_opinion_embeddings",
                "Embeddings the classifier's second pass used, by source: computed by the "
                "encoder, or a near-duplicate's (remembered, or embedded in the same batch).",
                ["source"],
            ),
            webhooks=counter(
                "webhooks",
                "Webhook deliveries by event and outcome (delivered, or failed after every try).",
                ["event", "outcome"],
            ),
        )
