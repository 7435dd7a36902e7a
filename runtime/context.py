"""What a PE gets when it registers: the Faust app, its channels, metrics and helpers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import faust
from aiohttp import web
from aiokafka import ConsumerRecord
from faust.types import TopicT
from pydantic import BaseModel

from channels.codec import encode, rejected
from channels.jobs import JobCommand, job_status
from channels.shedding import SheddingPolicy
from channels.signing import ModelSigner
from channels.topics import TopicSpec
from config import Settings
from pe.common.api import Endpoint
from pe.common.catalog import ClassifierCatalog
from pe.common.metrics import Metrics
from pe.params import ClassifierSpec
from pe.registry import params_of, pe_spec
from runtime.agents import BatchAgent
from runtime.cluster import PLAINTEXT, Security
from runtime.dataflow import DataPlane, Decoder, Pending, Sink
from runtime.follower import Follower, FollowerFactory, Handler
from runtime.stagebooks import StageShedder
from runtime.windows import WindowRegistry

__all__ = ["PipelineContext"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
P = TypeVar("P", bound=BaseModel)

#: Channels a stage may read straight from its writer when both run in one process.
FUSED_WRITERS = {"items.features": "features"}


@dataclass
class PipelineContext:
    """One worker's view of its pipeline, shared by the PEs it runs."""

    app: faust.App
    pipeline: str
    #: The classifiers, as the topology seeds them and operators change them.
    catalog: ClassifierCatalog
    #: The topology's ``params``, an instance of pe.registry.params_model().
    params: BaseModel
    topics: dict[str, TopicSpec]
    bootstrap_servers: list[str]
    metrics: Metrics
    settings: Settings
    #: The PEs this worker runs.
    pes: list[str]
    plane: DataPlane
    #: Signs the models this worker publishes and checks those it reads.
    signer: ModelSigner
    #: The PEs' HTTP API endpoints (pe.common.api), served with one OpenAPI document.
    endpoints: list[Endpoint] = field(default_factory=list)
    #: Other HTTP routes (pages, their assets) the PEs add to the worker's web server.
    routes: list[web.RouteDef] = field(default_factory=list)
    #: Called when the web server stops, before it waits for open requests.
    web_closing: list[Callable[[], None]] = field(default_factory=list)
    #: Awaited when the worker stops, once the web server has stopped and before the
    #: data plane does: what requests started (a crowd answer's label) is written.
    draining: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: How this worker connects to the cluster (TLS, SASL).
    security: Security = PLAINTEXT
    #: Makes the reader of a log followed from its start (see :meth:`follow`); the
    #: test harness (pipelines.testing) passes one that reads from memory.
    new_follower: FollowerFactory = Follower
    #: The PEs' periodic work and background tasks (Faust runs them; the test
    #: harness runs them when told).
    timers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    tasks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: Each PE's durable state (what it rebuilds from logs on a restart), as plain
    #: data: the contract suite (pipelines.contract) compares it across a restart.
    snapshots: dict[str, Callable[[], object]] = field(default_factory=dict)
    _faust_topics: dict[str, TopicT] = field(default_factory=dict)
    _followers: dict[str, Follower] = field(default_factory=dict)
    _all_followers: list[Follower] = field(default_factory=list)
    _shared: dict[str, Any] = field(default_factory=dict)

    def params_of(self, kind: type[P]) -> P:
        """The pipeline's parameters of type ``kind`` (a PE's section, or shedding)."""
        return params_of(self.params, kind)

    def topic(self, key: str) -> TopicT:
        """The Faust topic of a channel; values and keys stay bytes (PEs decode them)."""
        if key not in self._faust_topics:
            spec = self.topics[key]
            self._faust_topics[key] = self.app.topic(
                spec.name,
                partitions=spec.partitions,
                key_serializer="raw",
                value_serializer="raw",
            )
        return self._faust_topics[key]

    async def send(self, key: str, record_key: str | None, value: bytes) -> Awaitable[Any]:
        """Queue ``value`` on channel ``key``; await the returned future for delivery."""
        encoded_key = record_key.encode() if record_key is not None else None
        return (await self.publish(key, [(encoded_key, value)]))[0]

    async def publish(self, key: str, records: Sequence[tuple[bytes | None, bytes]]) -> Pending:
        """Queue many ``(key, value)`` records on channel ``key``, as record batches."""
        return await self.plane.publisher.publish(self.topics[key].name, records)

    async def flush(self, pending: Sequence[Awaitable[Any]]) -> None:
        """Wait until every queued send is acknowledged by the broker."""
        if pending:
            await asyncio.gather(*pending)

    async def reject(
        self, stage: str, kind: str, reason: str, raw: bytes | str | None
    ) -> Awaitable[Any]:
        """Send a record to ``items.rejected`` with its reason, and count it."""
        self.metrics.items_rejected.labels(self.pipeline, stage, kind).inc()
        log.debug("rejected (%s): %s", kind, reason, extra={"pe": stage})
        return await self.send("items.rejected", None, encode(rejected(stage, reason, raw)))

    async def reject_failed(
        self, stage: str, records: Sequence[ConsumerRecord], exc: BaseException
    ) -> Pending:
        """A stage failed on a batch: send each of its records to items.rejected."""
        reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
        return [await self.reject(stage, "error", reason, record.value) for record in records]

    def consume(
        self,
        key: str,
        pe: str,
        decoder: Decoder,
        sink: Sink,
        batch_size: int = 5000,
        *,
        shed_key: Callable[[str], str] | None = None,
    ) -> None:
        """Have ``sink`` (of PE ``pe``) take every batch of channel ``key``.

        If the PE writing ``key`` runs in this process, ``sink`` gets its batches
        directly (fused); otherwise the channel is read from Kafka and decoded with
        ``decoder``, once for all the sinks of this process, after load shedding
        has dropped what it must (if the pipeline enables it and ``shed_key``, the
        text key that makes two items near-duplicates, is given).
        """
        self._check_reads(pe, key)
        agent = self.agent(pe, key, sink)
        if self.is_fused(key):
            self.plane.attach(self.topics[key].name, agent)
            return
        topic = self.topics[key].name
        shedder = None
        if shed_key is not None and self.params_of(SheddingPolicy).enabled:
            windows = self.job_windows()
            shedder = StageShedder(
                self.params_of(SheddingPolicy),
                self.metrics,
                self.pipeline,
                pe,
                dup_key=shed_key,
                reader=lambda: self.plane.reader(topic),
                protect=windows.protects,
                witness=windows.witness,
            )
        self.plane.read(topic, pe, decoder, agent, batch_size, shedder)

    def is_fused(self, key: str) -> bool:
        """Do readers of channel ``key`` in this process get batches from its writer?"""
        return FUSED_WRITERS.get(key) in self.pes

    def read_topic(self, topic: str, pe: str, decoder: Decoder, sink: Sink) -> None:
        """Read a topic outside the pipeline (a collector source) in batches."""
        self.plane.read(topic, pe, decoder, self.agent(pe, topic, sink))

    def agent(
        self, owner: str, channel: str, handler: Callable[[T], Awaitable[R]]
    ) -> BatchAgent[T, R]:
        """``handler`` as the Faust agent ``<pipeline>.<owner>.<channel>`` (see
        runtime.agents): ``owner`` is a PE, or a part several PEs share."""
        name = f"{self.pipeline}.{owner}.{channel}"
        if name in self.app.agents:
            raise ValueError(f"{owner} already has an agent on {channel}: one handler a channel")
        return BatchAgent(self.app, name, handler)

    async def deliver(self, key: str, unit: Any) -> Pending:
        """Pass a batch just written to channel ``key`` to the fused stages reading it."""
        return await self.plane.deliver(self.topics[key].name, unit)

    def durable(self, owner: str, snapshot: Callable[[], object]) -> None:
        """Declare ``owner``'s state rebuilt from logs: ``snapshot()`` gives it as
        plain data (sorted, no timestamps), equal before and after a restart."""
        self.snapshots[owner] = snapshot

    def timer(self, interval_s: float, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` every ``interval_s`` seconds, as the Faust timer ``name``."""
        self.timers.append(work)
        self.app.timer(interval_s, name=name)(work)

    def task(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` once the worker has started, as a Faust task."""
        self.tasks.append(work)
        self.app.task(work)

    def follow(
        self, key: str, owner: str, handler: Handler, *, since_ms: int | None = None
    ) -> Follower:
        """Read channel ``key`` from its start in this process (see runtime.follower),
        each batch taken by ``handler`` as the agent of ``owner`` (see :meth:`agent`).

        One follower per channel and process: later callers share its records. With
        ``since_ms`` the follower is the caller's own and starts at the first record
        written at or after that time (epoch milliseconds).
        """

        async def take(records: Sequence[ConsumerRecord]) -> None:
            result = handler(records)
            if result is not None:
                await result

        if owner in self.pes:
            self._check_reads(owner, key)
        agent = self.agent(owner, key, take)
        if since_ms is None and key in self._followers:
            existing = self._followers[key]
            existing.add_handler(agent)
            return existing
        follower = self.new_follower(
            self.bootstrap_servers,
            self.topics[key].name,
            agent,
            since_ms=since_ms,
            security=self.security,
        )
        if since_ms is None:
            self._followers[key] = follower
        self._all_followers.append(follower)
        self.task(follower.run)
        return follower

    def catching_up(self) -> list[str]:
        """The logs followed here not yet read to where they ended when reading began:
        state rebuilt from them is not whole yet."""
        return sorted({f.topic for f in self._all_followers if not f.caught_up.is_set()})

    @staticmethod
    def _check_reads(pe: str, key: str) -> None:
        # The registry's inputs draw the topology graph and check deployments: a PE
        # reading more than it declares would make them wrong.
        if not pe_spec(pe).reads(key):
            raise ValueError(f"PE {pe!r} reads {key!r}, which its PeSpec.inputs do not list")

    def job_windows(self) -> WindowRegistry:
        """The jobs' open stream windows, for this worker's shedding stages.

        Shed items of unprotected windows are reported to their jobs (as ``shed``
        events on ``jobs``) every second.
        """

        def create() -> WindowRegistry:
            registry = WindowRegistry()

            def on_results(records: Sequence[ConsumerRecord]) -> None:
                for record in records:
                    status = job_status(record.value)
                    if status is not None:
                        registry.update(status)

            async def report() -> None:
                now = time.time()
                for job_id, count in registry.drain().items():
                    command = JobCommand(action="shed", job_id=job_id, shed=count, ts=now)
                    await (await self.send("jobs", job_id, encode(command)))

            self.follow("jobs.results", "windows", on_results)
            self.timer(1.0, f"{self.pipeline}.windows.report", report)
            return registry

        return self.shared("job_windows", create)

    def shared(self, name: str, factory: Callable[[], T]) -> T:
        """One instance of ``factory()`` per worker, for state several PEs read."""
        if name not in self._shared:
            self._shared[name] = factory()
        return cast(T, self._shared[name])

    @property
    def crowd(self) -> str:
        return self.settings.crowd

    @property
    def classifiers(self) -> list[ClassifierSpec]:
        """The classifiers items are classified on now (see pe.common.catalog)."""
        return self.catalog.serving()

    def classifier_names(self) -> list[str]:
        return [spec.name for spec in self.classifiers]
