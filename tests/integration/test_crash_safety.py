"""Crash safety on the embedded broker.

- ``kill -9`` of a stream worker in the middle of a 20,000-item stream (a live feed
  of 1,000 items/s from an independent client, into the default topology: load
  shedding on), a restart, and every item classified, each exactly once after the
  documented dedup rule (channels.dedup: the first record of an id wins): the
  backlog of the restart is caught up, not shed. SIGTERM instead, and no repeats.
- ``kill -9`` of the annotator and learner mid-run: no crowd label lost, the pool
  and the learner's labels come back.
- ``kill -9`` of the notifier while its webhook is down: every event it was trying
  to deliver is delivered by the next notifier, under the same delivery id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

from channels.dedup import FirstById
from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import (
    WEBHOOK_SECRET,
    Worker,
    crisis_shedding,
    read_all,
    read_topic,
    start_worker,
    values,
    wait_until,
    write_topology,
)
from tests.integration.feeds import SteadyProducer
from tests.integration.webhooks import Hooks

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PIPELINE = "crashtest"
ITEMS = 20_000
RATE = 1_000.0  #: items/s of the live feed: well within one worker's capacity


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("topology")
    return write_topology(directory, PIPELINE, shedding=crisis_shedding())


def _ids(records: list[object]) -> list[str]:
    return [orjson.loads(record.value)["id"] for record in records]  # type: ignore[attr-defined]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.stop()


STREAM = ("--pe", "collector", "features", "classifier", "--crowd", "none")
CLASSIFIED = f"{PIPELINE}.items.classified"


async def _stop_mid_stream(
    broker: EmbeddedBroker, topology: Path, tmp_path: Path, workers: list[Worker], sig: int
) -> tuple[set[str], list[str]]:
    """Stream ITEMS items through a worker, send it ``sig`` once some are out, start
    another; the ids sent and the ids ``items.classified`` holds once all are there."""
    first = start_worker(broker, topology, tmp_path, *STREAM)
    workers.append(first)
    rows = [
        {"id": f"{sig}-{n}", "text": f"flood in district {n % 97}, family {n} needs water"}
        for n in range(ITEMS)
    ]
    feed = SteadyProducer(
        broker.bootstrap, PIPELINE, [(row["id"], orjson.dumps(row)) for row in rows], RATE
    )
    feed.start()
    wanted = {row["id"] for row in rows}

    def mine(records: list[object]) -> list[str]:
        return [i for i in _ids(records) if i in wanted]

    # Stop the worker mid-stream: some items are out, most are not.
    partial = await read_topic(broker.bootstrap, CLASSIFIED, lambda rs: len(mine(rs)) >= 2_000)
    assert 2_000 <= len(mine(partial)) < ITEMS, "the stream ended before the signal"
    first.proc.send_signal(sig)
    first.proc.wait(timeout=60)

    second = start_worker(broker, topology, tmp_path, *STREAM)
    workers.append(second)
    await asyncio.to_thread(feed.join, ITEMS / RATE + 120)
    assert feed.acked == ITEMS and not feed.errors, feed.errors[:3]
    records = await read_topic(
        broker.bootstrap, CLASSIFIED, lambda rs: wanted <= set(mine(rs)), timeout_s=240
    )
    ids = mine(records)
    shed = second.metric("crowdstream_items_shed_total", pe="features")
    assert wanted <= set(ids), f"{len(wanted - set(ids))} items never classified ({shed} shed)"
    return wanted, ids


async def test_kill_9_mid_stream_then_restart_loses_nothing(
    broker: EmbeddedBroker, topology: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    wanted, ids = await _stop_mid_stream(broker, topology, tmp_path, workers, signal.SIGKILL)
    once = FirstById()
    kept = [item_id for item_id in ids if once.first(item_id)]
    assert sorted(kept) == sorted(wanted)  # each exactly once after dedup
    assert once.repeats == len(ids) - len(wanted)


async def test_sigterm_finishes_and_commits_in_flight_batches(
    broker: EmbeddedBroker, topology: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    wanted, ids = await _stop_mid_stream(broker, topology, tmp_path, workers, signal.SIGTERM)
    assert workers[0].proc.returncode == 0, workers[0].tail()
    # What the first worker read it finished and committed: the second one repeats
    # none of it, so there is nothing for the dedup rule to drop.
    assert len(ids) == len(wanted), f"{len(ids) - len(wanted)} items classified twice"


CROWD_PIPELINE = "crowdcrash"
BUDGET = 120  #: label tasks per classifier


async def test_kill_9_of_the_annotator_and_learner_loses_no_crowd_label(
    broker: EmbeddedBroker, tmp_path: Path, workers: list[Worker]
) -> None:
    """No task goes without a crowd label; the pool's workers come back (no quiz, the
    same people); the learner's label count comes back (its next model learned from
    at least as many labels as the last one before the kill)."""
    topology = write_topology(
        tmp_path,
        CROWD_PIPELINE,
        annotator={"speed": 30.0, "pool_size": 6, "qualification": 2},
        taskgen={"max_tasks_per_minute": 3000, "round_interval_s": 0.1, "label_budget": BUDGET},
        # The fast teacher and a crowd at speed 30: the first model must come out while
        # most tasks are open. With the default teacher, loading it took as long as the
        # crowd took to answer every task on a slow machine, and nothing was left to kill.
        learner={"retrain_every": 10, "min_train": 10, "teacher": "use"},
    )
    workers.append(
        start_worker(broker, topology, tmp_path, "--pe", "collector", "features", "classifier")
    )
    crowd_args = ("--pe", "taskgen", "annotator", "learner")
    first = start_worker(broker, topology, tmp_path, *crowd_args)
    workers.append(first)
    sample = load_sample(2000)
    await push_lines([broker.bootstrap], CROWD_PIPELINE, [orjson.dumps(r) for r in sample])

    def topic(key: str) -> str:
        return f"{CROWD_PIPELINE}.{key}"

    def task_labels(records: list[ConsumerRecord]) -> list[dict[str, Any]]:
        return [label for label in values(records) if label["kind"] != "gold"]

    # Kill mid-run: some labels and a model are out, most tasks are not answered.
    await read_topic(broker.bootstrap, topic("crowd.labels"), lambda rs: len(task_labels(rs)) >= 40)
    models = await read_topic(broker.bootstrap, topic("control.models"), lambda rs: len(rs) >= 1)
    assert models, "no model before the kill"
    await asyncio.sleep(1.5)  # the pool journal is written every second
    first.proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    first.proc.wait(timeout=10)
    journal = await read_all(broker.bootstrap, topic("crowd.pool"))
    last = {m["worker_id"]: m for m in values(journal)}  # a worker's last record is its state
    pool_before = {worker_id for worker_id, m in last.items() if m["present"]}
    assert pool_before, "the pool journal is empty"
    last_model = {m["classifier"]: m for m in values(models)}
    at_kill = await read_all(broker.bootstrap, topic("crowd.labels"))
    assert len(task_labels(at_kill)) < 2 * BUDGET, "every task was answered before the kill"

    second = start_worker(broker, topology, tmp_path, *crowd_args)
    workers.append(second)

    async def unanswered() -> set[str]:
        tasks = await read_all(broker.bootstrap, topic("crowd.tasks"))
        labels = await read_all(broker.bootstrap, topic("crowd.labels"))
        answered = {label["task_id"] for label in values(labels)}
        return {t["task_id"] for t in values(tasks)} - answered

    deadline = time.monotonic() + 240
    while (missing := await unanswered()) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(2)
    assert not missing, f"{len(missing)} crowd tasks never got a label"
    labels = values(await read_all(broker.bootstrap, topic("crowd.labels")))
    tasks = values(await read_all(broker.bootstrap, topic("crowd.tasks")))
    assert len({t["task_id"] for t in tasks}) == 2 * BUDGET

    # The pool came back: the restarted annotator took its workers back, and they
    # answered again without a new quiz or new recruits in their place.
    log = second.log.read_text(errors="replace")
    assert f"annotator: {len(pool_before)} worker(s) of the pool before the restart" in log
    after = {
        a["worker_id"] for label in labels if label["ts"] > killed_at for a in label["answers"]
    }
    assert after & pool_before, "no worker of the pool before the kill answered after it"
    seen = set(last) | {a["worker_id"] for label in values(at_kill) for a in label["answers"]}
    assert not (after - pool_before) & seen, "a new recruit got the id of an earlier worker"

    # The learner's label count came back from crowd.labels: it holds at least the
    # labels of its last model before the kill.
    for name, old in last_model.items():
        held = old["n_train"] + old["n_holdout"]

        def labels_held(name: str = name) -> float:
            return second.metric("crowdstream_learner_labels", classifier=name)

        assert await wait_until(lambda: labels_held() >= held, timeout_s=60), (  # noqa: B023
            name,
            labels_held(),
            held,
        )


def _children(pid: int) -> list[tuple[int, str]]:
    """The child processes of ``pid`` with their names (Linux /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            if int(fields["PPid"]) == pid:
                found.append((int(status.parent.name), fields["Name"]))
        except (OSError, KeyError, ValueError):
            continue  # it ended meanwhile
    return found


async def test_a_learner_whose_fitting_process_dies_goes_on_publishing(
    broker: EmbeddedBroker, tmp_path: Path, workers: list[Worker]
) -> None:
    """kill -9 of the process scikit-learn refits run in: the worker says so, starts
    another, and trains again; it does not crash."""
    pipeline = "fitterkill"
    topology = write_topology(
        tmp_path,
        pipeline,
        annotator={"speed": 200.0, "pool_size": 6},
        # A budget the first push cannot spend: on a loaded machine 300 labels were all
        # in before the kill, and no retrain was due after it.
        taskgen={"max_tasks_per_minute": 3000, "round_interval_s": 0.1, "label_budget": 1500},
        # The fast teacher: the process's death is under test, and a new process embeds
        # every label again, which with MiniLM (the default's) takes a loaded machine
        # minutes.
        learner={"retrain_every": 10, "min_train": 10, "teacher": "use"},
    )
    worker = start_worker(broker, topology, tmp_path)
    workers.append(worker)
    lines = [orjson.dumps(r) for r in load_sample(3000)]
    await push_lines([broker.bootstrap], pipeline, lines[:1000], rate=500)

    def trained() -> float:  # every outcome: published or kept back by the rule
        return worker.metric("crowdstream_models_trained_total", classifier="aid_related")

    assert await wait_until(lambda: trained() >= 1, timeout_s=120)
    # The worker's other helpers (the classifier's second opinion) run the same
    # command line: the fitter is told by its name.
    fitters = [pid for pid, name in _children(worker.proc.pid) if name == "model-fitting"]
    assert len(fitters) == 1, _children(worker.proc.pid)
    os.kill(fitters[0], signal.SIGKILL)
    # More of the stream, more labels: retrains are due again. (Pushed at once, on a
    # slow machine the first refit could end after the last label, and none would
    # be due after the kill.)
    await push_lines([broker.bootstrap], pipeline, lines[1000:], rate=500)
    # The death shows at the next call on the process; a retrain it broke is not
    # counted, so every one counted after that ran in the new process.
    assert await wait_until(
        lambda: "the model-fitting process died" in worker.log.read_text(), timeout_s=120
    )
    before = trained()
    assert await wait_until(lambda: trained() >= before + 1, timeout_s=120)
    assert worker.proc.poll() is None


async def test_kill_9_of_the_notifier_mid_delivery_loses_no_event(
    broker: EmbeddedBroker,
    tmp_path: Path,
    workers: list[Worker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The notifier commits an event's offset only once its deliveries are done: one
    killed while retrying leaves the event to the next, which sends it under the same
    delivery id (receivers drop duplicates by it)."""
    hooks = Hooks()
    hooks.accepting = False  # the receiver is down: deliveries are tried again
    topology = write_topology(
        tmp_path,
        "notifykill",
        notifier={"webhooks": [{"url": hooks.url}], "attempts": 20},
    )
    monkeypatch.setenv("CROWDSTREAM_WEBHOOK_SECRET", WEBHOOK_SECRET.decode())
    args = ("--pe", "notifier", "--crowd", "none")
    try:
        first = start_worker(broker, topology, tmp_path, *args)
        workers.append(first)
        added = {"roads", "bridges"}
        for name in sorted(added):
            spec = {"name": name, "question": f"Is a {name} blocked?", "tags": ["yes", "no"]}
            status, body = first.post("/api/v1/classifiers", orjson.dumps(spec))
            assert status == 202, body

        def tried() -> set[str]:
            return {
                e["data"]["classifier"] for e in hooks.refused if e["event"] == "classifier.added"
            }

        # The first is tried again and again; the next waits behind it (in order).
        assert await wait_until(lambda: bool(tried()), timeout_s=60)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        refused = {e["delivery"]: e for e in hooks.refused}
        hooks.accepting = True

        second = start_worker(broker, topology, tmp_path, *args)
        workers.append(second)

        def delivered() -> set[str]:
            return {e["delivery"] for e in hooks.events()}

        assert await wait_until(lambda: set(refused) <= delivered(), timeout_s=90), sorted(
            refused[d]["event"] for d in set(refused) - delivered()
        )

        def delivered_added() -> set[str]:
            return {
                e["data"]["classifier"] for e in hooks.events() if e["event"] == "classifier.added"
            }

        assert await wait_until(lambda: delivered_added() >= added, timeout_s=30)
    finally:
        hooks.close()
