"""What a push sees of the pipeline it feeds.

- :class:`ReaderLag`: how many records the pipeline's readers of a topic have yet to
  read (from their consumer groups' committed offsets), so a push can pace itself to
  what the pipeline sustains instead of piling up a backlog that load shedding would
  take for overload.
- :class:`Tally`: which pushed items came out of the pipeline, classified or
  rejected; once the readers caught up, the others were shed.

Both only read: offsets through the admin API, outputs with a consumer of no group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from runtime.cluster import PLAINTEXT, Security

__all__ = ["PushReport", "ReaderLag", "Tally", "item_id"]

#: How long the list of reader groups is reused (groups come and go rarely).
_GROUPS_TTL_S = 5.0


class ReaderLag:
    """Records the consumer groups reading ``topics`` have yet to read.

    A reader group is one whose name ends with ``.<topic>`` (a worker's group for a
    topic is ``<app>.<topic>``: see runtime.dataflow).
    """

    def __init__(
        self, bootstrap: Sequence[str], topics: Sequence[str], security: Security = PLAINTEXT
    ) -> None:
        self._topics = list(topics)
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=list(bootstrap), **security.client_options()
        )
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=list(bootstrap), **security.client_options(), group_id=None
        )
        self._groups: dict[str, list[str]] = {}
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._groups_at = float("-inf")

    async def start(self) -> None:
        await self._admin.start()
        await self._offsets.start()

    async def stop(self) -> None:
        await self._offsets.stop()
        await self._admin.close()

    async def _reader_groups(self) -> dict[str, list[str]]:
        if time.monotonic() - self._groups_at > _GROUPS_TTL_S:
            names = [group for group, *_ in await self._admin.list_consumer_groups()]
            self._groups = {
                topic: [name for name in names if name.endswith(f".{topic}")]
                for topic in self._topics
            }
            self._groups_at = time.monotonic()
        return self._groups

    async def behind(self, topic: str) -> int | None:
        """The most records any reader group of ``topic`` has yet to read; None when
        no group reads it (no worker has started on it yet)."""
        groups = (await self._reader_groups()).get(topic, [])
        if not groups:
            return None
        partitions = self._partitions.get(topic)
        if not partitions:
            [described] = await self._admin.describe_topics([topic])
            partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
            self._partitions[topic] = partitions
        ends = await self._offsets.end_offsets(partitions)
        starts = await self._offsets.beginning_offsets(partitions)
        worst = 0
        for group in groups:
            committed = await self._admin.list_consumer_group_offsets(group, partitions=partitions)
            behind = 0
            for tp in partitions:
                done = committed.get(tp)
                # No commit yet: the group reads from the earliest record kept.
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                behind += max(ends[tp] - position, 0)
            worst = max(worst, behind)
        return worst

    async def caught_up(self) -> bool:
        """The first topic has readers, and every reader group of every topic has
        read all there is (a later topic may have none: its stage is fused)."""
        for i, topic in enumerate(self._topics):
            behind = await self.behind(topic)
            if (behind is None and i == 0) or (behind or 0) > 0:
                return False
        return True


@dataclass
class PushReport:
    """What became of a push's items (those with an id; the pipeline names the
    others itself, so they cannot be followed)."""

    sent: int
    untracked: int = 0  #: sent without an id
    classified: int = 0
    rejected: int = 0
    shed: int | None = None  #: None: the pipeline had not caught up when the push stopped waiting
    waiting: int = 0  #: not accounted for when the push stopped waiting

    def describe(self, topic: str) -> str:
        text = f"pushed {self.sent} records to {topic}"
        if self.shed is None and not self.classified and not self.rejected:
            return text
        text += f": {self.classified} classified, {self.rejected} rejected"
        if self.shed is not None:
            text += f", {self.shed} shed by the pipeline under overload"
        if self.waiting:
            text += f", {self.waiting} not yet out (the pipeline had not caught up)"
        if self.untracked:
            text += f" ({self.untracked} without an id not followed)"
        return text


class Tally:
    """Follows ``<pipeline>.items.classified`` and ``.items.rejected`` from where they
    end at :meth:`start`, ticking off the ids :meth:`expect` was given."""

    def __init__(
        self, bootstrap: Sequence[str], pipeline: str, security: Security = PLAINTEXT
    ) -> None:
        self._consumer = AIOKafkaConsumer(
            f"{pipeline}.items.classified",
            f"{pipeline}.items.rejected",
            bootstrap_servers=list(bootstrap),
            **security.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        self._classified_topic = f"{pipeline}.items.classified"
        self._pending: set[str] = set()
        self.classified = 0
        self.rejected = 0
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        # Settle the "latest" positions before anything is pushed.
        await self._consumer.getmany(timeout_ms=200)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._consumer.stop()

    def expect(self, item_id: str) -> None:
        """Follow ``item_id`` (before it is sent, so it cannot come out unseen)."""
        self._pending.add(item_id)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in batches.items():
                classified = tp.topic == self._classified_topic
                for record in records:
                    item_id = _item_id(record.value, classified)
                    if item_id is None or item_id not in self._pending:
                        continue  # not ours, or a repeat (outputs are at least once)
                    self._pending.discard(item_id)
                    if classified:
                        self.classified += 1
                    else:
                        self.rejected += 1


def item_id(line: bytes) -> str | None:
    """The id of an item's JSON line, or None when it is not an object with one."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("id"), str | int):
        return str(obj["id"])
    return None


def _item_id(value: bytes | None, classified: bool) -> str | None:
    """The item id of a classified record, or of the raw record a rejection keeps."""
    if classified:
        return item_id(value or b"")
    try:
        raw = orjson.loads(value or b"")["raw"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return item_id(raw.encode()) if isinstance(raw, str) else None
