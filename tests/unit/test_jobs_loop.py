"""A big job is read and featurized without holding the event loop."""

from __future__ import annotations

import time

from channels.jobs import JobCommand, LabelingJob
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
