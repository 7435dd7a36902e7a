"""The embedded broker: a single-node Apache Kafka (KRaft) kept under ``data_dir``.

It is the real Kafka release pinned in ``pipelines/kafka/pom.xml`` (fetched on first
use), so what runs in development, demos and tests is what runs in production. Its
log lives in ``<data_dir>/kafka`` and survives restarts: labels, models, the crowd
pool, jobs and results are still there when the stack comes back.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from pipelines.kafka.dist import BrokerError, KafkaDist, default_cache_dir, find_java
from pipelines.kafka.node import KafkaNode, NodePorts, recorded_cluster_id

__all__ = ["BrokerError", "EmbeddedBroker", "free_port"]

log = logging.getLogger(__name__)

#: A cold JVM on a loaded 2-core machine starts Kafka in 5-15 s.
START_TIMEOUT_S = 90.0
#: Single-node settings: the internal topics cannot have more replicas than nodes.
_SINGLE_NODE = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """Start and stop a single-node Kafka listening on ``127.0.0.1:port``, with its
    data in ``data_dir`` (formatted on first start, reused after)."""

    def __init__(
        self,
        port: int,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        heap_mb: int = 512,
        cache_dir: Path | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir)
        self._dist = KafkaDist(cache_dir or default_cache_dir())
        self._node: KafkaNode | None = None
        self._heap_mb = heap_mb
        self._configs = dict(configs or {})
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._node.pid if self._node is not None else None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "node-1.log"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Fetch Kafka if needed, format the log folder on first use, start the node
        and wait until it serves clients."""
        java = find_java()
        self._dist.fetch()
        node = KafkaNode(
            node_id=1,
            host=self.host,
            ports=(ports := NodePorts(self.port, free_port())),
            log_dir=self.data_dir / "node-1",
            dist=self._dist,
            voters={1: ports},
            heap_mb=self._heap_mb,
            configs={**_SINGLE_NODE, **self._configs},
        )
        node.check_ports()  # before formatting anything
        node.format(recorded_cluster_id(self.data_dir, [node]), java)
        started = time.monotonic()
        node.start(java)
        self._node = node
        node.wait_started(timeout_s)
        log.info(
            "embedded Kafka %s on %s (data in %s) ready in %.1f s",
            self._dist.version,
            self.url,
            self.data_dir,
            time.monotonic() - started,
        )

    def supervise(self, every_s: float = 1.0) -> None:
        """Restart the broker if it dies while the worker runs (its records are on
        disk, the worker's clients wait and retry); say so loudly each time."""

        # A watch loop rather than runtime.retry: it polls a child process from a
        # thread and must wake at once when the worker stops (the stop event), which
        # a retry library's sleep would not.
        def watch() -> None:
            delay = 1.0
            while not self._stopping.wait(every_s):
                node = self._node
                code = node.poll() if node is not None else None
                if node is None or code is None:
                    continue
                log.error(
                    "%s. Restarting it in %.0f s; records it acknowledged are kept in %s",
                    node.explain(f"(the embedded broker) exited with code {code}"),
                    delay,
                    self.data_dir,
                )
                if self._stopping.wait(delay):
                    return
                try:
                    self.start()
                    log.warning("embedded broker restarted on %s", self.url)
                    delay = 1.0
                except BrokerError as exc:
                    log.error("embedded broker did not restart: %s", exc)
                    delay = min(delay * 2, 30.0)

        self._stopping.clear()
        self._supervisor = threading.Thread(target=watch, name="broker-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self) -> None:
        """A controlled shutdown of the node (it flushes its log)."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
            self._supervisor = None
        node, self._node = self._node, None
        if node is not None:
            node.stop()

    def wait(self) -> int:
        """Block until the broker exits; its exit code."""
        return self._node.wait() if self._node is not None else 0

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
