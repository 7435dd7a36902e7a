"""Running PEs in memory, without a broker: the test harness.

The way ``bytewax.testing`` runs a dataflow over a list and quix-streams collects a
list sink, :class:`PeHarness` runs any registered PEs of a topology (the built-in
ones or your own, see docs/extending.md) over records you give and keeps what they
write::

    async with PeHarness(load_topology("crisis"), ["features", "classifier"]) as run:
        await run.feed("items.raw", [{"id": "1", "text": "we need water"}])
        [item] = run.outputs("items.classified")

The PEs are wired exactly as in a worker (pipelines.app.build_worker): their Faust
agents run, the data plane decodes, sheds and fuses stages, and dead letters go to
``items.rejected``. Only the broker is replaced: records written are kept in
order, and a channel written by one of the PEs is read back by those that read it,
its writer included (as a log is). Timers run when :meth:`PeHarness.tick` says, so
a test decides when a task round or a retrain happens. ``logs`` hands the PEs'
followers a channel's earlier records before they start: that is how a restart is
tested (readers in consumer groups go on from their committed offsets).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from pydantic import BaseModel

from channels.records import ModelMetrics, ModelUpdate
from channels.signing import ModelSigner
from config import Settings, load_settings
from pe.common.catalog import CHANNEL as CATALOG_CHANNEL
from pe.common.hashing import sparse_rows
from pe.common.heap import tune_collector
from pe.common.space import FeatureSpace
from pe.learner.teacher import PoolItem, SampleUpdate, Teaching, warm
from pe.learner.trainers import Example, fit_logistic
from pe.params import FeaturesParams, LearnerParams
from pe.registry import params_of
from pipelines.app import Worker, build_worker, model_signer
from pipelines.sample import load_sample
from pipelines.topology import Topology
from runtime.batches import Publisher
from runtime.cluster import PLAINTEXT, Security
from runtime.follower import Follower, Handler

__all__ = [
    "MemoryFollower",
    "MemoryPublisher",
    "PeHarness",
    "Record",
    "encode_record",
    "sample_models",
]

#: A record to feed: a pydantic record, a JSON object, or raw bytes (malformed ones
#: included), optionally with its key as ``(key, value)``.
Record = BaseModel | Mapping[str, Any] | bytes | tuple[str | bytes | None, Any]
#: How many rounds of read-back :meth:`PeHarness.settle` does before it gives up: PEs
#: that keep answering each other's records are a loop, not a pipeline.
MAX_ROUNDS = 100


class MemoryPublisher(Publisher):
    """Keeps what the PEs write, in order, by topic."""

    def __init__(self) -> None:
        super().__init__([])
        self.written: list[tuple[str, bytes | None, bytes]] = []

    async def publish(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]]
    ) -> list[Awaitable[Any]]:
        if not records:
            return []
        self.written.extend((topic, key, value) for key, value in records)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done]

    async def answers(self, timeout_s: float) -> bool | None:
        return True

    async def stop(self) -> None:
        return None


class MemoryFollower(Follower):
    """A log follower the harness feeds (see :meth:`PeHarness.feed`)."""

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        handler: Handler,
        *,
        since_ms: int | None = None,
    ) -> None:
        super().__init__(bootstrap_servers, topic, handler, since_ms=since_ms)

    async def run(self) -> None:
        return None  # nothing to poll: the harness hands records over

    async def take(self, records: Sequence[ConsumerRecord]) -> None:
        self.records_read += len(records)
        for handler in self._handlers:
            result = handler(records)
            if result is not None:
                await result


class PeHarness:
    """The PEs ``pes`` of ``topology`` (default: all of them) in memory."""

    def __init__(
        self,
        topology: Topology,
        pes: Sequence[str] | None = None,
        *,
        settings: Settings | None = None,
        logs: Mapping[str, Sequence[Record]] | None = None,
    ) -> None:
        self.publisher = MemoryPublisher()
        self.followers: list[MemoryFollower] = []

        def follower(
            bootstrap_servers: list[str],
            topic: str,
            handler: Handler,
            *,
            since_ms: int | None = None,
            security: Security = PLAINTEXT,
        ) -> Follower:
            made = MemoryFollower(bootstrap_servers, topic, handler, since_ms=since_ms)
            self.followers.append(made)
            return made

        self.worker: Worker = build_worker(
            settings or load_settings(crowd="simulated"),
            topology,
            pes=pes,
            embedded=True,
            publisher=self.publisher,
            new_follower=follower,
        )
        self.context = self.worker.context
        #: Kafka topic -> channel key, for what the PEs wrote and follow.
        self._channels = {spec.name: key for key, spec in self.context.topics.items()}
        self._logs = {channel: list(records) for channel, records in (logs or {}).items()}
        self._offsets: dict[str, itertools.count[int]] = {}
        self._read_back = 0  #: records written that were handed to readers
        self._tasks: list[asyncio.Future[None]] = []

    async def __aenter__(self) -> PeHarness:
        for agent in self.context.app.agents.values():
            await agent.start()
        # The classifiers first: the other logs' readers wait for them, as in a worker.
        for channel in sorted({CATALOG_CHANNEL, *self._logs}, key=lambda c: c != CATALOG_CHANNEL):
            # Only followers read a log again on a restart: the data plane's consumer
            # groups go on from their committed offsets.
            topic = self._topic(channel)
            records = self._logs.get(channel, [])
            await self._follow(topic, self._consumer_records(channel, records))
            for follower in self.followers:
                if follower.topic == topic:
                    follower.caught_up.set()
        for follower in self.followers:
            follower.caught_up.set()
        self._tasks = [asyncio.ensure_future(work()) for work in self.context.tasks]
        await asyncio.sleep(0)  # let the tasks start (rebuilds after the logs are read)
        await self.settle()
        tune_collector()  # as a started worker does (pipelines.app)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        gc.unfreeze()  # the next harness's objects must not pile up behind this one's
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for agent in self.context.app.agents.values():
            await agent.stop()

    async def feed(self, channel: str, records: Sequence[Record]) -> None:
        """Write ``records`` to ``channel`` as one batch, let the PEs reading it take
        it, and :meth:`settle`."""
        topic = self._topic(channel)
        await self._hand_over(topic, self._consumer_records(channel, records))
        await self.settle()

    async def tick(self, times: int = 1) -> None:
        """Run every timer of the PEs ``times`` times (task rounds, retrains, job
        steps), each followed by :meth:`settle`."""
        for _ in range(times):
            for timer in self.context.timers:
                await timer()
            await self.settle()

    async def settle(self) -> None:
        """Hand what the PEs wrote to the PEs that read it, until nothing new comes."""
        for _ in range(MAX_ROUNDS):
            fresh = self.publisher.written[self._read_back :]
            if not fresh:
                return
            self._read_back = len(self.publisher.written)
            by_topic: dict[str, list[ConsumerRecord]] = {}
            for topic, key, value in fresh:
                by_topic.setdefault(topic, []).append(self._consumer_record(topic, key, value))
            for topic, records in by_topic.items():
                await self._hand_over(topic, records)
        raise RuntimeError(f"PEs still answering each other after {MAX_ROUNDS} rounds")

    def outputs(self, channel: str) -> list[Any]:
        """The JSON values written to ``channel`` (raw bytes where not JSON), in order."""
        return self.all_outputs().get(channel, [])

    def all_outputs(self) -> dict[str, list[Any]]:
        """:meth:`outputs` of every channel written to."""
        return {
            channel: [_json_or_bytes(value) for value in values]
            for channel, values in self.written().items()
        }

    def written(self) -> dict[str, list[bytes]]:
        """Everything written, by channel: the raw values, in order."""
        found: dict[str, list[bytes]] = {}
        for topic, _, value in self.publisher.written:
            found.setdefault(self._channels.get(topic, topic), []).append(value)
        return found

    async def _hand_over(self, topic: str, records: list[ConsumerRecord]) -> None:
        if not records:
            return
        plane = self.context.plane
        if topic in plane.topics_read():
            await self.context.flush(await plane.take(topic, records))
        await self._follow(topic, records)

    async def _follow(self, topic: str, records: list[ConsumerRecord]) -> None:
        for follower in self.followers:
            if follower.topic == topic:
                await follower.take(records)

    def state(self, pe: str) -> object | None:
        """PE ``pe``'s durable state (see PipelineContext.durable); None if it has none."""
        snapshot = self.context.snapshots.get(pe)
        return snapshot() if snapshot is not None else None

    def followed(self) -> list[str]:
        """The channels the PEs follow from their start (rebuilding state from them)."""
        return sorted({self._channels.get(f.topic, f.topic) for f in self.followers})

    def _topic(self, channel: str) -> str:
        spec = self.context.topics.get(channel)
        return spec.name if spec is not None else channel

    def _consumer_records(self, channel: str, records: Sequence[Record]) -> list[ConsumerRecord]:
        topic = self._topic(channel)
        out = []
        for record in records:
            key, value = record if isinstance(record, tuple) else (None, record)
            out.append(self._consumer_record(topic, _bytes(key), encode_record(value)))
        return out

    def _consumer_record(self, topic: str, key: bytes | None, value: bytes) -> ConsumerRecord:
        offset = next(self._offsets.setdefault(topic, itertools.count()))
        return ConsumerRecord(
            topic=topic,
            partition=0,
            offset=offset,
            timestamp=int(time.time() * 1000),
            timestamp_type=0,
            key=key,
            value=value,
            checksum=None,
            serialized_key_size=len(key or b""),
            serialized_value_size=len(value),
            headers=(),
        )


def _bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


def encode_record(value: Any) -> bytes:
    """A record to feed as the bytes a producer writes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    return orjson.dumps(value)


def _json_or_bytes(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _teaching(
    topology: Topology,
    sample: Sequence[dict[str, Any]],
    rows: Sequence[tuple[list[int], list[float]]],
    taught: int,
) -> Teaching:
    """The topology's teacher over the first ``taught`` items of the sample, embedded."""
    learner = params_of(topology.params, LearnerParams)
    pool = [
        PoolItem(str(i), str(row["text"]), idx, val)
        for i, (row, (idx, val)) in enumerate(zip(sample[:taught], rows, strict=False))
    ]
    teaching = Teaching(
        learner.teacher,
        learner.teacher_c,
        learner.teacher_weight,
        SampleUpdate([item.item_id for item in pool], pool),
        learner.second_opinion_share,
        smoothing=learner.teacher_smoothing,
    )
    while warm(teaching)[0] < len(pool):
        pass
    return teaching


def sample_models(
    topology: Topology, signer: ModelSigner | None = None, taught: int = 0
) -> list[bytes]:
    """A model of each classifier of ``topology``, trained on the bundled sample's
    truth, as ``control.models`` records: signed with ``signer``, by default as a
    harness worker checks them (to start a :class:`PeHarness` with
    ``logs={"control.models": ...}``). ``taught``: distil from the topology's teacher
    over that many of the sample's items, as the learner does, so that a two-tag
    model carries its decision and second opinion (the encoders embed each of those
    items twice: about a minute for 1,000 with ``use+minilm``); 0: a plain word model."""
    sample = load_sample()
    space = FeatureSpace(params_of(topology.params, FeaturesParams))
    rows = sparse_rows(space.matrix([str(row["text"]) for row in sample]))
    signer = signer or model_signer(load_settings(crowd="simulated"), embedded=True)
    teaching = _teaching(topology, sample, rows, taught) if taught else None
    records = []
    for spec in topology.classifiers:
        examples = [
            Example(idx, val, str(row["meta"]["truth"][spec.truth_field]), 1.0, str(i), text)
            for i, ((idx, val), row) in enumerate(zip(rows, sample, strict=True))
            if spec.truth_field in row["meta"]["truth"]
            for text in [str(row["text"]) if i < taught else None]
        ]
        positive = spec.tags[0] if len(spec.tags) == 2 and teaching else None
        model = fit_logistic(examples, space.dimensions, 1.0, positive, teaching=teaching)
        if model is None:
            raise ValueError(f"{spec.name}: the sample's truth has a single tag")
        update = ModelUpdate(
            classifier=spec.name,
            version=1,
            family="sklearn",
            created=time.time(),
            n_train=len(examples),
            n_holdout=0,
            metrics=ModelMetrics(auc=None, accuracy=None, per_tag={}),
            model=model,
        )
        records.append(signer.sign(update))
    return records
