"""Topology declarations: which PEs a pipeline runs, its classifiers and parameters.

A topology is a YAML file under ``pipelines/`` (or any path), validated at start and
printable as a graph with ``crowdstream topology``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from channels.topics import TopicSpec, pipeline_topics
from pe.params import ClassifierSpec, CollectorParams
from pe.registry import PeSpec, import_pe_modules, params_model, params_of, pe_spec, pe_specs
from pipelines.sample import known_tags

__all__ = [
    "Topology",
    "TopologyError",
    "load_topology",
    "render_graph",
]

BUILTIN_DIR = Path(__file__).parent


class TopologyError(ValueError):
    """A topology file is missing or invalid; the message says where."""


def _pe_params(value: Any) -> BaseModel:
    model = params_model()
    return value if isinstance(value, model) else model.model_validate(value or {})


class Topology(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,47}$")
    description: str = ""
    #: JSON lines whose ``meta.truth`` tags give every classifier its gold questions
    #: (relative to the topology file); read when the topology is loaded.
    gold_file: str | None = None
    #: Modules to import before the rest is read: they register PEs of their own.
    modules: list[str] = Field(default_factory=list)
    classifiers: list[ClassifierSpec] = Field(min_length=1)
    #: The PEs to run, by registered name (pe.registry); default: every one.
    pes: list[str] = Field(default_factory=lambda: [spec.name for spec in pe_specs()])
    #: One section per PE with parameters, and ``shedding``: pe.registry.params_model().
    params: Annotated[SerializeAsAny[BaseModel], BeforeValidator(_pe_params)] = Field(
        default_factory=lambda: params_model()()
    )

    @model_validator(mode="before")
    @classmethod
    def _import_modules(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("modules"), list):
            import_pe_modules(str(module) for module in data["modules"])
        return data

    @model_validator(mode="after")
    def _check(self) -> Topology:
        names = [c.name for c in self.classifiers]
        if len(set(names)) != len(names):
            raise ValueError("classifier names must be unique")
        if len(set(self.pes)) != len(self.pes):
            raise ValueError("each PE may be listed once")
        for pe in self.pes:
            pe_spec(pe)  # an unknown name is an error that lists the known ones
        return self

    def specs(self) -> list[PeSpec]:
        """The declarations of the PEs this topology runs, in data-flow order."""
        return [spec for spec in pe_specs() if spec.name in self.pes]

    def classifier(self, name: str) -> ClassifierSpec:
        for spec in self.classifiers:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def topics(self, partitions: int) -> dict[str, TopicSpec]:
        more = {key: kind for spec in self.specs() for key, kind in spec.channels.items()}
        return pipeline_topics(self.name, partitions, more)


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
    if isinstance(raw, dict) and raw.get("gold_file"):
        raw = _with_gold(raw, path.parent / str(raw["gold_file"]), path.name)
    try:
        return Topology.model_validate(raw)
    except ValidationError as exc:
        raise TopologyError(f"{path.name}: invalid topology:\n{exc}") from None


def _with_gold(raw: dict[str, Any], gold_file: Path, name: str) -> dict[str, Any]:
    """``raw`` with the gold questions of ``gold_file`` on each classifier that lists
    none of its own."""
    classifiers = raw.get("classifiers")
    if not isinstance(classifiers, list):
        return raw  # validation says what is wrong
    if not gold_file.is_file():
        raise TopologyError(f"{name}: gold_file {gold_file} does not exist")
    specs = [c for c in classifiers if isinstance(c, dict) and "name" in c]
    known = known_tags(
        {str(c["name"]): str(c.get("truth_key") or c["name"]) for c in specs}, gold_file
    )
    filled = []
    for spec in classifiers:
        if isinstance(spec, dict) and "name" in spec and not spec.get("gold"):
            tags = set(spec.get("tags") or [])
            gold = [
                {"id": item_id, "text": text, "tag": tag}
                for item_id, text, tag in known[str(spec["name"])]
                if tag in tags
            ]
            spec = {**spec, "gold": gold}
        filled.append(spec)
    return {**raw, "classifiers": filled}


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
    for declared in topology.specs():
        inputs, outputs, pe = declared.inputs, declared.outputs, declared.name
        if pe == "collector" and params_of(topology.params, CollectorParams).source_topic is None:
            inputs = tuple(i for i in inputs if not i.startswith("kafka:"))
        src = ", ".join(_topic_label(i, topics) for i in inputs)
        dst = ", ".join(_topic_label(o, topics) for o in outputs)
        lines.append(f"  [{src}] --> ({pe}) --> [{dst}]")
    return "\n".join(lines)


def _topic_label(key: str, topics: dict[str, TopicSpec]) -> str:
    return topics[key].name if key in topics else key
