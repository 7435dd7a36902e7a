"""Topic declarations: names, partition counts and retention of every channel."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicPolicy", "TopicSpec", "pipeline_topics"]

#: Kafka deletes whole segments, never the one being written: a partition holds up to
#: its size bound plus one segment, so segments are a fraction of that bound.
_SEGMENTS_PER_BOUND = 4
_MAX_SEGMENT_BYTES = 1024**3


@dataclass(frozen=True)
class TopicPolicy:
    """How the topics crowdstream creates are kept and replicated."""

    replication_factor: int = 1
    #: Time and per-partition size bounds of the data-flow topics (None: unbounded).
    retention_ms: int | None = None
    retention_bytes: int | None = None

    @property
    def min_insync_replicas(self) -> int:
        """Replicas that must have a write before it is acknowledged: 2 of 3, so one
        broker may die without losing or refusing a write."""
        return max(1, min(2, self.replication_factor - 1))


@dataclass(frozen=True)
class TopicSpec:
    """One channel of a pipeline."""

    key: str  #: logical name, e.g. ``items.raw``
    name: str  #: Kafka topic name, prefixed by the pipeline, e.g. ``crisis.items.raw``
    partitions: int
    compacted: bool = False
    #: Keep forever: crowd labels and tasks are paid for and rebuild PE state.
    keep_forever: bool = False

    def configs(self, policy: TopicPolicy) -> dict[str, str]:
        """Topic configuration for CreateTopics; the policy's retention bounds apply to
        topics that are neither compacted nor kept forever."""
        configs = {"min.insync.replicas": str(policy.min_insync_replicas)}
        if self.compacted:
            configs["cleanup.policy"] = "compact"
        if self.keep_forever:
            configs["retention.ms"] = "-1"
            configs["retention.bytes"] = "-1"
        elif not self.compacted:
            if policy.retention_ms is not None:
                configs["retention.ms"] = str(policy.retention_ms)
            if policy.retention_bytes is not None:
                configs["retention.bytes"] = str(policy.retention_bytes)
                segment = policy.retention_bytes // _SEGMENTS_PER_BOUND
                configs["segment.bytes"] = str(min(max(segment, 1024 * 1024), _MAX_SEGMENT_BYTES))
        return configs


#: logical name -> (data flow?, compacted, keep forever). Data-flow topics are
#: partitioned by item id; control topics have one partition so order is total.
_CHANNELS: dict[str, tuple[bool, bool, bool]] = {
    "items.raw": (True, False, False),
    "items.features": (True, False, False),
    "items.classified": (True, False, False),
    "items.rejected": (True, False, False),
    "crowd.tasks": (True, False, True),
    "crowd.labels": (True, False, True),
    "control.models": (False, True, False),
    # The retainer pool's workers (qualification, marks, latency), by worker id.
    "crowd.pool": (False, True, False),
    # Jobs: the event log of every job (rebuilds their state), and their results.
    "jobs": (True, False, True),
    "jobs.results": (True, False, True),
}


def pipeline_topics(pipeline: str, partitions: int) -> dict[str, TopicSpec]:
    """All topics of ``pipeline``, by logical name."""
    return {
        key: TopicSpec(
            key=key,
            name=f"{pipeline}.{key}",
            partitions=partitions if data_flow else 1,
            compacted=compacted,
            keep_forever=forever,
        )
        for key, (data_flow, compacted, forever) in _CHANNELS.items()
    }
