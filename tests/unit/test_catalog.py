"""Classifiers changed on a running pipeline (pe.common.catalog): the rules of a
change, and a classifier added, paused and retired with the whole pipeline in
memory and the simulated crowd answering."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pe.common.catalog import ClassifierCatalog, ClassifierRecord
from pe.params import ClassifierSpec, GoldQuestion, TagExample
from pipelines.sample import load_sample
from pipelines.testing import PeHarness, Record
from pipelines.topology import Topology, load_topology

NEW = ClassifierSpec(
    name="needs_help",
    question="Does the author ask for help?",
    tags=["yes", "no"],
    truth_key="request",  # the simulated crowd answers from the sample's truth
)


def _record(spec: ClassifierSpec = NEW, state: str = "active") -> ClassifierRecord:
    return ClassifierRecord.model_validate(
        {"spec": spec.model_dump(), "state": state, "by": "test", "at": time.time()}
    )


def test_a_change_follows_the_rules_and_listeners_hear_each_new_classifier() -> None:
    seed = load_topology("crisis").classifiers
    catalog = ClassifierCatalog(seed)
    heard: list[str] = []
    catalog.on_added(lambda spec: heard.append(spec.name))
    assert heard == ["aid_related", "request"]  # the topology's, at once

    assert catalog.apply(_record()) is None
    assert heard[-1] == "needs_help"
    assert [s.name for s in catalog.labeling()] == ["aid_related", "request", "needs_help"]

    assert catalog.apply(_record(state="paused")) is None
    assert "needs_help" in [s.name for s in catalog.serving()]
    assert "needs_help" not in [s.name for s in catalog.labeling()]

    other = NEW.model_copy(update={"question": "Another question?"})
    assert "another question" in (catalog.apply(_record(other)) or "")
    assert catalog.get("needs_help").spec == NEW  # type: ignore[union-attr]

    assert catalog.apply(_record(state="retired")) is None
    assert "needs_help" not in [s.name for s in catalog.serving()]
    assert "retired" in (catalog.apply(_record(state="active")) or "")
    assert "no classifier" in (
        catalog.apply(_record(NEW.model_copy(update={"name": "x"}), "retired")) or ""
    )
    assert heard.count("needs_help") == 1


def _topology() -> Topology:
    data = load_topology("crisis").model_dump(mode="json")
    params = data["params"]
    params["annotator"] = {**params.get("annotator", {}), "speed": 50, "pool_size": 10}
    params["taskgen"] = {**params.get("taskgen", {}), "max_tasks_per_minute": 6000}
    params["learner"] = {
        **params.get("learner", {}),
        "retrain_every": 10,
        "min_train": 10,
        "teacher": "none",
    }
    return Topology.model_validate(data)


def _new(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("classifier") == "needs_help"]


async def _run_until(run: PeHarness, done: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        await run.tick()
        await asyncio.sleep(0.05)


async def test_a_classifier_added_on_a_running_pipeline_is_classified_labelled_and_learned() -> (
    None
):
    sample = load_sample(1200)
    async with PeHarness(_topology()) as run:
        await run.feed("items.raw", sample[:100])
        before = run.outputs("items.classified")
        assert all("needs_help" not in r["labels"] for r in before)

        await run.feed("control.classifiers", [("needs_help", _record())])
        await run.feed("items.raw", sample[100:600])
        # A model comes after retrain_every labels, from the crowd's answers.
        await _run_until(run, lambda: _new(run.outputs("control.models")))
        classified = run.outputs("items.classified")[len(before) :]
        assert classified and all("needs_help" in r["labels"] for r in classified)
        # Tag null until a model exists.
        assert classified[0]["labels"]["needs_help"]["tag"] is None
        assert _new(run.outputs("crowd.tasks"))
        labels = _new(run.outputs("crowd.labels"))
        assert len(labels) >= 10
        assert _new(run.outputs("control.models"))
        await run.feed("items.raw", sample[600:700])
        last = run.outputs("items.classified")[-1]["labels"]["needs_help"]
        assert last["tag"] in ("yes", "no") and last["model_version"] >= 1

        # Paused: still classified, no new crowd tasks.
        await run.feed("control.classifiers", [("needs_help", _record(state="paused"))])
        await run.tick(5)
        tasks = len(_new(run.outputs("crowd.tasks")))
        await run.feed("items.raw", sample[700:1000])
        await run.tick(20)
        assert len(_new(run.outputs("crowd.tasks"))) == tasks
        assert len(run.outputs("crowd.tasks")) > 0
        assert "needs_help" in run.outputs("items.classified")[-1]["labels"]

        # Retired: no longer classified.
        await run.feed("control.classifiers", [("needs_help", _record(state="retired"))])
        await run.feed("items.raw", sample[1000:1100])
        assert "needs_help" not in run.outputs("items.classified")[-1]["labels"]
        assert "aid_related" in run.outputs("items.classified")[-1]["labels"]


async def test_after_a_restart_the_learner_holds_the_labels_of_an_added_classifier() -> None:
    # Its labels are the learner's again once the catalog, read from its log, knows it.
    label = {
        "item_id": "i1",
        "classifier": "needs_help",
        "tag": "yes",
        "agreement": 1.0,
        "answers": [],
        "idx": [1],
        "val": [1.0],
        "ts": time.time(),
        "text": "we need water",
    }
    logs: dict[str, list[Record]] = {
        "crowd.labels": [("i1", label)],
        "control.classifiers": [("needs_help", _record())],
    }
    async with PeHarness(_topology(), ["learner"], logs=logs) as run:
        state = run.state("learner")
    assert state is not None and state["needs_help"]["items"] == ["i1"]  # type: ignore[index]


async def test_an_item_promoted_to_gold_is_asked_as_a_gold_question() -> None:
    data = _topology().model_dump(mode="json")
    for spec in data["classifiers"]:
        spec["gold"] = []  # the promoted question is the only gold question
    data["params"]["annotator"]["quality"] = {"enabled": True, "gold_rate": 0.5}
    topology = Topology.model_validate(data)
    aid = topology.classifiers[0]
    record = ClassifierRecord(spec=aid, by="topology", at=0.0).with_gold(
        GoldQuestion(id="promoted-1", text="we need water and food in Jacmel", tag="yes"), "op"
    )
    sample = load_sample(400)
    async with PeHarness(topology) as run:
        await run.feed("control.classifiers", [(aid.name, record.model_dump_json().encode())])
        await run.feed("items.raw", sample)

        def asked() -> list[dict[str, Any]]:
            return [
                label
                for label in run.outputs("crowd.labels")
                if label["kind"] == "gold" and label["item_id"].endswith("promoted-1")
            ]

        await _run_until(run, asked, timeout_s=30)
        assert asked() and asked()[0]["classifier"] == aid.name


def test_examples_and_gold_questions_must_use_the_classifiers_tags() -> None:
    base = {"name": "roads", "question": "Roads?", "tags": ["yes", "no"]}
    with pytest.raises(ValueError, match="not among the tags: maybe"):
        ClassifierSpec(**base, examples=[TagExample(text="x", tag="maybe")])
    with pytest.raises(ValueError, match="at most 10"):
        ClassifierSpec(**base, examples=[TagExample(text="x", tag="yes")] * 11)


async def test_where_n_a_is_not_allowed_the_simulated_crowd_guesses_a_tag() -> None:
    # Its truth is unknown to the simulated crowd, who cannot tell: N/A where allowed.
    unknown = {"question": "Is it about roads?", "tags": ["yes", "no"], "truth_key": "nope"}
    example = TagExample(text="the bridge to Jacmel is down", tag="yes")
    specs = [
        ClassifierSpec(name="roads_na", **unknown),
        ClassifierSpec(name="roads_tag", na_allowed=False, examples=[example], **unknown),
    ]
    async with PeHarness(_topology()) as run:
        for spec in specs:
            await run.feed("control.classifiers", [(spec.name, _record(spec))])
        await run.feed("items.raw", load_sample(300))

        def answers(name: str) -> set[str]:
            labels = run.outputs("crowd.labels")
            return {a["tag"] for x in labels if x["classifier"] == name for a in x["answers"]}

        await _run_until(run, lambda: answers("roads_na") and answers("roads_tag"), 30)
        tasks = [t for t in run.outputs("crowd.tasks") if t["classifier"] == "roads_tag"]
        assert tasks and not any(t["na_allowed"] for t in tasks)
        # Each carries the classifier's examples, for the worker page to show.
        assert all(t["examples"] == [example.model_dump()] for t in tasks)
    assert answers("roads_na") == {"N/A"}
    assert answers("roads_tag") and answers("roads_tag") <= {"yes", "no"}
