"""The test harness shipped in pipelines.testing runs PEs in memory, as a worker would."""

from __future__ import annotations

from pathlib import Path

from pipelines.testing import PeHarness, sample_models
from pipelines.topology import load_topology

EXAMPLE = load_topology(str(Path(__file__).parents[2] / "examples" / "language.yaml"))


async def test_fused_stages_run_in_memory_and_bad_input_goes_to_dead_letters() -> None:
    async with PeHarness(EXAMPLE, ["features", "classifier", "language"]) as run:
        await run.feed(
            "items.raw",
            [
                {"id": "a", "text": "We need water and food, please help"},
                b"{not json",
                {"id": "b", "text": "نحتاج إلى الماء"},
            ],
        )
        languages = {tag["id"]: tag for tag in run.outputs("items.languages")}
        classified = [item["id"] for item in run.outputs("items.classified")]
        [rejected] = run.outputs("items.rejected")
    assert languages["a"]["language"] == "en" and languages["b"]["script"] == "ARABIC"
    assert classified == ["a", "b"]
    assert rejected["stage"] == "features" and rejected["raw"] == "{not json"


async def test_a_pe_reads_back_its_own_log_and_rebuilds_from_given_logs() -> None:
    crisis = load_topology("crisis")
    item = {"id": "x1", "text": "water needed at the school", "meta": {"truth": {}}}
    async with PeHarness(crisis, ["features", "taskgen"]) as run:
        await run.feed("items.raw", [item])
        await run.tick()
        tasks = run.outputs("crowd.tasks")
        issued = run.state("taskgen")
    assert sorted(task["classifier"] for task in tasks) == ["aid_related", "request"]
    # A restarted task generator given its log issues nothing new for the same item.
    async with PeHarness(crisis, ["features", "taskgen"], logs={"crowd.tasks": tasks}) as again:
        assert again.state("taskgen") == issued
        await again.feed("items.raw", [item])
        await again.tick()
        assert again.outputs("crowd.tasks") == []


async def test_a_harness_started_with_sample_models_classifies_with_them() -> None:
    crisis = load_topology("crisis")
    logs = {"control.models": sample_models(crisis)}
    async with PeHarness(crisis, ["features", "classifier"], logs=logs) as run:
        await run.feed("items.raw", [{"id": "w", "text": "we need water and food, please help"}])
        [item] = run.outputs("items.classified")
    for name in ("aid_related", "request"):
        assert item["labels"][name]["model_version"] == 1
        assert item["labels"][name]["tag"] in {"yes", "no"}


async def test_a_worker_is_catching_up_until_its_logs_are_read() -> None:
    # /healthz is 503 while this lists anything: state rebuilt from logs is not whole.
    run = PeHarness(load_topology("crisis"), ["taskgen", "annotator"])
    catching_up = run.context.catching_up()
    assert {"crisis.crowd.tasks", "crisis.crowd.labels"} <= set(catching_up)
    async with run:
        assert run.context.catching_up() == []
