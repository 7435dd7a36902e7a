"""Topology declarations: which PEs a pipeline runs, its classifiers and parameters.

A topology is a YAML file under ``pipelines/`` (or any path), validated at start and
printable as a graph with ``crowdstream topology``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from channels.topics import TopicSpec, pipeline_topics
from pe.params import ClassifierSpec, PeParams

__all__ = [
    "PE_NAMES",
    "PeName",
    "Topology",
    "TopologyError",
    "load_topology",
    "render_graph",
]

PeName = Literal["collector", "features", "classifier", "taskgen", "jobs", "annotator", "learner"]
PE_NAMES: tuple[PeName, ...] = (
    "collector",
    "features",
    "classifier",
    "taskgen",
    "jobs",
    "annotator",
    "learner",
)

#: What each PE reads and writes (logical topic names), for validation and the graph.
PE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "collector": (("http:/items", "kafka:<source_topic>"), ("items.raw", "items.rejected")),
    "features": (("items.raw",), ("items.features", "items.rejected")),
    "classifier": (("items.features", "control.models"), ("items.classified", "items.rejected")),
    "taskgen": (
        ("items.features", "control.models", "crowd.tasks", "crowd.labels"),
        ("crowd.tasks",),
    ),
    "jobs": (
        (
            "http:/api/v1/jobs",
            "jobs",
            "items.features",
            "crowd.tasks",
            "crowd.labels",
            "jobs.results",
            "control.models",
        ),
        ("jobs", "crowd.tasks", "jobs.results", "items.rejected"),
    ),
    "annotator": (
        ("crowd.tasks", "crowd.labels", "jobs.results", "crowd.pool"),
        ("crowd.labels", "crowd.pool", "items.rejected"),
    ),
    "learner": (("crowd.labels", "control.models"), ("control.models",)),
}

BUILTIN_DIR = Path(__file__).parent


class TopologyError(ValueError):
    """A topology file is missing or invalid; the message says where."""


class Topology(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,47}$")
    description: str = ""
    classifiers: list[ClassifierSpec] = Field(min_length=1)
    pes: list[PeName] = Field(default_factory=lambda: list(PE_NAMES))
    params: PeParams = PeParams()

    @model_validator(mode="after")
    def _check(self) -> Topology:
        names = [c.name for c in self.classifiers]
        if len(set(names)) != len(names):
            raise ValueError("classifier names must be unique")
        if len(set(self.pes)) != len(self.pes):
            raise ValueError("each PE may be listed once")
        return self

    def classifier(self, name: str) -> ClassifierSpec:
        for spec in self.classifiers:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def topics(self, partitions: int) -> dict[str, TopicSpec]:
        return pipeline_topics(self.name, partitions)


def load_topology(name_or_path: str) -> Topology:
    """Load a built-in pipeline by name (``crisis``) or a topology YAML by path."""
    path = Path(name_or_path)
    if not (path.suffix in {".yaml", ".yml"} or path.is_file()):
        path = BUILTIN_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml")))
        msg = f"no pipeline {name_or_path!r}: not a file, and not a built-in one ({known})"
        raise TopologyError(msg)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TopologyError(f"{path.name}: not valid YAML: {exc}") from None
    try:
        return Topology.model_validate(raw)
    except ValidationError as exc:
        raise TopologyError(f"{path.name}: invalid topology:\n{exc}") from None


def render_graph(topology: Topology, partitions: int) -> str:
    """The PEs and topics of a topology as a text graph, one edge a line."""
    topics = topology.topics(partitions)
    lines = [f"pipeline {topology.name}: {topology.description}".rstrip(": ")]
    lines.append(
        "classifiers: " + ", ".join(f"{c.name} [{'/'.join(c.tags)}]" for c in topology.classifiers)
    )
    lines.append("topics:")
    for spec in topics.values():
        flags = ", compacted" if spec.compacted else ""
        lines.append(f"  {spec.name} ({spec.partitions} partition(s){flags})")
    lines.append("flow:")
    for pe in topology.pes:
        inputs, outputs = PE_IO[pe]
        if pe == "collector" and topology.params.collector.source_topic is None:
            inputs = tuple(i for i in inputs if not i.startswith("kafka:"))
        src = ", ".join(_topic_label(i, topics) for i in inputs)
        dst = ", ".join(_topic_label(o, topics) for o in outputs)
        lines.append(f"  [{src}] --> ({pe}) --> [{dst}]")
    return "\n".join(lines)


def _topic_label(key: str, topics: dict[str, TopicSpec]) -> str:
    return topics[key].name if key in topics else key
