"""Topic declarations: names, partition counts and retention of every channel."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicSpec", "pipeline_topics"]


@dataclass(frozen=True)
class TopicSpec:
    """One channel of a pipeline."""

    key: str  #: logical name, e.g. ``items.raw``
    name: str  #: Kafka topic name, prefixed by the pipeline, e.g. ``crisis.items.raw``
    partitions: int
    compacted: bool = False
    #: Keep forever: crowd labels and tasks are paid for and rebuild PE state.
    keep_forever: bool = False

    def configs(self, retention_ms: int | None = None) -> dict[str, str]:
        """Topic configuration for CreateTopics; ``retention_ms`` applies to topics
        that are neither compacted nor kept forever."""
        configs: dict[str, str] = {}
        if self.compacted:
            configs["cleanup.policy"] = "compact"
        if self.keep_forever:
            configs["retention.ms"] = "-1"
        elif retention_ms is not None and not self.compacted:
            configs["retention.ms"] = str(retention_ms)
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
