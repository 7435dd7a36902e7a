"""Jobs through the real broker with the simulated crowd: labeling, counting,
enumeration, a stream window, priorities and shedding, and a restart."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import Worker, start_worker, wait_until, write_topology

pytestmark = pytest.mark.integration

PIPELINE = "jtest"
PLACES = ["port-au-prince", "leogane", "jacmel", "carrefour", "petionville", "gonaives"]


def _items(n: int, offset: int = 0) -> list[dict[str, Any]]:
    rows = load_sample(offset + n)[offset:]
    return [
        {"id": f"j{offset + i}", "text": r["text"], "meta": r["meta"]} for i, r in enumerate(rows)
    ]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_topology(
        tmp_path_factory.mktemp("topology"),
        PIPELINE,
        annotator={"speed": 200.0, "pool_size": 8, "redundancy": 3, "max_queue": 40},
        # No training tasks: the crowd is the jobs'.
        taskgen={"label_budget": 0},
        learner={"retrain_every": 20, "min_train": 10},
    )


@pytest.fixture(scope="module")
def worker(
    broker: EmbeddedBroker, topology: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    running = start_worker(broker, topology, tmp_path_factory.mktemp("worker"))
    yield running
    running.stop()


@pytest.fixture
def slow_crowd(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """A jobs pipeline whose crowd answers in about a second: jobs' tasks arrive
    faster than it drains them, whatever the machine's speed."""
    topology = _jobs_only_topology(
        tmp_path_factory.mktemp("slow"), "jqueue", speed=10.0, max_queue=40
    )
    running = start_worker(broker, topology, tmp_path_factory.mktemp("slow-worker"))
    yield running
    running.stop()


def _job(worker: Worker, job_id: str) -> dict[str, Any]:
    status, body = worker.get(f"/api/v1/jobs/{job_id}")
    return orjson.loads(body) if status == 200 else {}


async def _finished(worker: Worker, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    assert await wait_until(
        lambda: _job(worker, job_id).get("status") in ("done", "failed", "cancelled"), timeout_s
    ), _job(worker, job_id)
    return _job(worker, job_id)


async def test_a_labeling_job_labels_every_item_by_the_crowd(worker: Worker) -> None:
    items = _items(24)
    status, body = worker.post(
        "/api/v1/jobs",
        orjson.dumps(
            {
                "kind": "labeling",
                "job_id": "lab1",
                "classifier": "aid_related",
                "budget": 100,
                "items": items,
                "redundancy": 3,
            }
        ),
    )
    assert status == 202 and body["job_id"] == "lab1" and body["status"] == "queued"
    job = await _finished(worker, "lab1")
    assert job["status"] == "done" and job["reason"] == "every item labeled"
    assert job["progress"]["labeled_by_crowd"] == 24
    # 3 answers per item at 0.02 a record, plus paid straggler duplicates
    assert 24 * 3 * 0.02 - 1e-9 <= job["cost"] <= 24 * 4 * 0.02 + 1e-9
    status, page = worker.get("/api/v1/jobs/lab1/results")
    results = orjson.loads(page)["results"]
    assert {r["item_id"] for r in results} == {i["id"] for i in items}
    assert all(r["source"] == "crowd" for r in results)
    truth = {i["id"]: i["meta"]["truth"]["aid_related"] for i in items}
    right = sum(r["tag"] == truth[r["item_id"]] for r in results)
    assert right >= 18  # majority of 3 simulated workers of ~86% accuracy


async def test_bad_jobs_get_clear_errors(worker: Worker) -> None:
    status, body = worker.post("/api/v1/jobs", b"{not json")
    assert status == 400 and "invalid JSON" in body["error"]
    status, body = worker.post("/api/v1/jobs", orjson.dumps({"kind": "counting", "budget": 1}))
    assert status == 422 and body["details"]
    status, body = worker.post(
        "/api/v1/jobs",
        orjson.dumps(
            {
                "kind": "counting",
                "classifier": "nope",
                "tag": "yes",
                "budget": 1,
                "items": _items(3),
            }
        ),
    )
    assert status == 422 and "unknown classifier" in body["error"]
    assert worker.get("/api/v1/jobs/missing")[0] == 404


@pytest.mark.parametrize("method", ["label", "count", "model"])
async def test_a_counting_job_estimates_a_fraction_with_its_interval(
    worker: Worker, method: str
) -> None:
    items = _items(300, offset=100)
    truth = sum(i["meta"]["truth"]["aid_related"] == "yes" for i in items) / len(items)
    job_id = f"count-{method}"
    status, _ = worker.post(
        "/api/v1/jobs",
        orjson.dumps(
            {
                "kind": "counting",
                "job_id": job_id,
                "classifier": "aid_related",
                "tag": "yes",
                "method": method,
                "ci_width": 0.3,
                # A count batch of texts is judged worse than its texts one by one,
                # and a third of the batches calibrate that error: 0.3 takes about
                # 160 batches (0.80 each).
                "budget": 200 if method == "count" else 50,
                "items": items,
                "batch_size": 40,
                "gold_per_batch": 4 if method == "count" else 0,
                # Labels are corrected for each worker's error: an interval 0.3 wide
                # needs the 8 workers' error known, from gold questions.
                "gold_share": 0.4,
            }
        ),
    )
    assert status == 202
    job = await _finished(worker, job_id)
    assert job["status"] == "done", job
    estimate = job["estimate"]
    low, high = estimate["ci"]
    assert high - low <= 0.3 and estimate["answers"] >= 10, job
    assert abs(estimate["fraction"] - truth) < 0.25
    assert estimate["count"] == pytest.approx(estimate["fraction"] * 300, abs=0.01)
    assert estimate["crowd_tasks"] == job["progress"]["tasks_done"] > 0
    assert job["cost"] > 0 and estimate["cost"] == job["cost"]


def test_an_enumeration_job_from_the_cli_finds_the_distinct_answers(
    broker: EmbeddedBroker, worker: Worker, topology: Path, tmp_path: Path
) -> None:
    items = [
        {"id": f"e{i}", "text": f"message {i}", "meta": {"truth": {"places": [PLACES[i % 6]]}}}
        for i in range(60)
    ]
    (tmp_path / "items.jsonl").write_text("\n".join(orjson.dumps(i).decode() for i in items))
    (tmp_path / "job.yaml").write_text(
        "kind: enumeration\njob_id: enum1\nquestion: Which places are mentioned?\n"
        "truth_key: places\nbudget: 20\ntarget_coverage: 0.95\nmin_answers: 20\n"
        "items_file: items.jsonl\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "job",
            "submit",
            str(tmp_path / "job.yaml"),
            # The pipeline's name, as `push` takes it: its topology file is elsewhere.
            "--pipeline",
            PIPELINE,
            "--broker",
            broker.url,
            "--wait",
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "submitted job enum1" in done.stdout and "done" in done.stdout
    assert "no topology file for pipeline" in done.stderr
    estimate = _job(worker, "enum1")["estimate"]
    assert set(estimate["values"]) == set(PLACES)
    assert estimate["distinct"] == 6 and estimate["coverage"] >= 0.95
    assert 5.5 <= estimate["total_corrected"] <= 8
    assert set(estimate["expected_new"]) == {"10", "20", "50"}


async def test_a_stream_window_takes_the_next_matching_items(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    status, _ = worker.post(
        "/api/v1/jobs",
        orjson.dumps(
            {
                "kind": "labeling",
                "job_id": "win1",
                "classifier": "request",
                "budget": 100,
                "redundancy": 1,
                "stream": {"count": 10, "filter": {"contains": ["water"]}},
            }
        ),
    )
    assert status == 202
    assert await wait_until(lambda: _job(worker, "win1").get("status") == "running")
    await push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(r) for r in load_sample(800)])
    job = await _finished(worker, "win1")
    assert job["status"] == "done" and job["window"]["seen"] == 10
    results = orjson.loads(worker.get("/api/v1/jobs/win1/results")[1])["results"]
    assert len(results) == 10
    texts = {r["id"]: r["text"] for r in load_sample(800)}
    assert all("water" in texts[r["item_id"]].lower() for r in results)


async def test_a_full_queue_sheds_the_lowest_priority_tasks_and_tells_their_job(
    slow_crowd: Worker,
) -> None:
    worker = slow_crowd
    # 40 may wait; 8 workers take 8 at a time, about a second each. A low-priority
    # job puts 60 tasks in the queue at once, more than it holds, then a
    # high-priority job 40 at a time: the low one loses waiting tasks to the high one
    # and to its own newer tasks. The high job never has more tasks out than the
    # queue holds, so none of its tasks can be shed.
    for job_id, priority, offset, in_flight in (("low", 1, 1000, 60), ("high", 9, 1100, 40)):
        status, _ = worker.post(
            "/api/v1/jobs",
            orjson.dumps(
                {
                    "kind": "labeling",
                    "job_id": job_id,
                    "classifier": "aid_related",
                    "budget": 100,
                    "priority": priority,
                    "redundancy": 1,
                    "max_in_flight": in_flight,
                    "items": _items(60, offset),
                }
            ),
        )
        assert status == 202
    high = await _finished(worker, "high", 180)
    low = await _finished(worker, "low", 180)
    assert high["status"] == low["status"] == "done"
    assert high["progress"]["tasks_shed"] == 0
    assert low["progress"]["tasks_shed"] > 0  # reported to the job, and asked again
    assert low["progress"]["labeled_by_crowd"] == 60
    assert worker.metric("crowdstream_items_shed_total", pe="annotator", reason="queue_full") > 0


def _jobs_only_topology(directory: Path, name: str, **annotator: Any) -> Path:
    """A pipeline whose crowd works for jobs only (no training tasks); ``annotator``
    overrides its crowd's parameters."""
    return write_topology(
        directory,
        name,
        annotator={"speed": 200.0, "pool_size": 8, "redundancy": 1, **annotator},
        taskgen={"label_budget": 0},
    )


@contextmanager
def _workers(
    broker: EmbeddedBroker, topology: Path, log_dir: Path, *pe_sets: tuple[str, ...]
) -> Iterator[list[Worker]]:
    """One worker per PE set, all stopped at the end (also when one fails to start)."""
    started: list[Worker] = []
    try:
        for pes in pe_sets:
            started.append(start_worker(broker, topology, log_dir, "--pe", *pes))
        yield started
    finally:
        for worker in reversed(started):
            worker.stop()


async def test_jobs_survive_a_worker_restart(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    topology = _jobs_only_topology(tmp_path_factory.mktemp("restart"), "jrestart")
    spec = {
        "kind": "counting",
        "job_id": "survivor",
        "classifier": "aid_related",
        "tag": "yes",
        "budget": 5,
        "ci_width": 0.2,
        "items": _items(200, 2000),
    }
    # No annotator yet: the job's first tasks wait in crowd.tasks.
    jobs = ("collector", "jobs")
    with _workers(broker, topology, tmp_path, jobs) as (first,):
        assert first.post("/api/v1/jobs", orjson.dumps(spec))[0] == 202
        assert await wait_until(
            lambda: _job(first, "survivor").get("progress", {}).get("tasks_issued", 0) > 0
        )
        issued = _job(first, "survivor")["progress"]["tasks_issued"]
        assert first.post("/api/v1/jobs", orjson.dumps(spec))[0] == 409
    with _workers(broker, topology, tmp_path, jobs, ("annotator",)) as (second, crowd):
        assert await wait_until(lambda: _job(second, "survivor").get("status") == "running")
        # the same job, with the tasks it had issued, not a second copy of them
        assert _job(second, "survivor")["progress"]["tasks_issued"] >= issued
        job = await _finished(second, "survivor", 180)
        assert job["status"] == "done", job
        progress = job["progress"]
        assert progress["tasks_issued"] == progress["tasks_done"] + progress["tasks_shed"]
        # Every answer is paid, and so are straggler duplicates, within the budget;
        # the job's books match the pool's ledger for it.
        assert progress["tasks_done"] * 0.02 <= job["cost"] <= 5
        paid = crowd.metric("crowdstream_crowd_cost", kind="work", job="survivor")
        assert job["cost"] == pytest.approx(paid, abs=1e-6)


async def test_an_open_counting_window_is_rebuilt_after_a_restart(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    topology = _jobs_only_topology(tmp_path_factory.mktemp("window"), "jwindow")
    sample = load_sample(200)

    def lines(start: int) -> list[bytes]:
        out = []
        for i, r in enumerate(sample[start : start + 100]):
            text = ("zebra " if i % 2 == 0 else "") + r["text"]  # 50 marked of 100
            out.append(orjson.dumps({"id": f"w{start + i}", "text": text, "meta": r["meta"]}))
        return out

    spec = {
        "kind": "counting",
        "job_id": "window",
        "classifier": "aid_related",
        "tag": "yes",
        "budget": 5,
        "ci_width": 0.5,
        "min_answers": 5,
        "stream": {"count": 100, "seconds": 300, "filter": {"contains": ["zebra"]}},
    }
    jobs = ("collector", "features", "jobs")
    with _workers(broker, topology, tmp_path, jobs) as (first,):
        assert first.post("/api/v1/jobs", orjson.dumps(spec))[0] == 202
        assert await wait_until(lambda: _job(first, "window").get("status") == "running")
        await push_lines([broker.bootstrap], "jwindow", lines(0))
        assert await wait_until(lambda: _job(first, "window")["window"]["seen"] == 50)
    with _workers(broker, topology, tmp_path, jobs, ("annotator",)) as (second, _):
        # the 50 items seen before the stop are read again from items.features
        assert await wait_until(lambda: _job(second, "window").get("window", {}).get("seen") == 50)
        await push_lines([broker.bootstrap], "jwindow", lines(100))
        job = await _finished(second, "window", 120)
        assert job["status"] == "done", job
        assert job["window"]["seen"] == 100 and job["estimate"]["population"] == 100
