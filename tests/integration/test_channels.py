"""The channel helpers against the real embedded broker: a follower after an error,
and the publisher's keyless records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from channels.topics import TopicPolicy, TopicSpec
from pipelines.broker import EmbeddedBroker
from runtime.admin import declare_topics
from runtime.batches import Publisher
from runtime.follower import Follower
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


async def _topic(broker: EmbeddedBroker, partitions: int) -> str:
    name = f"channels-{uuid.uuid4().hex[:8]}"
    await declare_topics([broker.bootstrap], [TopicSpec(name, name, partitions)], TopicPolicy())
    return name


async def test_a_follower_goes_on_from_what_its_handlers_took_after_an_error(
    broker: EmbeddedBroker,
) -> None:
    topic = await _topic(broker, 1)
    publisher = Publisher([broker.bootstrap])
    for start in range(0, 100, 10):  # ten record batches
        rows = [(None, str(n).encode()) for n in range(start, start + 10)]
        await asyncio.gather(*await publisher.publish(topic, rows))
    await publisher.stop()

    seen: list[bytes] = []
    failures = 0

    def handle(records: Sequence[ConsumerRecord]) -> None:
        nonlocal failures
        if failures == 0 and any(r.value == b"55" for r in records):
            failures += 1  # as when a handler's send fails: the batch was not taken
            raise KafkaError("a send failed")
        seen.extend(r.value for r in records)

    follower = Follower([broker.bootstrap], topic, handle, max_records=10)
    task = asyncio.create_task(follower.run())
    try:
        assert await wait_until(lambda: len(seen) >= 100, timeout_s=30)
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
    assert failures == 1
    # Every record once: the failed batch came again, nothing before it did.
    assert sorted(seen, key=int) == [str(n).encode() for n in range(100)]


async def test_keyless_records_spread_over_partitions_across_calls(
    broker: EmbeddedBroker,
) -> None:
    topic = await _topic(broker, 4)
    publisher = Publisher([broker.bootstrap])
    try:
        parts = []
        for n in range(8):  # one record per call, as rejections are sent
            (future,) = await publisher.publish(topic, [(None, str(n).encode())])
            parts.append((await future).partition)
    finally:
        await publisher.stop()
    assert sorted(parts) == [0, 0, 1, 1, 2, 2, 3, 3]


async def test_a_follower_is_caught_up_only_with_the_last_batch_read(
    broker: EmbeddedBroker,
) -> None:
    """A follower says it is caught up only once it holds every record up to the
    partition's high watermark, over batches of any size."""
    topic = await _topic(broker, 1)
    publisher = Publisher([broker.bootstrap])
    try:
        for n in range(10):  # ten single-record batches, then one of fifty
            await asyncio.gather(*await publisher.publish(topic, [(None, b"%d" % n)]))
        rows = [(None, b"%d" % n) for n in range(10, 60)]
        await asyncio.gather(*await publisher.publish(topic, rows))
    finally:
        await publisher.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()

    seen: list[bytes] = []
    follower = Follower([broker.bootstrap], topic, lambda rs: seen.extend(r.value for r in rs))
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.caught_up.wait(), 30)
    finally:
        task.cancel()
    assert len(seen) == 60  # every record, when it says it is caught up
    assert end == 60  # the end offset is the high watermark


async def test_a_follower_of_a_log_written_all_the_time_catches_up(
    broker: EmbeddedBroker,
) -> None:
    """Caught up means holding the log as it was when reading began: a log that
    never pauses (crowd.labels under a large crowd) has no end to wait for."""
    topic = await _topic(broker, 1)
    publisher = Publisher([broker.bootstrap])
    rows = [(None, b"%d" % n) for n in range(1000)]
    await asyncio.gather(*await publisher.publish(topic, rows))

    async def write_on() -> None:
        n = 1000
        while True:
            await asyncio.gather(*await publisher.publish(topic, [(None, b"%d" % n)]))
            n += 1
            await asyncio.sleep(0.005)

    seen: list[bytes] = []
    writer = asyncio.create_task(write_on())
    follower = Follower(
        [broker.bootstrap], topic, lambda rs: seen.extend(r.value for r in rs), max_records=50
    )
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.caught_up.wait(), 15)
        assert len(seen) >= 1000
    finally:
        task.cancel()
        writer.cancel()
        await publisher.stop()
