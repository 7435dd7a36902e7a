"""The PE registry: one declaration per PE, from which topologies, wiring and logs
derive, and through which a user's PE joins a pipeline."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from channels.topics import Channel
from config import load_settings
from examples.language import language_of
from pe.params import LearnerParams
from pe.registry import PeSpec, pe_of_logger, pe_specs, register_pe, unregister_pe
from pipelines.app import build_worker
from pipelines.topology import Topology, load_topology, render_graph
from runtime.context import PipelineContext
from runtime.dataflow import Pending

EXAMPLE = Path(__file__).parents[2] / "examples" / "language.yaml"


def _reads_undeclared(ctx: PipelineContext) -> None:
    async def sink(unit: object) -> Pending:
        return []

    async def decode(records: Sequence[ConsumerRecord]) -> tuple[object, Pending]:
        return records, []

    ctx.consume("crowd.labels", "sneaky", decode, sink)


@pytest.fixture
def sneaky() -> Iterator[PeSpec]:
    spec = register_pe(
        PeSpec(
            name="sneaky",
            package="tests.unit.test_registry",
            summary="reads more than it says",
            inputs=("items.raw",),
            outputs=(),
            agents=f"{__name__}:_reads_undeclared",
        )
    )
    yield spec
    unregister_pe("sneaky")


def test_the_built_in_pes_are_declared_once_in_data_flow_order() -> None:
    names = [spec.name for spec in pe_specs()][:8]
    assert names == [
        "collector",
        "features",
        "classifier",
        "taskgen",
        "jobs",
        "annotator",
        "learner",
        "notifier",
    ]
    singletons = {spec.name for spec in pe_specs() if spec.singleton}
    assert singletons == {"taskgen", "jobs", "annotator", "learner", "notifier"}


def test_a_topology_naming_an_unknown_pe_is_refused_with_the_known_ones() -> None:
    data = load_topology("crisis").model_dump(mode="json")
    with pytest.raises(ValueError, match="unknown PE 'spellcheck'; known: collector, features"):
        Topology.model_validate({**data, "pes": ["collector", "spellcheck"]})


def test_a_user_pe_joins_through_its_module_with_its_channel_params_and_logs() -> None:
    topology = load_topology(str(EXAMPLE))
    assert "language" in topology.pes
    assert topology.topics(4)["items.languages"].name == "crisis-language.items.languages"
    assert topology.topics(4)["items.languages"].partitions == 4
    graph = render_graph(topology, 4)
    assert (
        "[crisis-language.items.features] --> (language) --> [crisis-language.items.languages]"
        in graph
    )
    assert pe_of_logger("examples.language") == "language"
    data = topology.model_dump(mode="json")
    data["params"]["language"] = {"english_share": 2}
    with pytest.raises(ValueError, match="english_share"):
        Topology.model_validate(data)


def test_a_missing_pe_module_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    text = EXAMPLE.read_text().replace("examples.language", "examples.nowhere")
    path.write_text(text.replace("../pipelines", str(EXAMPLE.parents[1] / "pipelines")))
    with pytest.raises(ValueError, match="PE module 'examples.nowhere' cannot be imported"):
        load_topology(str(path))


def test_a_pe_reading_a_channel_it_did_not_declare_is_refused_at_wiring(
    sneaky: PeSpec, tmp_path: Path
) -> None:
    topology = Topology.model_validate(
        {**load_topology("crisis").model_dump(mode="json"), "pes": ["sneaky"]}
    )
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ValueError, match="PE 'sneaky' reads 'crowd.labels'"):
        build_worker(settings, topology, embedded=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "learner"}, "a PE named 'learner' is already registered"),
        ({"params": LearnerParams}, "share the parameter model LearnerParams"),
        ({"channels": {"crowd.labels": Channel()}}, "declares channel 'crowd.labels'"),
    ],
)
def test_a_declaration_that_clashes_is_refused(change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "name": "clash",
        "package": "tests.unit.test_registry",
        "summary": "",
        "inputs": (),
        "outputs": (),
        "agents": f"{__name__}:_reads_undeclared",
    }
    with pytest.raises(ValueError, match=message):
        register_pe(PeSpec(**{**base, **change}))  # type: ignore[arg-type]
    assert "clash" not in {spec.name for spec in pe_specs()}


@pytest.mark.parametrize(
    ("text", "script", "language"),
    [
        ("We need water and food in Leogane, please help", "LATIN", "en"),
        ("Nou bezwen dlo ak manje nan Leogane", "LATIN", "und"),
        ("نحتاج إلى الماء", "ARABIC", "und"),
        ("1234 !!", "NONE", "und"),
    ],
)
def test_the_example_pe_tells_the_script_and_english(text: str, script: str, language: str) -> None:
    tag = language_of(text, english_share=0.2)
    assert (tag.script, tag.language) == (script, language)
