"""The embedded Apache Kafka broker as a user runs it: ``crowdstream up --embedded``.

- Stopping and starting the whole stack keeps every topic: classified items, crowd
  labels, models, the crowd pool; the learner takes its labels back.
- A broker killed under a running worker is restarted by it, loudly, and the stream
  goes on with nothing lost.
- A port in use and a log folder of another cluster each get one clear message.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipelines.broker import BrokerError, EmbeddedBroker, free_port
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import Worker, read_all, values, wait_ready, write_topology

pytestmark = pytest.mark.integration

PIPELINE = "embeddedtest"


def _up(data_dir: Path, topology: Path, broker_port: int, log: Path) -> Worker:
    """``crowdstream up --embedded`` with its data under ``data_dir``."""
    http = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "up",
                str(topology),
                "--embedded",
                "--broker-port",
                str(broker_port),
                "--http-port",
                str(http),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "CROWDSTREAM_DATA_DIR": str(data_dir)},
        )
    worker = Worker(proc, f"http://127.0.0.1:{http}", log)
    wait_ready(worker)
    return worker


def _java_child(worker: Worker) -> int:
    """The pid of the embedded broker, a child process of the worker."""
    children = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read_text()
    for pid in children.split():
        if b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return int(pid)
    raise AssertionError("the worker runs no embedded broker")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.stop()


@pytest.mark.faults
def test_the_stack_restarts_with_every_topic_and_survives_its_broker_dying(
    tmp_path: Path, stack: list[Worker]
) -> None:
    topology = write_topology(
        tmp_path,
        PIPELINE,
        annotator={"speed": 60.0, "pool_size": 6},
        taskgen={"max_tasks_per_minute": 3000, "round_interval_s": 0.1, "label_budget": 60},
        learner={"retrain_every": 10, "min_train": 10},
    )
    data, port, log = tmp_path / "data", free_port(), tmp_path / "worker.log"
    bootstrap = [f"127.0.0.1:{port}"]
    first = _up(data, topology, port, log)
    stack.append(first)
    sample = load_sample(3000)

    def topic(key: str) -> str:
        return f"{PIPELINE}.{key}"

    def read(key: str) -> list[dict[str, Any]]:
        return values(asyncio.run(read_all(bootstrap[0], topic(key))))

    def classified_ids() -> set[str]:
        return {r["id"] for r in read("items.classified")}

    def push(rows: list[dict[str, Any]]) -> None:
        asyncio.run(push_lines(bootstrap, PIPELINE, [orjson.dumps(r) for r in rows]))

    push(sample[:1500])
    deadline = time.monotonic() + 120
    while len(classified_ids()) < 1500 and time.monotonic() < deadline:
        time.sleep(1)

    # The broker dies under the running worker: it says so, restarts it, goes on.
    os.kill(_java_child(first), signal.SIGKILL)
    deadline = time.monotonic() + 90
    while "embedded broker restarted" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    text = log.read_text()
    assert "(the embedded broker) exited with code" in text
    assert "embedded broker restarted" in text
    push(sample[1500:])
    deadline = time.monotonic() + 180
    while len(ids := classified_ids()) < 3000 and time.monotonic() < deadline:
        time.sleep(1)
    assert ids == {r["id"] for r in sample}, f"{3000 - len(ids)} items lost"
    deadline = time.monotonic() + 120  # the crowd and the learner take longer
    while len(read("control.models")) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    labels_before = read("crowd.labels")
    models_before = read("control.models")
    pool_before = read("crowd.pool")
    assert labels_before and models_before and pool_before

    # The whole stack stops (the worker stops its broker) and comes back.
    first.stop()
    assert first.proc.returncode == 0, first.tail()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the broker outlived its worker"
    second = _up(data, topology, port, log)
    stack.append(second)
    assert classified_ids() == {r["id"] for r in sample}
    # Every label is still there (partitions may interleave in another order).
    assert {orjson.dumps(r) for r in labels_before} <= {
        orjson.dumps(r) for r in read("crowd.labels")
    }
    newest = {m["classifier"]: m["version"] for m in read("control.models")}
    for model in models_before:
        assert newest[model["classifier"]] >= model["version"]
    assert len(read("crowd.pool")) >= len(pool_before)
    # The learner rebuilt its labels from the log, not from a new crowd.
    task_labels = [label for label in labels_before if label["kind"] != "gold"]
    for name in {label["classifier"] for label in task_labels}:
        held = sum(1 for label in task_labels if label["classifier"] == name)
        deadline = time.monotonic() + 60
        while (
            second.metric("crowdstream_learner_labels", classifier=name) < held
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        assert second.metric("crowdstream_learner_labels", classifier=name) >= held, name


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(port, tmp_path / "kafka")
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is in use"):
            broker.start()


def test_a_log_folder_of_another_cluster_is_refused_and_kept(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for folder in (ours, theirs):
        with EmbeddedBroker(free_port(), folder):
            pass
    # Their log folder where ours was (a restored backup of the wrong machine, say).
    (ours / "node-1").rename(tmp_path / "ours-node-1")
    (theirs / "node-1").rename(ours / "node-1")
    broker = EmbeddedBroker(free_port(), ours)
    with pytest.raises(BrokerError, match="holds Kafka data of cluster .* point data_dir"):
        broker.start()
    assert broker.pid is None
    assert (ours / "node-1" / "meta.properties").is_file()  # nothing was deleted
