"""Reading a time range of a topic: every record written from one time to another,
up to the end each partition had when the read began (exports, tests, benchmarks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from runtime.admin import partitions_of
from runtime.cluster import Security

__all__ = ["read_range"]


async def read_range(
    bootstrap: list[str],
    topic: str,
    since_ms: int,
    until_ms: int,
    security: Security,
    *,
    max_records: int = 5000,
) -> AsyncIterator[list[ConsumerRecord]]:
    """Batches of ``topic``'s records written from ``since_ms`` to ``until_ms``, up to
    the end each partition had when the read began; at most ``max_records`` a batch."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **security.client_options(),
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic, security)
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
        open_ = set()
        for tp in partitions:
            start = starts.get(tp)
            if start is not None and start.offset < ends[tp]:
                consumer.seek(tp, start.offset)
                open_.add(tp)
        while open_:
            batches = await consumer.getmany(*open_, timeout_ms=500, max_records=max_records)
            records: list[ConsumerRecord] = []
            for tp, batch in batches.items():
                for record in batch:
                    if record.offset >= ends[tp] or record.timestamp > until_ms:
                        open_.discard(tp)
                        break
                    records.append(record)
                else:
                    if batch and batch[-1].offset + 1 >= ends[tp]:
                        open_.discard(tp)
            if records:
                yield records
    finally:
        await consumer.stop()
