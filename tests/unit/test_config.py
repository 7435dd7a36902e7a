"""Settings sources and topology files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

import pipelines
from config import load_settings
from pe.params import AnnotatorParams, TaskgenParams
from pe.registry import params_of
from pipelines.cli import _topology, main
from pipelines.topology import TopologyError, load_topology, render_graph


def test_defaults_come_from_the_bundled_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CROWDSTREAM_CONFIG", raising=False)
    settings = load_settings()
    assert settings.broker == "kafka://localhost:9092"
    assert settings.bootstrap_servers == ["localhost:9092"]
    # A reverse proxy on this host is trusted, no other peer.
    proxies = settings.proxies
    assert proxies.trusts("127.0.0.1") and proxies.trusts("::1")
    assert not proxies.trusts("127.0.0.2") and not proxies.trusts("10.0.0.1")


def test_yaml_file_then_environment_then_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "site.yaml"
    config.write_text("http_port: 9100\npartitions: 8\n")
    monkeypatch.setenv("CROWDSTREAM_CONFIG", str(config))
    monkeypatch.setenv("CROWDSTREAM_PARTITIONS", "6")
    settings = load_settings(http_port=None, broker="kafka://a:1,kafka://b:2")
    assert settings.http_port == 9100  # from the file
    assert settings.partitions == 6  # the environment beats the file
    assert settings.bootstrap_servers == ["a:1", "b:2"]  # the flag beats both


def test_bad_settings_are_refused_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="kafka://host:port"):
        load_settings(broker="localhost")
    with pytest.raises(ValidationError):
        load_settings(nonsense=1)
    monkeypatch.setenv("CROWDSTREAM_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_settings()


def test_crisis_topology_and_its_graph() -> None:
    topology = load_topology("crisis")
    assert [c.name for c in topology.classifiers] == ["aid_related", "request"]
    assert topology.classifier("request").tags == ["yes", "no"]
    graph = render_graph(topology, partitions=4)
    assert "crisis.control.models (1 partition(s), compacted)" in graph
    assert (
        "[crisis.items.raw, crisis.jobs.results] --> (features) --> "
        "[crisis.items.features, crisis.items.rejected]" in graph
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: x\nclassifiers: [{name: a, question: q, tags: [yes, no]}]\n", "tags"),
        ("name: x\nclassifiers: [{name: a, question: q, tags: ['y', 'y']}]\n", "unique"),
        ("name: x\nclassifiers: [{name: a, question: q, tags: ['y', 'N/A']}]\n", "implicit"),
        ("name: x\nclassifiers: []\n", "classifiers"),
        ("name: x\nclassifiers: [{name: a, question: q, tags: ['y','n']}]\npes: [spam]\n", "pes"),
        (
            "name: x\nclassifiers: [{name: a, question: q, tags: ['y','n']}]\n"
            "params: {annotator: {redundancy: 5, pool_size: 2}}\n",
            "redundancy",
        ),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_topologies_say_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TopologyError, match=words):
        load_topology(str(path))


def test_unknown_pipeline_lists_the_built_in_ones() -> None:
    with pytest.raises(TopologyError, match="crisis"):
        load_topology("nope")


def test_set_overrides_parameters_and_validates_them() -> None:
    settings = load_settings()
    topology = _topology("crisis", settings, ["annotator.speed=20", "taskgen.active_fraction=0"])
    assert params_of(topology.params, AnnotatorParams).speed == 20
    assert params_of(topology.params, TaskgenParams).active_fraction == 0
    with pytest.raises(TopologyError, match="PE.PARAM=VALUE"):
        _topology("crisis", settings, ["speed=20"])
    with pytest.raises(TopologyError, match="invalid --set"):
        _topology("crisis", settings, ["annotator.speed=-1"])
    # A dotted parameter reaches into a group; a scalar is not one.
    nested = _topology("crisis", settings, ["annotator.quality.threshold=0.8"])
    assert params_of(nested.params, AnnotatorParams).quality.threshold == 0.8
    assert params_of(nested.params, AnnotatorParams).quality.max_answers == 5
    with pytest.raises(TopologyError, match="'speed' is not a group"):
        _topology("crisis", settings, ["annotator.speed.x=1"])
    with pytest.raises(TopologyError, match="invalid --set"):
        _topology("crisis", settings, ["annotator.quality.threshold=2"])
    # A plug-in crowd's options are text, whatever YAML makes of them.
    options = [f"annotator.crowd_options.{key}" for key in ("path=rec.jsonl", "n=7", "on=true")]
    plugged = params_of(_topology("crisis", settings, options).params, AnnotatorParams)
    assert plugged.crowd_options == {"path": "rec.jsonl", "n": "7", "on": "true"}


def test_a_crowd_of_your_own_is_checked_when_settings_are_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = "examples.replay_crowd:replay_crowd"
    for crowd in ("simulated", "web", "none", spec):
        assert load_settings(crowd=crowd).crowd == crowd
    with pytest.raises(ValidationError, match="expected simulated, web, none or package.module"):
        load_settings(crowd="simulted")
    with pytest.raises(ValidationError, match="module 'examples.nope' cannot be imported"):
        load_settings(crowd="examples.nope:make")
    # The command line takes any spec, and says what is wrong with a bad one.
    assert main(["up", "--crowd", "examples.replay_crowd:nothing"]) == 2
    assert "module 'examples.replay_crowd' has no 'nothing'" in capsys.readouterr().err


def test_gold_questions_come_from_the_topology_s_gold_file(tmp_path: Path) -> None:
    crisis = load_topology("crisis")
    for spec in crisis.classifiers:
        assert len(spec.gold) > 100 and {q.tag for q in spec.gold} <= set(spec.tags)
    data = yaml.safe_load((Path(pipelines.__file__).parent / "crisis.yaml").read_text())
    own = {"id": "g1", "text": "send water to the camp", "tag": "yes"}
    data["classifiers"][0]["gold"] = [own]
    data["gold_file"] = "nowhere.jsonl"
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TopologyError, match="gold_file .*nowhere.jsonl does not exist"):
        load_topology(str(path))
    del data["gold_file"]
    path.write_text(yaml.safe_dump(data))
    mine = load_topology(str(path))
    assert [q.model_dump() for q in mine.classifiers[0].gold] == [own]
    assert mine.classifiers[1].gold == []
