"""What a data-plane reader tells about its reading: stalls and resumptions.

The Kafka consumer is replaced by a scripted one here: what is tested is how the
reader reads its answers (the integration tests run it on a real broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from runtime import batches
from runtime.batches import BatchReader

TP = TopicPartition("t", 0)


class ScriptedConsumer:
    """Answers each read with the next batch of its script (empty: nothing came),
    after the read's wait; ``end`` records are on the broker. Notes what ``watch``
    says at each read."""

    def __init__(self, script: Sequence[list[ConsumerRecord]], end: int) -> None:
        self.script = list(script)
        self.end = end
        self.position_now = 0
        self.watch: Callable[[], Any] = lambda: None
        self.seen: list[Any] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.seen.append(self.watch())
        await asyncio.sleep(timeout_ms / 1000)
        batch = self.script.pop(0) if self.script else []
        if batch:
            self.position_now = batch[-1].offset + 1
        return {TP: batch} if batch else {}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: self.end}

    async def position(self, tp: TopicPartition) -> int:
        return self.position_now

    def highwater(self, tp: TopicPartition) -> int:
        return self.end


def record(offset: int) -> ConsumerRecord:
    return ConsumerRecord("t", 0, offset, 0, 0, None, b"{}", None, 0, 2, [])


def reader(
    monkeypatch: pytest.MonkeyPatch, consumer: ScriptedConsumer, stall_after_s: float = 60
) -> BatchReader:
    monkeypatch.setattr(batches, "AIOKafkaConsumer", lambda **_: consumer)
    return BatchReader(
        ["localhost:1"],
        "t",
        "g",
        max_records=10,
        fetch_wait_ms=10,
        rebalance_timeout_s=1,
        session_timeout_s=1,
        stall_after_s=stall_after_s,
    )


async def read(watched: BatchReader, batches_wanted: int) -> None:
    got = 0
    async for _ in watched.batches(poll_ms=10):
        got += 1
        if got == batches_wanted:
            return


async def test_unread_records_that_do_not_come_are_a_stall_until_records_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A batch, then 20 reads (about 200 ms) that return nothing while the broker
    # holds 98 more records, then a batch.
    consumer = ScriptedConsumer([[record(0)]] + [[]] * 20 + [[record(1)]], end=100)
    watched = reader(monkeypatch, consumer, stall_after_s=0.05)
    consumer.watch = lambda: watched.stalled
    await read(watched, 2)
    assert consumer.seen[:2] == [False, False]  # too soon to tell from an idle moment
    assert consumer.seen[-1] is True  # seen as stalled while nothing came
    assert not watched.stalled  # the batch that came ended it


async def test_an_idle_reader_with_nothing_waiting_is_not_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = ScriptedConsumer([[record(0)]] + [[]] * 20 + [[record(1)]], end=1)
    watched = reader(monkeypatch, consumer, stall_after_s=0.05)
    consumer.watch = lambda: watched.stalled
    await read(watched, 2)
    assert not any(consumer.seen)


async def test_reading_after_a_pause_counts_as_a_resumption(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batches, "PAUSE_S", 0.1)
    # Records, a short gap (about 20 ms), records, a long gap (200 ms), records.
    script = [[record(0)], [], [], [record(1)]] + [[]] * 20 + [[record(2)]]
    consumer = ScriptedConsumer(script, end=3)
    watched = reader(monkeypatch, consumer)
    resumed = []
    async for _ in watched.batches(poll_ms=10):
        resumed.append(watched.resumed)
        if len(resumed) == 3:
            break
    assert resumed == [0, 0, 1]
