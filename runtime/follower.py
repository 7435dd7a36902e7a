"""Reading a whole topic from its start in every process (a broadcast channel).

Control flows (models) must reach every classifier instance, and some PE state is
rebuilt from the log it came from (the learner's labels, the task generator's
issued tasks). A consumer group would split those topics between processes and
resume from committed offsets, so a follower reads without a group, from offset 0.

"Caught up" is an empty fetch at or past the partitions' end offsets (the high
watermarks) as they were when the fetch came back empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from runtime.admin import partitions_of
from runtime.cluster import PLAINTEXT, Security
from runtime.retry import broker_retrying

__all__ = ["Follower", "FollowerFactory", "Handler"]

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[ConsumerRecord]], Awaitable[None] | None]


class FollowerFactory(Protocol):
    def __call__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        handler: Handler,
        *,
        since_ms: int | None = None,
        security: Security = PLAINTEXT,
    ) -> Follower: ...


class Follower:
    """Follow ``topic`` from the beginning, calling ``handler`` with each batch."""

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        handler: Handler,
        *,
        poll_ms: int = 200,
        max_records: int = 2000,
        since_ms: int | None = None,
        security: Security = PLAINTEXT,
    ) -> None:
        """``since_ms``: start at the first record written at or after this time
        (epoch milliseconds) instead of offset 0."""
        self.topic = topic
        self._since_ms = since_ms
        self._handlers: list[Handler] = [handler]
        self._poll_ms = poll_ms
        self._max_records = max_records
        self._bootstrap = bootstrap_servers
        self._security = security
        self.caught_up = asyncio.Event()
        self.records_read = 0
        #: Per partition, the offset after the last record every handler took.
        self._handled: dict[TopicPartition, int] = {}

    def add_handler(self, handler: Handler) -> None:
        """Also call ``handler``; it sees records from where the follower is now.

        Register every handler before the worker starts so each sees the whole log.
        """
        self._handlers.append(handler)

    async def run(self) -> None:
        """Read until cancelled. After a broker error (or one a handler raised), go on
        from the first record not yet handled: a batch whose handling failed comes
        again, so handlers must take a record twice without harm.
        """
        async for attempt in broker_retrying(f"follower of {self.topic} lost the broker", log):
            with attempt:
                await self._read()

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            **self._security.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._poll_ms,
        )
        await consumer.start()
        try:
            partitions = await self._partitions()
            consumer.assign(partitions)
            await self._seek(consumer, partitions)
            # Caught up at the log's end when reading began: a log written all the
            # time (crowd.labels under a large crowd) never has an end to wait for.
            ends = await consumer.end_offsets(partitions)
            while True:
                if not self.caught_up.is_set() and await self._reached(consumer, ends):
                    log.debug(
                        "follower of %s caught up at %d records", self.topic, self.records_read
                    )
                    self.caught_up.set()
                batches = await consumer.getmany(
                    timeout_ms=self._poll_ms, max_records=self._max_records
                )
                records = [record for batch in batches.values() for record in batch]
                if records:
                    self.records_read += len(records)
                    for handler in self._handlers:
                        result = handler(records)
                        if result is not None:
                            await result
                    for tp, batch in batches.items():
                        self._handled[tp] = batch[-1].offset + 1
        finally:
            await consumer.stop()

    async def _seek(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        await self._seek_start(consumer, partitions)
        for tp in partitions:  # a restart of the read: on from what the handlers took
            if tp in self._handled:
                consumer.seek(tp, self._handled[tp])

    async def _seek_start(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        if self._since_ms is None:
            await consumer.seek_to_beginning(*partitions)
            return
        try:
            found = await consumer.offsets_for_times({tp: self._since_ms for tp in partitions})
        except KafkaError as exc:  # a broker without time lookups: read it all
            log.info("no offsets by time for %s (%s): reading from its start", self.topic, exc)
            await consumer.seek_to_beginning(*partitions)
            return
        for tp in partitions:
            at = found.get(tp)
            if at is None:
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, at.offset)

    async def _partitions(self) -> list[TopicPartition]:
        for _ in range(100):
            found = await partitions_of(self._bootstrap, self.topic, self._security)
            if found:
                return [TopicPartition(self.topic, p) for p in found]
            await asyncio.sleep(0.1)
        msg = f"topic {self.topic!r} does not exist; declare the pipeline's topics first"
        raise RuntimeError(msg)

    async def _reached(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        """Whether the records before ``ends`` (offsets) were handed to the handlers."""
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True
