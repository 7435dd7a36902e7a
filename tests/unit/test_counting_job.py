"""A counting job driven as the jobs PE drives it (its tasks out, their outcomes and
the annotator's gold answers in), with a simulated crowd of good workers and
spammers: its estimate is corrected for their error."""

from __future__ import annotations

import dataclasses
import random

from channels.jobs import CountingJob, JobCommand, JobItem
from channels.records import Answer, Label, Task
from pe.annotator.population import PRESETS, SimulatedWorker
from pe.jobs.manager import JobManager
from pe.jobs.run import JobRun, Plan
from tests.unit.water_jobs import SPEC, TAGS, outcome, water_plan

TRUTH = 0.028  #: share of the job's items about water


class Worker:
    def __init__(self, worker_id: str, accuracy: float | None, rng: random.Random) -> None:
        self.worker_id, self.accuracy, self.rng = worker_id, accuracy, rng

    def answer(self, truth: str) -> str:
        if self.accuracy is None:  # a spammer
            return self.rng.choice(TAGS)
        if self.rng.random() < self.accuracy:
            return truth
        return "no" if truth == "yes" else "yes"


def _label(task: Task, worker: Worker, now: float) -> Label:
    assert task.truth is not None
    return outcome(task, worker.answer(task.truth), worker=worker.worker_id, ts=now)


def _gold_answer(worker: Worker, index: int, truth: str) -> Label:
    """A gold question's outcome as the annotator writes it: the known tag, one answer."""
    answer = worker.answer(truth)
    return Label(
        item_id=f"water:{index}",
        classifier="water",
        tag=truth,
        agreement=1.0,
        kind="gold",
        answers=[Answer(task_id=f"g{index}", worker_id=worker.worker_id, tag=answer, latency_s=1)],
        ts=0.0,
        task_id=f"gold:{worker.worker_id}:{index}",
        idx=[],
        val=[],
    )


def _gold_plan() -> Plan:
    """A plan with ten tasks in flight and 100 gold messages of the water classifier."""
    return water_plan(gold={"water": [(f"gold message {k}", TAGS[k % 2]) for k in range(100)]})


def test_a_counting_job_corrects_for_spammers_and_worker_error() -> None:
    rng = random.Random(20)
    # 30% spammers; the others right 90% of the time. On 2.8% the plain share of the
    # answers is about 0.24, and its interval (the job's before) far from the truth.
    crowd = [Worker(f"good{i}", 0.9, rng) for i in range(7)]
    crowd += [Worker(f"spam{i}", None, rng) for i in range(3)]
    items = [
        JobItem(id=f"m{i}", text=f"message {i}", meta={"truth": {"water": tag}})
        for i, tag in enumerate(["yes"] * 28 + ["no"] * 972)
    ]
    manager = JobManager({"water": SPEC})
    # The annotator's gold questions so far: 20 per worker, half of them about water.
    for worker in crowd:
        for k in range(20):
            manager.outcome(_gold_answer(worker, k, TAGS[k % 2]))
    job = CountingJob(
        classifier="water", tag="yes", method="label", ci_width=0.01, budget=8.0, items=items
    )
    manager.command(JobCommand(action="submit", job_id="water", spec=job, ts=0.0))
    plan = _gold_plan()
    run = manager.runs["water"]
    said = []
    for _ in range(1000):
        tasks = manager.step(plan).tasks
        if run.terminal:
            break
        for task in tasks:
            label = _label(task, rng.choice(crowd), plan.now)
            if task.item_id in run.items:
                said.append(label.tag == "yes")
            manager.outcome(label)
    assert run.status == "done" and run.reason == "budget spent"
    assert len(said) >= 250 and sum(said) / len(said) > 0.15  # the answers' plain share
    estimate = run.estimate()
    assert estimate is not None
    low, high = estimate["ci"]
    assert low <= TRUTH <= high
    assert abs(estimate["fraction"] - TRUTH) < 0.05
    assert estimate["answers"] == len(said)


def test_answers_at_the_boundary_do_not_end_a_job_before_the_workers_are_known() -> None:
    # Ten "no" from workers nobody knows yet: the interval cut at 0 looks narrow (the
    # job stopped here before, on Wilson's [0, 0.28]); what the answers allow before
    # the cut is not, as these workers might say "no" to much of anything.
    items = [JobItem(id=f"m{i}", text=f"message {i}") for i in range(100)]
    manager = JobManager({"water": SPEC})
    job = CountingJob(
        classifier="water", tag="yes", method="label", ci_width=0.3, budget=8.0, items=items
    )
    manager.command(JobCommand(action="submit", job_id="rare", spec=job, ts=0.0))
    five = water_plan(in_flight=5)
    run = manager.runs["rare"]
    for round_ in range(3):  # 5 answers a round
        for k, task in enumerate(manager.step(five).tasks):
            manager.outcome(outcome(task, "no", worker=f"w{k}", ts=float(round_)))
    manager.step(five)
    estimate = run.estimate()
    assert estimate is not None and estimate["answers"] == 15
    assert estimate["fraction"] == 0.0
    assert run.status == "running"


def _count(task: Task, worker: SimulatedWorker, rng: random.Random) -> Label:
    """A count task's outcome: the simulated worker skims the batch and counts."""
    assert task.count_tag is not None
    count = worker.count([item.truth for item in task.batch], task.count_tag, TAGS, rng)
    return Label(
        item_id=task.item_id,
        classifier=task.classifier,
        tag=None,
        agreement=1.0,
        kind=task.kind,
        answers=[
            Answer(task_id=task.task_id, worker_id=worker.worker_id, count=count, latency_s=1)
        ],
        ts=0.0,
        task_id=task.task_id,
        job=task.job,
        form=task.form,
        cost=0.02 * len(task.batch),
        idx=[],
        val=[],
    )


def test_a_count_job_corrects_for_the_crowds_counting_error() -> None:
    # 30% spammers (a uniform random count) and honest workers who judge each text
    # of a batch worse than they label it alone: on 2.8% the answers' counts read
    # about a third, and Thresh's interval (the job's before) was far above the truth.
    rng = random.Random(7)
    population = dataclasses.replace(PRESETS["demo"], spammer_share=0.3)
    crowd = [population.draw(f"w{i}", rng) for i in range(20)]
    items = [
        JobItem(id=f"m{i}", text=f"message {i}", meta={"truth": {"water": tag}})
        for i, tag in enumerate(["yes"] * 28 + ["no"] * 972)
    ]
    manager = JobManager({"water": SPEC})
    job = CountingJob(
        classifier="water",
        tag="yes",
        method="count",
        gold_per_batch=2,
        ci_width=0.01,
        budget=120.0,
        items=items,
    )
    manager.command(JobCommand(action="submit", job_id="water", spec=job, ts=0.0))
    plan = _gold_plan()
    run = manager.runs["water"]
    fractions = []
    for _ in range(1000):
        tasks = manager.step(plan).tasks
        if run.terminal:
            break
        for task in tasks:
            label = _count(task, rng.choice(crowd), rng)
            if task.gold < len(task.batch):
                assert label.answers[0].count is not None
                fractions.append(label.answers[0].count / len(task.batch))
            manager.outcome(label)
    assert run.status == "done" and run.reason == "budget spent"
    assert sum(fractions) / len(fractions) > 0.25  # the answers' plain share
    estimate = run.estimate()
    assert estimate is not None
    low, high = estimate["ci"]
    assert low <= TRUTH <= high
    assert high < 0.5  # it says something: a crowd counting at chance is ruled out
    # Calibration batches, all gold, were 30% of the batches.
    assert estimate["answers"] == 299 and len(fractions) == 209


def _known_workers(manager: JobManager, workers: int) -> None:
    """Each worker right on 40 gold questions of the water classifier."""
    for w in range(workers):
        for k in range(40):
            manager.outcome(_gold_answer(Worker(f"w{w}", 1.0, random.Random(0)), k, TAGS[k % 2]))


def _job_answer(task: Task, tag: str, worker: str) -> Label:
    return Label(
        item_id=task.item_id,
        classifier="water",
        tag=tag,
        agreement=1.0,
        kind="job",
        answers=[Answer(task_id=task.task_id, worker_id=worker, tag=tag, latency_s=1.0)],
        ts=0.0,
        task_id=task.task_id,
        job=task.job,
        cost=0.02,
        idx=[],
        val=[],
    )


def _width_job(job_id: str, **options: int) -> tuple[JobManager, JobRun, Plan]:
    """A label-method job aiming at an interval 0.26 wide over 300 items, its five
    workers known right; 40 tasks in flight at most."""
    items = [JobItem(id=f"m{i}", text=f"message {i}") for i in range(300)]
    manager = JobManager({"water": SPEC})
    _known_workers(manager, 5)
    job = CountingJob(
        classifier="water",
        tag="yes",
        method="label",
        ci_width=0.26,
        budget=8.0,
        items=items,
        **options,
    )
    manager.command(JobCommand(action="submit", job_id=job_id, spec=job, ts=0.0))
    return manager, manager.runs[job_id], dataclasses.replace(_gold_plan(), in_flight=40, gold={})


def test_a_job_that_meets_its_width_with_answers_in_flight_ends_on_them() -> None:
    # 30 answers give an interval 0.251 wide, inside the 0.26 asked, with 10 tasks
    # still open. Their answers, all "yes", widen it to 0.31: a job that ended on the
    # first 30 would report that wider interval as meeting its target.
    manager, run, plan = _width_job("late", max_in_flight=40)
    tasks = manager.step(plan).tasks
    assert len(tasks) == 40
    for k, task in enumerate(tasks[:30]):
        manager.outcome(_job_answer(task, "yes" if k < 3 else "no", f"w{k % 5}"))
    assert manager.step(plan).tasks == []  # the goal is met: no new task, but
    assert run.status == "running" and len(run.open_tasks) == 10  # it waits for these
    for k, task in enumerate(tasks[30:]):
        manager.outcome(_job_answer(task, "yes", f"w{k % 5}"))
    assert len(manager.step(plan).tasks) == 40  # wider again: it goes on asking
    assert run.status == "running"
    widened = run.estimate()
    assert widened is not None and widened["answers"] == 40
    low, high = widened["ci"]
    assert low > 0 and high - low > 0.26  # not cut at 0: the interval itself is wider


def test_a_job_ends_when_its_answers_in_flight_keep_its_width() -> None:
    manager, run, plan = _width_job("kept")
    manager.step(plan)
    answered = 0
    while not run.terminal and answered < 200:
        task = run.open_tasks[0]  # answers come one at a time, the others still out
        manager.outcome(_job_answer(task, "yes" if answered % 10 == 0 else "no", "w0"))
        answered += 1
        manager.step(plan)
        # Never done while an answer it paid for is out.
        assert run.status != "done" or not run.open_tasks
    assert run.status == "done" and run.reason == "the interval reached the target width"
    estimate = run.estimate()
    assert estimate is not None and estimate["answers"] == answered
    assert estimate["crowd_tasks"] == run.counts()["tasks_done"] == answered
    low, high = estimate["ci"]
    assert high - low <= 0.26
