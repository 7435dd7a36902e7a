"""A broker that is away: at a worker's start, and for 30 s in the middle of a stream.

The broker here is a second embedded one of the test's own: it starts after the
worker, and is then frozen (SIGSTOP: connections stay open, nothing answers, as in a
network partition or a stalled broker) and thawed. The worker runs the default
topology (load shedding on), fed at 500 items/s by an independent client that keeps
producing through the outage, as a live feed does: the backlog the outage leaves is
caught up, not shed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from channels.dedup import FirstById
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.client import push_lines
from tests.integration.conftest import (
    Worker,
    crisis_shedding,
    read_topic,
    spawn_worker,
    wait_ready,
    wait_until,
    write_topology,
)
from tests.integration.feeds import SteadyProducer

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PIPELINE = "outagetest"
ITEMS = 20_000
RATE = 500.0  #: items/s of the live feed
OUTAGE_S = 30.0


@pytest.fixture
def late_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker on a port of its own, not started yet."""
    broker = EmbeddedBroker(free_port(), tmp_path / "kafka")
    yield broker
    if broker.pid is not None:
        os.kill(broker.pid, signal.SIGCONT)  # a frozen process would not stop
    broker.stop()


@pytest.fixture
def worker(late_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Worker]:
    topology = write_topology(tmp_path, PIPELINE, shedding=crisis_shedding())
    args = ("--pe", "collector", "features", "classifier", "--crowd", "none")
    started = spawn_worker(late_broker.url, topology, tmp_path, *args)
    yield started
    if started.proc.poll() is None:
        started.stop()


async def _steady(read: Callable[[], float], every_s: float = 2.0) -> float:
    """The value of ``read`` once two readings ``every_s`` apart agree (the last one
    after ten tries)."""
    last = read()
    for _ in range(10):
        await asyncio.sleep(every_s)
        now = read()
        if now == last:
            break
        last = now
    return last


def _log(worker: Worker) -> str:
    return worker.log.read_text(errors="replace")


async def test_a_late_broker_and_a_30_s_outage_lose_nothing(
    late_broker: EmbeddedBroker, worker: Worker
) -> None:
    # At start: the worker retries with backoff and says so, rather than exiting.
    assert await wait_until(lambda: "not reachable" in _log(worker), timeout_s=30), _log(worker)
    await asyncio.sleep(3)
    assert worker.proc.poll() is None, _log(worker)
    late_broker.start()
    wait_ready(worker)
    assert "answers (after" in _log(worker)

    rows = [
        {"id": f"o{n}", "text": f"bridge {n % 89} down, {n} people cut off"} for n in range(ITEMS)
    ]
    feed = SteadyProducer(
        late_broker.bootstrap, PIPELINE, [(r["id"], orjson.dumps(r)) for r in rows], RATE
    )
    feed.start()
    topic = f"{PIPELINE}.items.classified"

    def classified() -> float:
        return worker.metric("crowdstream_items_out_total", pe="classifier")

    # Mid-run: the broker answers nothing for 30 s, with batches in flight.
    assert await wait_until(lambda: classified() > 0, timeout_s=60)
    assert late_broker.pid is not None
    before = len(_log(worker))
    os.kill(late_broker.pid, signal.SIGSTOP)
    started = time.monotonic()
    assert await wait_until(lambda: "does not answer" in _log(worker)[before:], 20)
    status, body = worker.get("/healthz")
    assert status == 503 and orjson.loads(body)["broker"] == "down"
    assert worker.metric("crowdstream_broker_up") == 0
    # What the worker held (batches in hand, prefetched records) is handed to the
    # producer, then nothing moves until the broker is back; the feed goes on.
    waited = await _steady(classified)
    await asyncio.sleep(max(OUTAGE_S - (time.monotonic() - started), 2.0))
    assert classified() == waited
    assert feed.sent - feed.acked > 5_000, "the outage came after the feed's end"
    os.kill(late_broker.pid, signal.SIGCONT)
    await asyncio.to_thread(feed.join, ITEMS / RATE + 120)
    assert feed.acked == ITEMS and not feed.errors, feed.errors[:3]

    wanted = {row["id"] for row in rows}

    def ids(records: list[object]) -> list[str]:
        return [orjson.loads(r.value)["id"] for r in records]  # type: ignore[attr-defined]

    records = await read_topic(
        late_broker.bootstrap, topic, lambda rs: wanted <= set(ids(rs)), timeout_s=240
    )
    got = ids(records)
    shed = worker.metric("crowdstream_items_shed_total")
    assert wanted <= set(got), f"{len(wanted - set(got))} items lost in the outage ({shed} shed)"
    once = FirstById()
    assert sorted(i for i in got if once.first(i)) == sorted(wanted)
    assert worker.proc.poll() is None, _log(worker)
    assert await wait_until(lambda: "answers again after" in _log(worker)[before:], 30)
    assert worker.get("/healthz")[0] == 200
    assert worker.metric("crowdstream_broker_up") == 1


async def test_a_broker_replaced_by_an_empty_one_is_named_and_its_topics_declared_again(
    late_broker: EmbeddedBroker, worker: Worker, tmp_path: Path
) -> None:
    """A new, empty broker on the same address (a wiped or replaced cluster): the
    worker says so loudly, is not ready while the pipeline's topics are missing,
    declares them again, and classifies what comes after onto the new broker."""
    late_broker.start()
    wait_ready(worker)
    topic = f"{PIPELINE}.items.classified"

    def ids(records: list[object]) -> set[str]:
        return {orjson.loads(r.value)["id"] for r in records}  # type: ignore[attr-defined]

    async def push(prefix: str, bootstrap: str) -> set[str]:
        rows = [{"id": f"{prefix}{n}", "text": f"road {n} flooded"} for n in range(500)]
        await push_lines([bootstrap], PIPELINE, [orjson.dumps(r) for r in rows])
        return {row["id"] for row in rows}

    before = await push("old", late_broker.bootstrap)
    got = await read_topic(late_broker.bootstrap, topic, lambda rs: before <= ids(rs))
    assert before <= ids(got)

    # From here: the worker may notice the new broker while it is still starting.
    log_from = len(_log(worker))
    late_broker.stop()
    replacement = EmbeddedBroker(late_broker.port, tmp_path / "another-kafka")
    try:
        replacement.start()
        assert await wait_until(lambda: "lacks" in _log(worker)[log_from:], timeout_s=60)
        assert "Declaring them again" in _log(worker)[log_from:]
        assert await wait_until(lambda: worker.get("/healthz")[0] == 200, timeout_s=90)
        after = await push("new", replacement.bootstrap)
        got = await read_topic(
            replacement.bootstrap, topic, lambda rs: after <= ids(rs), timeout_s=120
        )
        assert after <= ids(got), f"{len(after - ids(got))} items never reached the new broker"
        assert "topics exist again" in _log(worker)[log_from:]
    finally:
        replacement.stop()
