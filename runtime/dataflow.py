"""The data plane of a worker: high-rate channels read and written in batches.

PEs on the data path (collector source, features, classifier, task generator) attach
*sinks* to channels. A channel is read from Kafka by one :class:`BatchReader` per
process, decoded once, and handed to every sink attached to it. When the PE that
writes a channel runs in the same process, its sinks are called directly with the
writer's in-memory batch instead (stages are fused; the channel is still written,
so the topology users see does not change).

Every sink returns the futures of what it sent; a batch's input offsets are
committed only when all of them, including those of fused stages further down,
have resolved. If a sink raises, the batch's records go to ``items.rejected`` with
the error (they are never silently dropped, and the stage keeps running). A stopping
worker (SIGTERM) reads nothing new, finishes the batches in hand and commits them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord
from mode import Service

from runtime.batches import BatchReader, Publisher
from runtime.cluster import PLAINTEXT, Security

__all__ = ["DataPlane", "Decoder", "Pending", "Sink"]

log = logging.getLogger(__name__)

#: How long a stopping worker waits for the batches in hand to finish.
STOP_TIMEOUT_S = 20.0
#: How long it then waits for the producer to deliver what it still holds.
FLUSH_TIMEOUT_S = 10.0

Pending = list[Awaitable[Any]]
#: Handles one decoded batch; returns the futures of the records it sent.
Sink = Callable[[Any], Awaitable[Pending]]
#: Turns a batch of records into the unit its sinks take (and rejects bad records).
Decoder = Callable[[Sequence[ConsumerRecord]], Awaitable[tuple[Any, Pending]]]
#: Drops records by a load-shedding policy before decoding; returns those to keep.
Shed = Callable[[Sequence[ConsumerRecord]], list[ConsumerRecord]]
#: Called when a sink raised: rejects the batch's records with the reason.
OnError = Callable[[str, Sequence[ConsumerRecord], BaseException], Awaitable[Pending]]


@dataclass
class _Route:
    topic: str
    pe: str  #: the first PE attached: it owns decoding and rejecting
    decoder: Decoder
    max_records: int
    shed: Shed | None
    sinks: list[Sink] = field(default_factory=list)
    reader: BatchReader | None = None


@dataclass
class ReaderSettings:
    bootstrap_servers: list[str]
    group_id: str
    fetch_wait_ms: int
    rebalance_timeout_s: float
    session_timeout_s: float
    security: Security = PLAINTEXT


class DataPlane(Service):
    """Readers of this worker's data-flow channels and its one producer."""

    def __init__(
        self, settings: ReaderSettings, on_error: OnError, publisher: Publisher | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.publisher = publisher or Publisher(
            settings.bootstrap_servers, security=settings.security
        )
        self._on_error = on_error
        self._routes: dict[str, _Route] = {}
        self._local: dict[str, list[Sink]] = {}
        self._runs: list[asyncio.Future[None]] = []

    def read(
        self,
        topic: str,
        pe: str,
        decoder: Decoder,
        sink: Sink,
        max_records: int = 5000,
        shed: Shed | None = None,
    ) -> None:
        """Read ``topic`` from Kafka, decode each batch once, and pass it to ``sink``.

        The first PE to read a topic sets its decoder, batch size and shedding.
        """
        route = self._routes.setdefault(topic, _Route(topic, pe, decoder, max_records, shed))
        route.sinks.append(sink)

    def attach(self, topic: str, sink: Sink) -> None:
        """Pass what this process writes to ``topic`` straight to ``sink`` (fused)."""
        self._local.setdefault(topic, []).append(sink)

    async def deliver(self, topic: str, unit: Any) -> Pending:
        """Hand ``unit`` (just written to ``topic``) to the fused sinks of ``topic``."""
        pending: Pending = []
        for sink in self._local.get(topic, ()):
            pending.extend(await sink(unit))
        return pending

    def readers(self) -> list[BatchReader]:
        return [route.reader for route in self._routes.values() if route.reader is not None]

    def reader(self, topic: str) -> BatchReader | None:
        """The reader of ``topic`` (None before the plane starts, or if it is fused)."""
        route = self._routes.get(topic)
        return route.reader if route else None

    async def on_start(self) -> None:
        await self.publisher.start()
        s = self.settings
        for route in self._routes.values():
            route.reader = BatchReader(
                s.bootstrap_servers,
                route.topic,
                f"{s.group_id}.{route.topic}",
                max_records=route.max_records,
                fetch_wait_ms=s.fetch_wait_ms,
                rebalance_timeout_s=s.rebalance_timeout_s,
                session_timeout_s=s.session_timeout_s,
                security=s.security,
            )
            await route.reader.start()
            self._runs.append(self.add_future(self._run(route, route.reader)))

    async def on_stop(self) -> None:
        # Graceful stop: no new reads; each route finishes the batch in hand, then its
        # offsets are committed once its output is acknowledged.
        for reader in self.readers():
            reader.stop_reading()
        if self._runs:
            await asyncio.wait(self._runs, timeout=STOP_TIMEOUT_S)
        for reader in self.readers():
            await reader.stop()
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                await self.publisher.stop()
        except TimeoutError:
            # Seen after the broker restarted under the worker: a produce retried
            # without end held the exit until the worker was killed. Nothing is lost:
            # the inputs of unacknowledged output were not committed, and are read
            # again after a restart.
            log.error(
                "the producer did not deliver its last records within %.0f s; stopping "
                "without them (their inputs are read again, their tasks asked again, after "
                "a restart)",
                FLUSH_TIMEOUT_S,
            )

    async def _run(self, route: _Route, reader: BatchReader) -> None:
        async for records in reader.batches():
            await reader.done(records, await self._take(route, records))

    async def take(self, topic: str, records: Sequence[ConsumerRecord]) -> Pending:
        """Pass one batch of ``topic`` through its stages as a reader would (the test
        harness's way in); the futures of everything it sent."""
        return await self._take(self._routes[topic], records)

    def topics_read(self) -> list[str]:
        return list(self._routes)

    async def _take(self, route: _Route, records: Sequence[ConsumerRecord]) -> Pending:
        pending: Pending = []
        try:
            kept = route.shed(records) if route.shed else records
            unit, pending = await route.decoder(kept)
            for sink in route.sinks:
                pending.extend(await sink(unit))
        except Exception as exc:
            log.exception("%s: a batch of %s failed", route.pe, route.topic)
            pending.extend(await self._on_error(route.pe, records, exc))
        return pending
