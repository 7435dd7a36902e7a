"""Reading and writing a data-flow channel in batches, without per-message overhead.

Faust's stream machinery costs ~70 µs per message (a do-nothing agent consumes about
14,000 messages/s here), which caps a worker far below the throughput target, so the
high-rate channels are read and written here with aiokafka directly:

- :class:`BatchReader` reads one topic in a consumer group, ``getmany`` batches at a
  time, and commits a batch's offsets only after everything the batch produced is
  acknowledged (at least once; in order, even with several batches in flight).
- :class:`Publisher` writes many records per call as per-partition record batches,
  partitioned by key with Kafka's default (murmur2) partitioner, so other clients and
  crowdstream agree on where an item id lives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    KafkaError,
    KafkaTimeoutError,
)
from aiokafka.partitioner import murmur2

from runtime.cluster import PLAINTEXT, Security
from runtime.retry import broker_retrying
from runtime.stallwatch import StallWatch

__all__ = ["BatchReader", "KeyHashes", "Publisher"]

log = logging.getLogger(__name__)

#: How long a batch may wait for room in the producer's queue (its request timeout).
ENQUEUE_TIMEOUT_S = 40.0
#: How many keys' hashes :class:`KeyHashes` keeps (between this and twice as many).
KEY_HASH_MEMORY = 20_000
#: Reads that return nothing for longer than this are a pause (an outage, a failover,
#: or quiet input); a stage under load gets records every fetch wait (0.5 s) or sooner.
PAUSE_S = 2.0


class KeyHashes:
    """Kafka's default partitioner hash (murmur2, positive) of the keys recently hashed.

    A stage writes an item to each of its channels under the item's id (features
    writes ``items.features`` and, fused, the classifier ``items.classified``), and
    aiokafka's murmur2 is pure Python, about 2 µs a key: each key is hashed once. Two
    generations of at most ``memory`` keys bound the memory.
    """

    def __init__(self, memory: int = KEY_HASH_MEMORY) -> None:
        self._memory = memory
        self._recent: dict[bytes, int] = {}
        self._older: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        found = self._recent.get(key)
        if found is None:
            found = self._older.get(key)
            if found is None:
                found = murmur2(key) & 0x7FFFFFFF
            self._recent[key] = found
            if len(self._recent) >= self._memory:
                self._older, self._recent = self._recent, {}
        return found


class Publisher:
    """One producer per process; records go out as per-partition batches."""

    def __init__(
        self,
        bootstrap_servers: list[str],
        *,
        linger_ms: int = 5,
        security: Security = PLAINTEXT,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._security = security
        self._linger_ms = linger_ms
        #: The topics the broker named at the last probe (see :meth:`answers`).
        self.broker_topics: frozenset[str] = frozenset()
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._spread = 0  #: the next partition of keyless records (round robin)
        self._hash = KeyHashes()
        self._lock: asyncio.Lock | None = None

    async def start(self) -> AIOKafkaProducer:
        """Start the producer on first use (it needs the running event loop)."""
        if self._producer is not None:
            return self._producer
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    **self._security.client_options(),
                    linger_ms=self._linger_ms,
                    # Acknowledged by every in-sync replica, and written once even when
                    # a send is retried after a broker fails over.
                    acks="all",
                    enable_idempotence=True,
                    max_batch_size=1024 * 1024,
                    max_request_size=8 * 1024 * 1024,
                )
                await producer.start()
                self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def answers(self, timeout_s: float) -> bool | None:
        """Whether the broker answers a metadata request within ``timeout_s``; None
        while the producer is not running (before start, after stop). The topics it
        named are then in :attr:`broker_topics`."""
        producer = self._producer
        if producer is None:
            return None
        try:
            metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout_s)
        except (KafkaError, OSError, TimeoutError):
            return False
        self.broker_topics = frozenset(metadata.topics())
        return True

    async def _partition_count(self, producer: AIOKafkaProducer, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = len(await producer.partitions_for(topic))
            self._partitions[topic] = count
        return count

    async def publish(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]]
    ) -> list[Awaitable[Any]]:
        """Queue ``(key, value)`` records on ``topic``; await the futures for delivery.

        Waits only while the producer's buffer is full (backpressure).
        """
        if not records:
            return []
        producer = await self.start()
        count = await self._partition_count(producer, topic)
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for key, value in records:
            if key is None:
                # Keyless records are spread evenly over calls too (one-record calls,
                # such as rejections, would otherwise all land on partition 0).
                part = self._spread % count
                self._spread += 1
            else:
                part = self._hash(key) % count
            by_partition.setdefault(part, []).append((key, value))
        futures: list[Awaitable[Any]] = []
        for part, rows in by_partition.items():
            batch = producer.create_batch()
            for key, value in rows:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await self._enqueue(producer, batch, topic, part))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        msg = f"a record of {len(value)} bytes does not fit in a batch"
                        raise ValueError(msg)
            futures.append(await self._enqueue(producer, batch, topic, part))
        return futures

    async def _enqueue(
        self, producer: AIOKafkaProducer, batch: Any, topic: str, part: int
    ) -> Awaitable[Any]:
        """Queue ``batch``, waiting for room up to the request timeout."""
        deadline = time.monotonic() + ENQUEUE_TIMEOUT_S
        while True:
            try:
                future: Awaitable[Any] = await producer.send_batch(batch, topic, partition=part)
            except KafkaTimeoutError:
                # aiokafka subtracts the total time waited from what is left at every
                # turn of its wait for room, so a partition many callers write to
                # times out in well under its timeout. The batch was not queued.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)
            else:
                return future


class _Drain(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Before partitions move to another process, finish and commit what is in flight."""

    def __init__(self, reader: BatchReader) -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._reader.drain()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._reader.resumed += 1
        log.info(
            "%s: assigned %s",
            self._reader.topic,
            ", ".join(str(tp.partition) for tp in sorted(assigned)) or "nothing",
        )


class BatchReader:
    """Read ``topic`` in consumer group ``group_id``, a batch at a time.

    Usage: ``async for records in reader.batches(): ...; await reader.done(records,
    futures)``. ``done`` hands over the futures of everything the batch produced; its
    offsets are committed once they have all resolved, in the order the batches were
    read. At most ``max_in_flight`` batches wait for acknowledgements; reading pauses
    beyond that. If a send fails for good, the reader rewinds to the first record not
    committed and reads it again (nothing is lost; outputs may repeat).
    """

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        group_id: str,
        *,
        max_records: int,
        fetch_wait_ms: int,
        rebalance_timeout_s: float,
        session_timeout_s: float,
        max_in_flight: int = 4,
        stall_after_s: float = 30.0,
        security: Security = PLAINTEXT,
    ) -> None:
        """``stall_after_s``: with unread records waiting, reads that return nothing
        for this long are a stall (see :attr:`stalled`)."""
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            **security.client_options(),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            rebalance_timeout_ms=int(rebalance_timeout_s * 1000),
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=1000,
            # A subscription learns of a topic created again (a wiped or new cluster)
            # only from fresh metadata: 10 s, not the default 5 minutes.
            metadata_max_age_ms=10_000,
        )
        self._max_records = max_records
        self._in_flight: asyncio.Queue[_Pending] = asyncio.Queue(max_in_flight)
        self._committer: asyncio.Task[None] | None = None
        self._positions: dict[TopicPartition, int] = {}
        #: Bumped by a rewind: batches read before it are not committed.
        self._generation = 0
        self._read_generation = 0
        #: How many times reading resumed after a pause (no record for PAUSE_S: an
        #: outage, a failover, or only quiet input) or from an earlier point
        #: (partitions assigned, a rewind): what waits then is the pipeline's own
        #: backlog, not overload (see channels.shedding).
        self.resumed = 0
        self._quiet_since: float | None = None
        self._stall = StallWatch(stall_after_s)
        self._closing = False

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe([self.topic], listener=_Drain(self))
        self._committer = asyncio.create_task(self._commit_loop())

    def stop_reading(self) -> None:
        """:meth:`batches` ends before its next read (the batch in hand is finished)."""
        self._closing = True

    async def stop(self) -> None:
        """Commit what is in flight, then leave the group."""
        try:
            await self.drain()
        finally:
            if self._committer is not None:
                self._committer.cancel()
            await self._consumer.stop()

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment())

    @property
    def stalled(self) -> bool:
        """The broker holds unread records for us but has returned none for a while
        (see runtime.stallwatch); False again once records come."""
        return self._stall.stalled

    def lag(self) -> int | None:
        """Records behind the end of the assigned partitions, as the last fetches saw it.

        None until every assigned partition has been fetched from.
        """
        total = 0
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            position = self._positions.get(tp)
            if end is None or position is None:
                return None
            total += max(end - position, 0)
        return total

    async def batches(self, poll_ms: int = 200) -> AsyncIterator[list[ConsumerRecord]]:
        """Batches of records, forever; retries with backoff while the broker is away."""
        while not self._closing:
            try:
                found = await self._fetch(poll_ms)
            except ConsumerStoppedError:
                return
            except KafkaError:
                return  # only when closing: until then the fetch is retried
            records = [record for batch in found.values() for record in batch]
            if not records:
                self._quiet()
                await self._check_stall()
            if records:
                if self._quiet_since is not None:
                    if time.monotonic() - self._quiet_since > PAUSE_S:
                        self.resumed += 1
                    self._quiet_since = None
                if self._stall.received(time.monotonic()):
                    log.warning("%s: the broker answers fetches again", self.topic)
                for tp, batch in found.items():
                    self._positions[tp] = batch[-1].offset + 1
                self._read_generation = self._generation
                yield records

    async def _fetch(self, poll_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        """One fetch, tried again while the broker is away (until the reader closes)."""
        retrying = broker_retrying(f"{self.topic}: read failed", log, stop=lambda _: self._closing)
        found: dict[TopicPartition, list[ConsumerRecord]] = await retrying(self._getmany, poll_ms)
        return found

    async def _getmany(self, poll_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        try:
            found: dict[TopicPartition, list[ConsumerRecord]] = await self._consumer.getmany(
                timeout_ms=poll_ms, max_records=self._max_records
            )
        except KafkaError:
            self._quiet()
            raise
        return found

    def _quiet(self) -> None:
        if self._quiet_since is None:
            self._quiet_since = time.monotonic()

    async def _check_stall(self) -> None:
        """Warn when the broker holds records past our positions but returns none."""
        now = time.monotonic()
        partitions = list(self._consumer.assignment())
        if not partitions or not self._stall.due(now):
            return
        try:
            ends = await self._consumer.end_offsets(partitions)
            positions = {tp: await self._consumer.position(tp) for tp in partitions}
        except KafkaError:
            return  # the broker is away: the read loop says so
        waiting = self._stall.judge(now, ends, positions)
        if waiting:
            log.warning(
                "%s: the broker holds at least %d unread records but returned none for "
                "%.0f s: check the broker's health and its log",
                self.topic,
                waiting,
                self._stall.after_s,
            )

    async def done(self, records: Sequence[ConsumerRecord], futures: list[Awaitable[Any]]) -> None:
        """Commit ``records`` once ``futures`` resolve; waits if too many are in flight."""
        first: dict[TopicPartition, int] = {}
        after: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
            after[tp] = max(after.get(tp, 0), record.offset + 1)
        await self._in_flight.put(_Pending(first, after, futures, self._read_generation))

    async def drain(self) -> None:
        """Wait until every batch handed to :meth:`done` is committed (or rewound)."""
        await self._in_flight.join()

    async def _commit_loop(self) -> None:
        while True:
            pending = await self._in_flight.get()
            try:
                await self._settle(pending)
            finally:
                self._in_flight.task_done()

    async def _settle(self, pending: _Pending) -> None:
        if pending.generation != self._generation:
            return  # read before a rewind: it is being read again
        try:
            if pending.futures:
                await asyncio.gather(*pending.futures)
        except KafkaError as exc:
            log.error("%s: sending a batch's output failed (%s); reading it again", self.topic, exc)
            self._generation += 1
            self.resumed += 1
            for tp, offset in pending.first.items():
                if tp in self._consumer.assignment():
                    self._consumer.seek(tp, offset)
            return
        try:
            await self._consumer.commit(pending.after)
        except (CommitFailedError, KafkaError) as exc:
            # The batch is processed; its records come again to whoever owns the
            # partition next (at least once; sinks deduplicate by item id).
            log.warning("%s: commit failed (%s)", self.topic, exc)


@dataclass(frozen=True)
class _Pending:
    first: dict[TopicPartition, int]  #: first offset of the batch per partition
    after: dict[TopicPartition, int]  #: offset to commit per partition
    futures: list[Awaitable[Any]]
    generation: int
