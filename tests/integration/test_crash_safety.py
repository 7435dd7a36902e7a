"""Crash safety on the embedded broker: ``kill -9`` of a worker in the middle of a
20,000-item stream, a restart, and every item classified, each exactly once after
the documented dedup rule (channels.dedup: the first record of an id wins)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from channels.dedup import FirstById
from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from tests.integration.conftest import Worker, read_topic, start_worker, write_topology

pytestmark = pytest.mark.integration

PIPELINE = "crashtest"
ITEMS = 20_000


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_topology(tmp_path_factory.mktemp("topology"), PIPELINE)


def _ids(records: list[object]) -> list[str]:
    return [orjson.loads(record.value)["id"] for record in records]  # type: ignore[attr-defined]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc.poll() is None:
            worker.stop()


async def test_kill_9_mid_stream_then_restart_loses_nothing(
    broker: EmbeddedBroker, topology: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    args = ("--pe", "collector", "features", "classifier", "--crowd", "none")
    first = start_worker(broker, topology, tmp_path, *args)
    workers.append(first)
    rows = [
        {"id": f"c{n}", "text": f"flood in district {n % 97}, family {n} needs water"}
        for n in range(ITEMS)
    ]
    await push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(r) for r in rows])
    topic = f"{PIPELINE}.items.classified"
    # Kill the worker mid-stream: some items are out, most are not.
    partial = await read_topic(broker.bootstrap, topic, lambda rs: len(rs) >= 2_000)
    assert 2_000 <= len(partial) < ITEMS, "the stream ended before the kill"
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)

    second = start_worker(broker, topology, tmp_path, *args)
    workers.append(second)
    wanted = {row["id"] for row in rows}
    records = await read_topic(
        broker.bootstrap, topic, lambda rs: wanted <= set(_ids(rs)), timeout_s=240
    )
    ids = _ids(records)
    assert wanted <= set(ids), f"{len(wanted - set(ids))} items never classified"

    once = FirstById()
    kept = [item_id for item_id in ids if once.first(item_id)]
    assert sorted(kept) == sorted(wanted)  # each exactly once after dedup
    assert once.repeats == len(ids) - len(wanted)
