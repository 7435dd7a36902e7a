"""A full batch on the data path never holds the event loop: the data plane passes
it through the fused stages a slice at a time."""

from __future__ import annotations

from typing import Any

from pipelines.contract import MAX_HOLD_S, LoopWatch
from pipelines.sample import load_sample
from pipelines.testing import PeHarness, sample_models
from pipelines.topology import load_topology


def _batch(size: int) -> list[dict[str, Any]]:
    sample = load_sample()
    return [{**sample[i % len(sample)], "id": f"b{i}"} for i in range(size)]


async def test_a_5000_item_batch_through_the_fused_data_path_holds_the_loop_briefly() -> None:
    crisis = load_topology("crisis")
    models = sample_models(crisis)
    batch = _batch(5000)
    async with PeHarness(
        crisis, ["features", "classifier", "taskgen"], logs={"control.models": models}
    ) as run:
        await run.feed("items.raw", batch[:100])  # warm: first calls compile and import
        async with LoopWatch() as watch:
            await run.feed("items.raw", batch)
        classified = run.outputs("items.classified")
    assert len(classified) == 5100
    assert all(item["labels"]["aid_related"]["model_version"] > 0 for item in classified)
    assert watch.longest < MAX_HOLD_S, f"held the loop {watch.longest * 1000:.0f} ms"
