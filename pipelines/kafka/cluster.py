"""A three-node Apache Kafka cluster on one machine, for fault tests and benchmarks.

Each node is a broker and a KRaft controller in one JVM (:class:`KafkaNode`); the
three controllers form a static quorum. Nodes can be killed and restarted one by one
on their own ports and log folders, so a test can take a broker or the active
controller away and bring it back while clients keep writing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from pipelines.broker import START_TIMEOUT_S, free_port
from pipelines.kafka.dist import BrokerError, KafkaDist, default_cache_dir, find_java
from pipelines.kafka.node import KafkaNode, NodePorts, recorded_cluster_id

__all__ = ["CLUSTER_DEFAULTS", "NODE_IDS", "LocalCluster", "PartitionState"]

log = logging.getLogger(__name__)

NODE_IDS = (1, 2, 3)
#: Three replicas of everything, and a write acknowledged by two of them: one node
#: may die without losing or refusing a write.
CLUSTER_DEFAULTS: Mapping[str, str] = {
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
}
#: How long the last nodes may take to stop once a majority has stopped.
_LAST_GRACE_S = 5.0
#: The KRaft quorum's state, which each controller keeps in its metadata log folder.
_QUORUM_STATE = Path("__cluster_metadata-0") / "quorum-state"


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster's metadata describes it (-1: no leader)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def in_sync(self) -> bool:
        return self.leader >= 0 and set(self.replicas) <= set(self.isr)


class LocalCluster:
    """Three combined broker+controller nodes (ids 1-3) on ``host``, with their data
    under ``base_dir`` (formatted on first start, reused after).

    Each node has its own broker and controller ports, chosen once per instance, so a
    node restarted by :meth:`restart` comes back where clients knew it.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        host: str = "127.0.0.1",
        heap_mb: int = 512,
        cache_dir: Path | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> None:
        """``configs`` adds to or overrides :data:`CLUSTER_DEFAULTS` on every node."""
        self.base_dir = Path(base_dir)
        self.host = host
        self._dist = KafkaDist(cache_dir or default_cache_dir())
        self._java: str | None = None
        ports = _distinct_ports(2 * len(NODE_IDS))
        voters = {
            node_id: NodePorts(broker=ports[2 * i], controller=ports[2 * i + 1])
            for i, node_id in enumerate(NODE_IDS)
        }
        self.nodes: dict[int, KafkaNode] = {
            node_id: KafkaNode(
                node_id=node_id,
                host=host,
                ports=voters[node_id],
                log_dir=self.base_dir / f"node-{node_id}",
                dist=self._dist,
                voters=voters,
                heap_mb=heap_mb,
                configs={**CLUSTER_DEFAULTS, **(configs or {})},
            )
            for node_id in NODE_IDS
        }

    @property
    def bootstrap(self) -> str:
        """``host:port`` of every node's broker, comma separated."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    @property
    def url(self) -> str:
        """The brokers as crowdstream's ``broker`` setting (CROWDSTREAM_BROKER) takes them."""
        return ",".join(f"kafka://{node.bootstrap}" for node in self.nodes.values())

    def running(self) -> list[int]:
        """The ids of the nodes whose process runs."""
        return [node_id for node_id, node in self.nodes.items() if node.running]

    def pid(self, node_id: int) -> int | None:
        return self.nodes[node_id].pid

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Fetch Kafka if needed, format the nodes on first use, start all three and
        wait until each serves clients."""
        java = self._java = find_java()
        self._dist.fetch()
        cluster_id = recorded_cluster_id(self.base_dir, self.nodes.values())
        nodes = list(self.nodes.values())
        # Each format is a JVM start of its own: run them side by side.
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda node: node.format(cluster_id, java), nodes))
        started = time.monotonic()
        # A node's broker starts only once the controller quorum has a leader, which
        # needs a majority of the nodes: they must start together, not one by one.
        for node in nodes:
            node.start(java)
        # Waited for side by side too: a node waited for late may have logged so much
        # since it started that its start line has left the log tail it checks.
        with ThreadPoolExecutor(len(nodes)) as pool:
            waits = [pool.submit(node.wait_started, timeout_s) for node in nodes]
            failures = [exc for wait in waits if (exc := wait.exception()) is not None]
        if failures:
            self.stop()
            raise failures[0]
        log.info(
            "local Kafka cluster %s on %s (data in %s) ready in %.1f s",
            cluster_id,
            self.bootstrap,
            self.base_dir,
            time.monotonic() - started,
        )

    def stop(self, timeout_s: float = 60.0) -> None:
        """A controlled shutdown of every node still running (SIGTERM, all at once).

        A node's broker waits for the quorum to approve its controlled shutdown, which
        cannot come once a majority of the nodes has stopped: a node still running a
        few seconds after that (or after ``timeout_s``) is killed. Its log is
        recovered at its next start; its records are on the other nodes too.
        """
        running = [node for node in self.nodes.values() if node.running]
        for node in running:
            node.signal(signal.SIGTERM)
        majority = len(self.nodes) // 2 + 1
        deadline = time.monotonic() + timeout_s
        while any(node.running for node in running) and time.monotonic() < deadline:
            if sum(not node.running for node in self.nodes.values()) >= majority:
                deadline = min(deadline, time.monotonic() + _LAST_GRACE_S)
            time.sleep(0.1)
        for node in running:
            if node.running:
                log.info(
                    "Kafka node %d: no quorum left to approve its shutdown, killed", node.node_id
                )
                node.signal(signal.SIGKILL)
            node.stop()  # reaps the process

    def kill(self, node_id: int) -> None:
        """SIGKILL node ``node_id`` and wait for its process to end."""
        node = self.nodes[node_id]
        node.signal(signal.SIGKILL)
        node.wait()

    def restart(self, node_id: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start node ``node_id`` again (on its ports and log folder) and wait until it
        serves clients; a node still running is stopped first."""
        if self._java is None:
            raise BrokerError("the cluster was never started: call start() first")
        node = self.nodes[node_id]
        node.stop()
        node.start(self._java)
        node.wait_started(timeout_s)

    def active_controller(self) -> int | None:
        """The id of the node leading the KRaft quorum, as the running nodes last
        recorded it (None while an election is under way or no node has a record)."""
        latest: tuple[int, int] | None = None
        for node_id in self.running():
            path = self.nodes[node_id].log_dir / _QUORUM_STATE
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # not written yet, or being replaced right now
            # Raft: one leader per epoch at most, so the newest epoch's record is the
            # truth; a candidate's record of it has no leader yet (-1).
            record = (int(state.get("leaderEpoch", -1)), int(state.get("leaderId", -1)))
            if latest is None or record > latest:
                latest = record
        return latest[1] if latest is not None and latest[1] >= 0 else None

    async def busiest_broker(self, topics: Iterable[str]) -> int:
        """The node that leads the most partitions of ``topics`` (the lowest id on a
        tie)."""
        counts = Counter(p.leader for p in await self.partitions(topics) if p.leader >= 0)
        if not counts:
            raise BrokerError("no partition of these topics has a leader")
        return max(counts, key=lambda node_id: (counts[node_id], -node_id))

    async def partitions(self, topics: Iterable[str]) -> list[PartitionState]:
        """Leader, replicas and in-sync replicas of every partition of ``topics``, as
        the brokers' metadata has them now."""
        running = [self.nodes[node_id].bootstrap for node_id in self.running()]
        admin = AIOKafkaAdminClient(bootstrap_servers=running or self.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(list(topics))
        finally:
            await admin.close()
        return [
            PartitionState(
                topic=topic["topic"],
                partition=part["partition"],
                leader=part["leader"],
                replicas=tuple(part["replicas"]),
                isr=tuple(part["isr"]),
            )
            for topic in described
            for part in topic["partitions"]
        ]

    async def wait_in_sync(self, topics: Iterable[str], timeout_s: float = 120.0) -> float:
        """Wait until every replica of every partition of ``topics`` (those that
        exist) is in sync: a restarted node has caught up. The seconds waited; raise
        :class:`BrokerError` after ``timeout_s``."""
        names = list(topics)
        started = time.monotonic()
        while True:
            try:
                lagging = [p for p in await self.partitions(names) if not p.in_sync]
                problem = (
                    f"{len(lagging)} under-replicated, e.g. {lagging[0].topic}-"
                    f"{lagging[0].partition} (replicas {list(lagging[0].replicas)}, in sync "
                    f"{list(lagging[0].isr)})"
                    if lagging
                    else ""
                )
            except (KafkaError, OSError) as exc:
                # A node that has just started may not answer metadata requests yet.
                problem = f"metadata requests fail: {exc!r}"
            waited = time.monotonic() - started
            if not problem:
                return waited
            if waited > timeout_s:
                raise BrokerError(f"partitions not in sync after {timeout_s:.0f} s: {problem}")
            await asyncio.sleep(0.5)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _distinct_ports(count: int) -> list[int]:
    """``count`` free ports, no two alike (the kernel may hand one out twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
