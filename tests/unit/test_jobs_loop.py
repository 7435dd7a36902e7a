"""A big job is read and featurized without holding the event loop, in a helper
process that is replaced when it dies."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from channels.codec import DecodeError
from channels.jobs import JobCommand, LabelingJob
from pe.jobs.intake import Featurizer
from pe.params import FeaturesParams
from pipelines.contract import MAX_HOLD_S, LoopWatch
from pipelines.sample import load_sample
from pipelines.testing import PeHarness
from pipelines.topology import load_topology


async def test_a_job_of_20000_items_never_holds_the_event_loop() -> None:
    texts = [row["text"] for row in load_sample(4000)]
    items = [{"id": f"i{n}", "text": texts[n % len(texts)]} for n in range(20_000)]
    job = JobCommand(
        action="submit",
        job_id="big",
        spec=LabelingJob(classifier="aid_related", budget=10.0, items=items),
        ts=time.time(),
    )
    record = job.model_dump_json().encode()
    async with PeHarness(load_topology("crisis"), ["jobs"]) as run:
        async with LoopWatch() as watch:
            await run.feed("jobs", [("big", record)])
            await run.tick()
        statuses = [r for r in run.outputs("jobs.results") if r.get("type") == "status"]
        tasks = run.outputs("crowd.tasks")
    assert watch.longest < MAX_HOLD_S, f"held {watch.longest * 1000:.0f} ms"
    assert statuses[-1]["job_id"] == "big" and statuses[-1]["status"] == "running"
    assert tasks and all(task["job"] == "big" and task["idx"] for task in tasks)


def _die(params: FeaturesParams, flag: str) -> str:
    """In the helper: die unless ``flag`` exists (and create it, so a retry lives)."""
    path = Path(flag)
    if path.name.startswith("always") or not path.exists():
        path.touch()
        os._exit(1)
    return "done"


async def test_a_helper_that_dies_is_replaced_and_the_work_tried_again(tmp_path: Path) -> None:
    featurizer = Featurizer(FeaturesParams())
    assert await featurizer.call(_die, str(tmp_path / "once")) == "done"


async def test_work_that_kills_the_helper_twice_is_refused_as_bad_input(tmp_path: Path) -> None:
    featurizer = Featurizer(FeaturesParams())
    with pytest.raises(DecodeError, match="helper process died twice"):
        await featurizer.call(_die, str(tmp_path / "always"))
