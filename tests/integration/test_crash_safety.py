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
    await push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(r) for r in rows])
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
    records = await read_topic(
        broker.bootstrap, CLASSIFIED, lambda rs: wanted <= set(mine(rs)), timeout_s=240
    )
    ids = mine(records)
    assert wanted <= set(ids), f"{len(wanted - set(ids))} items never classified"
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
    assert workers[0].proc.returncode == 0, workers[0].log.read_text()[-3000:]
    # What the first worker read it finished and committed: the second one repeats
    # none of it, so there is nothing for the dedup rule to drop.
    assert len(ids) == len(wanted), f"{len(ids) - len(wanted)} items classified twice"
