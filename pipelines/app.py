"""The app factory: a Faust app with the chosen PEs of a topology, and its web server."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from faust.types import TopicT
from prometheus_client import CollectorRegistry, Gauge

from channels.signing import DEVELOPMENT_KEY, ModelSigner
from channels.topics import TopicSpec
from config import Settings
from pe.common.catalog import ClassifierCatalog, follow_catalog
from pe.common.catalog_api import serve_catalog
from pe.common.export import serve_export
from pe.common.heap import tune_collector
from pe.common.http import HttpLimits
from pe.common.lifecycle import stop_helpers
from pe.common.metrics import Metrics
from pe.registry import pe_spec, pe_specs
from pipelines.console import serve_console
from pipelines.topology import Topology
from pipelines.web import WebServer
from runtime.admin import declare_topics
from runtime.batches import Publisher
from runtime.brokerwatch import BrokerWatch
from runtime.context import PipelineContext
from runtime.dataflow import DataPlane, ReaderSettings
from runtime.follower import Follower, FollowerFactory

__all__ = ["Worker", "build_worker"]

log = logging.getLogger(__name__)

#: A group member that stops heartbeating (a killed worker) is dropped after this
#: long, so its partitions move on quickly; rebalances themselves may take longer.
SESSION_TIMEOUT_S = 10.0
#: How often the consumer-lag gauge is refreshed.
LAG_EVERY_S = 2.0
#: How often the broker is probed, and how long a probe waits for its answer.
PROBE_EVERY_S = 5.0
PROBE_TIMEOUT_S = 3.0


def _watch_broker(
    app: faust.App,
    plane: DataPlane,
    up: Gauge,
    settings: Settings,
    topics: Sequence[TopicSpec],
) -> BrokerWatch:
    """Probe the broker every few seconds: log when an outage starts and ends (clients
    wait it out quietly otherwise), keep the ``broker_up`` gauge, and notice a broker
    that lacks the pipeline's topics (a new or wiped cluster on the same address:
    writes would go nowhere) and declare them again."""
    security = settings.security()
    watch = BrokerWatch()
    up.set(1)
    broker = settings.broker

    async def probe() -> None:
        now = time.monotonic()
        answered = await plane.publisher.answers(PROBE_TIMEOUT_S)
        if answered is None:
            return  # the data plane is starting or stopping
        lasted = watch.outage_s(now)
        change = watch.probed(now, answered)
        up.set(1 if watch.up else 0)
        if change == "down":
            log.warning(
                "broker %s does not answer (no reply in %.0f s): reads and writes wait "
                "and are retried, nothing is lost",
                broker,
                PROBE_TIMEOUT_S,
            )
        elif change == "up":
            log.warning("broker %s answers again after about %.0f s", broker, lasted)
        if answered:
            await check_topics()

    async def check_topics() -> None:
        missing = sorted(s.name for s in topics if s.name not in plane.publisher.broker_topics)
        if missing and not watch.missing_topics:
            log.error(
                "broker %s lacks %d topic(s) of this pipeline (%s): a new or wiped "
                "cluster, or deleted topics. Records on the old ones are not on it. "
                "Declaring them again; the worker is not ready until they exist",
                broker,
                len(missing),
                ", ".join(missing),
            )
        elif watch.missing_topics and not missing:
            log.warning("broker %s: the pipeline's topics exist again", broker)
        watch.missing_topics = missing
        if missing:
            try:
                await declare_topics(
                    settings.bootstrap_servers,
                    [s for s in topics if s.name in missing],
                    settings.topic_policy(),
                    wait_s=PROBE_TIMEOUT_S,
                    security=security,
                )
            except (KafkaError, OSError, RuntimeError) as exc:  # RuntimeError: refused
                log.warning("declaring the topics again failed (%s); retrying", exc)

    app.timer(PROBE_EVERY_S, name="crowdstream.broker_watch")(probe)
    return watch


@dataclass
class Worker:
    app: faust.App
    context: PipelineContext
    web: WebServer
    pes: list[str]

    def runner(self, **options: Any) -> faust.Worker:
        """The Faust worker that runs the app and the services beside it."""
        return _Runner(self.app, self.context, self.web, **options)


class _Runner(faust.Worker):
    """Starts the data plane and the web server before the app; stops the web server
    first, then the plane.

    mode stops a worker's services newest first, the app before them. Requests write
    through the plane (a crowd answer's label), so the web server stops first and the
    PEs finish what requests started (``draining``). The data plane finishes the
    batches in hand when it stops, and the app's agents do that work, so the plane
    must stop while they still run.
    """

    def __init__(
        self, app: faust.App, context: PipelineContext, web: WebServer, **options: Any
    ) -> None:
        super().__init__(app, context.plane, web, **options)
        self._context = context
        self._web = web

    async def on_stop(self) -> None:
        await self._web.stop()
        for drain in self._context.draining:
            await drain()
        await self._context.plane.stop()
        await super().on_stop()

    async def on_shutdown(self) -> None:
        # The app has stopped: nothing awaits its helpers' work any more.
        stop_helpers()
        await super().on_shutdown()

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        tune_collector()


def model_signer(settings: Settings, *, embedded: bool) -> ModelSigner:
    """The signer of this worker's model updates: the key from settings, or on the
    embedded broker (development only) a public development key."""
    if settings.model_key is not None:
        return ModelSigner(settings.model_key.get_secret_value().encode())
    if not embedded:
        raise ValueError(
            "model_key is not set: the learner signs models with it and classifiers check "
            "them, so set CROWDSTREAM_MODEL_KEY (16+ characters, the same on every worker)"
        )
    log.warning("model_key unset: models are signed with the public development key")
    return ModelSigner(DEVELOPMENT_KEY)


def build_worker(
    settings: Settings,
    topology: Topology,
    *,
    pes: Sequence[str] | None = None,
    embedded: bool = False,
    publisher: Publisher | None = None,
    new_follower: FollowerFactory = Follower,
) -> Worker:
    """Create the Faust app and register the PEs (``pes``, default: the topology's).

    ``publisher`` and ``new_follower`` replace the Kafka writer and log readers (the
    test harness, pipelines.testing, keeps records in memory).
    """
    for pe in pes or ():
        pe_spec(pe)  # an unknown name is an error that lists the known ones
    chosen = [spec.name for spec in pe_specs() if spec.name in (pes or topology.pes)]
    if settings.crowd == "none" and "annotator" in chosen:
        log.info("crowd 'none': the annotator does not run; tasks wait in crowd.tasks")
        chosen.remove("annotator")
    security = settings.security()
    rebalance = settings.rebalance_timeout_s
    # Processes running the same PEs share partitions; other PE sets get their own group.
    app_id = f"crowdstream-{topology.name}"
    if set(chosen) != set(topology.pes):
        app_id += "-" + "-".join(chosen)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=settings.broker,
        autodiscover=False,
        web_enabled=False,
        store="memory://",
        datadir=str(settings.data_dir / app_id),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        broker_credentials=security.faust_credentials(),
        broker_rebalance_timeout=rebalance,
        broker_session_timeout=SESSION_TIMEOUT_S,
        # Every record is acknowledged by all in-sync replicas, written once per send.
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=5,
        stream_wait_empty=False,
    )
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    ctx: PipelineContext
    plane = DataPlane(
        ReaderSettings(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=app_id,
            fetch_wait_ms=settings.fetch_wait_ms,
            rebalance_timeout_s=rebalance,
            session_timeout_s=SESSION_TIMEOUT_S,
            security=security,
        ),
        on_error=lambda pe, records, exc: ctx.reject_failed(pe, records, exc),
        publisher=publisher,
    )
    ctx = PipelineContext(
        app=app,
        pipeline=topology.name,
        catalog=ClassifierCatalog(topology.classifiers),
        params=topology.params,
        topics=topology.topics(settings.partitions),
        bootstrap_servers=settings.bootstrap_servers,
        metrics=metrics,
        settings=settings,
        pes=list(chosen),
        plane=plane,
        signer=model_signer(settings, embedded=embedded),
        new_follower=new_follower,
        security=security,
    )
    follow_catalog(ctx)
    serve_catalog(ctx)
    serve_export(ctx)
    serve_console(ctx)
    for pe in chosen:
        pe_spec(pe).start(ctx)

    async def report_lag() -> None:
        for reader in plane.readers():
            lag = reader.lag()
            if lag is not None:
                metrics.consumer_lag.labels(topology.name, reader.topic).set(lag)
            metrics.stream_stalled.labels(topology.name, reader.topic).set(int(reader.stalled))

    app.timer(LAG_EVERY_S, name="crowdstream.consumer_lag")(report_lag)
    broker = _watch_broker(
        app,
        plane,
        metrics.broker_up.labels(topology.name),
        settings,
        list(topology.topics(settings.partitions).values()),
    )
    # The PEs' agents take batches from the runtime (runtime.agents), not topics;
    # Faust's own consumer runs only for agents reading a topic (it fails with none).
    topic_agents = [agent for agent in app.agents.values() if isinstance(agent.channel, TopicT)]
    if not topic_agents:
        app.boot_strategy.enable_kafka_consumer = False

    def health() -> dict[str, Any]:
        try:
            assigned = {f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()}
        except ConsumerNotStarted:
            assigned = set()
        # Faust reads the crowd topics; the data plane reads the data-flow ones.
        faust_ready = bool(app.started and not app.rebalancing and (assigned or not topic_agents))
        readers = plane.readers()
        for reader in readers:
            assigned |= {f"{tp.topic}:{tp.partition}" for tp in reader.assignment()}
        plane_ready = plane.started and all(reader.assignment() for reader in readers)
        # Input waits but never comes: as good as down, though the broker answers probes.
        stalled = sorted(reader.topic for reader in readers if reader.stalled)
        # A worker whose PEs only follow logs (annotator, learner) has no partitions.
        consumes = bool(topic_agents or readers)
        ready = faust_ready and plane_ready and (assigned or not consumes) and broker.up
        # A PE rebuilding its state from logs (after a restart) cannot serve yet.
        catching_up = ctx.catching_up()
        return {
            "ready": bool(ready and not stalled and not broker.missing_topics and not catching_up),
            "broker": "up" if broker.up else "down",
            "stalled": stalled,
            "catching_up": catching_up,
            "missing_topics": broker.missing_topics,
            "pipeline": topology.name,
            "pes": chosen,
            "assigned": sorted(assigned),
        }

    web = WebServer(
        settings.http_host,
        settings.http_port,
        ctx.endpoints,
        ctx.routes,
        registry,
        health,
        closing=ctx.web_closing,
        limits=HttpLimits.from_settings(settings),
        allowed_hosts=settings.allowed_hosts,
        proxies=settings.proxies,
    )
    return Worker(app=app, context=ctx, web=web, pes=chosen)
