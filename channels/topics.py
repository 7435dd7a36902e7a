"""Topic declarations: names, partition counts and retention of every channel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CHANNELS", "Channel", "TopicPolicy", "TopicSpec", "pipeline_topics"]

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


@dataclass(frozen=True)
class Channel:
    """How a channel is kept. A data-flow channel is partitioned by item id (the
    pipeline's partition count); a control channel has one partition, so its order
    is total. Paid-for or state-rebuilding logs are kept forever or compacted; the
    others get the retention of the TopicPolicy."""

    data_flow: bool = True
    compacted: bool = False
    keep_forever: bool = False


#: The channels of every pipeline; a PE may declare more (pe.registry.PeSpec.channels).
CHANNELS: dict[str, Channel] = {
    "items.raw": Channel(),
    "items.features": Channel(),
    "items.classified": Channel(),
    "items.rejected": Channel(),
    "crowd.tasks": Channel(keep_forever=True),
    "crowd.labels": Channel(keep_forever=True),
    "control.models": Channel(data_flow=False, compacted=True),
    # Every model published, without its weights (ModelHeader): its learning history.
    "models.history": Channel(data_flow=False, keep_forever=True),
    # The classifiers operators added, paused or retired, by name (pe.common.catalog).
    "control.classifiers": Channel(data_flow=False, compacted=True),
    # The retainer pool's workers (qualification, marks, latency), by worker id.
    "crowd.pool": Channel(data_flow=False, compacted=True),
    # Jobs: the event log of every job (rebuilds their state), and their results.
    "jobs": Channel(keep_forever=True),
    "jobs.results": Channel(keep_forever=True),
}


def pipeline_topics(
    pipeline: str, partitions: int, more: Mapping[str, Channel] | None = None
) -> dict[str, TopicSpec]:
    """All topics of ``pipeline`` (and of the channels ``more`` declares), by logical
    name."""
    channels = {**CHANNELS, **(more or {})}
    return {
        key: TopicSpec(
            key=key,
            name=f"{pipeline}.{key}",
            partitions=partitions if channel.data_flow else 1,
            compacted=channel.compacted,
            keep_forever=channel.keep_forever,
        )
        for key, channel in channels.items()
    }
