"""One Apache Kafka node (broker and KRaft controller in one JVM) run as a child process.

The embedded broker is one such node; a local cluster is three. A node's log folder is
formatted on first start and reused after, so its topics survive restarts.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pe.common.lifecycle import die_with_parent
from pipelines.kafka.dist import LOG4J_CONFIG, BrokerError, KafkaDist

__all__ = [
    "BROKER_DEFAULTS",
    "KafkaNode",
    "NodePorts",
    "new_cluster_id",
    "port_open",
    "recorded_cluster_id",
]

log = logging.getLogger(__name__)

#: Broker settings every crowdstream cluster uses (embedded, local cluster and
#: docker-compose.yml, which a test checks). Topics are declared by crowdstream, never
#: auto-created: Faust fails on a topic auto-created with another partition count.
BROKER_DEFAULTS: Mapping[str, str] = {
    "auto.create.topics.enable": "false",
    # A group's first member need not wait 3 s for others: workers start one by one.
    "group.initial.rebalance.delay.ms": "0",
    # Retention runs every minute, so a bound set on a topic holds closely.
    "log.retention.check.interval.ms": "60000",
}
#: The line a node logs once it serves clients.
_STARTED = "Kafka Server started"
#: JVM options: short GC pauses (they add to stream latency), and the whole fixed heap
#: resident from the start, so the broker's memory is flat rather than a slow climb.
_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+AlwaysPreTouch",
    "-Djava.awt.headless=true",
)
#: What a node's log says when it cannot start, and what the user should do.
_FAILURES: tuple[tuple[str, str], ...] = (
    (
        r"Address already in use",
        "a port of the broker is in use: stop what listens there or choose another "
        "port (--broker-port)",
    ),
    (
        r"Invalid cluster\.id|[Mm]ismatched cluster",
        "its log folder {log_dir} belongs to another Kafka cluster: point data_dir "
        "elsewhere, or delete that folder to start empty (its records are lost)",
    ),
    (
        r"[Ss]tored node id \d+ doesn't match|node\.id.*doesn't match",
        "its log folder {log_dir} belongs to another Kafka node: point data_dir "
        "elsewhere, or delete that folder to start empty (its records are lost)",
    ),
    (
        r"UnsupportedClassVersionError",
        "the Java found is too old for Apache Kafka: install Java 17 or later",
    ),
    (
        r"OutOfMemoryError",
        "the broker ran out of heap: give it more (embedded_broker_heap_mb)",
    ),
)


def new_cluster_id() -> str:
    """A fresh Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Never one that starts with "-", which Kafka's tools would read as an option (its
    own generator skips those too).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def recorded_cluster_id(folder: Path, nodes: Iterable[KafkaNode]) -> str:
    """The cluster id kept in ``folder/cluster.id`` beside the nodes' log folders, so a
    log folder that another cluster formatted is refused, not silently served.

    Without the record, folders formatted before it existed keep their one id; else a
    new id is made. Either is recorded.
    """
    record = folder / "cluster.id"
    if record.is_file():
        return record.read_text().strip()
    found = {cluster_id for node in nodes if (cluster_id := node.cluster_id()) is not None}
    cluster_id = found.pop() if len(found) == 1 else new_cluster_id()
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(cluster_id + "\n")
    return cluster_id


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def read_properties(path: Path) -> dict[str, str]:
    """A Java properties file of plain ``key=value`` lines (what Kafka writes)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            found[key.strip()] = value.strip()
    return found


@dataclass(frozen=True)
class NodePorts:
    broker: int
    controller: int


@dataclass
class KafkaNode:
    """One combined broker+controller node listening on ``host``.

    ``voters`` maps every controller's node id to its ports (just this node for a
    single-node cluster); ``configs`` adds broker settings.
    """

    node_id: int
    host: str
    ports: NodePorts
    log_dir: Path
    dist: KafkaDist
    voters: Mapping[int, NodePorts]
    heap_mb: int = 512
    configs: Mapping[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    #: Where this start's part of the log file begins.
    _log_from: int = field(default=0, init=False, repr=False)
    #: Whether this start's part of the log has the start line yet.
    _logged_start: bool = field(default=False, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.ports.broker}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_file(self) -> Path:
        """The node's own log (rolled at 20 MB, five kept)."""
        return self.log_dir.parent / f"{self.log_dir.name}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def properties(self) -> dict[str, str]:
        voters = ",".join(f"{i}@{self.host}:{p.controller}" for i, p in sorted(self.voters.items()))
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.ports.broker},"
                f"CONTROLLER://{self.host}:{self.ports.controller}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.ports.broker}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            **BROKER_DEFAULTS,
            **self.configs,
        }

    def cluster_id(self) -> str | None:
        """The cluster id the log folder was formatted with (None: not formatted)."""
        meta = self.log_dir / "meta.properties"
        return read_properties(meta).get("cluster.id") if meta.is_file() else None

    def format(self, cluster_id: str, java: str) -> None:
        """Format the log folder for ``cluster_id`` unless it is formatted; refuse a
        folder formatted for another cluster or node."""
        found = self.cluster_id()
        if found is not None:
            stored = read_properties(self.log_dir / "meta.properties")
            if found != cluster_id or stored.get("node.id") != str(self.node_id):
                raise BrokerError(
                    f"{self.log_dir} holds Kafka data of cluster {found} (node "
                    f"{stored.get('node.id')}), not of this broker's cluster {cluster_id} "
                    f"(node {self.node_id}): point data_dir elsewhere, or delete that "
                    "folder to start empty (its records are lost)"
                )
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        result = subprocess.run(  # noqa: S603 (java and Kafka's own storage tool)
            [
                *self._java(java),
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"formatting {self.log_dir} for Kafka failed: "
                f"{(result.stdout + result.stderr).strip()[-800:]}"
            )

    def check_ports(self) -> None:
        """Refuse to start on a port something else listens on."""
        for port in (self.ports.broker, self.ports.controller):
            if port_open(self.host, port):
                raise BrokerError(
                    f"port {port} on {self.host} is in use: stop what listens there or "
                    "choose another port (--broker-port)"
                )

    def start(self, java: str) -> None:
        """Start the node (its folder formatted); return at once, see :meth:`wait_started`."""
        self.check_ports()
        config = self._write_config()
        self._log_from = self._log_size()
        self._logged_start = False
        out = (self.log_dir.parent / f"{self.log_dir.name}.out").open("ab")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 (java and Kafka's main class)
                [*self._java(java, heap=True), "kafka.Kafka", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                # Its own session: Ctrl-C at a terminal reaches the worker, which stops
                # the broker after its own graceful stop, not both at once.
                start_new_session=True,
                preexec_fn=die_with_parent,  # only prctl: safe between fork and exec
            )
        finally:
            out.close()

    def wait_started(self, timeout_s: float) -> None:
        """Wait until the node serves clients; on failure, stop it and raise a
        :class:`BrokerError` that says why, from its log."""
        deadline = time.monotonic() + timeout_s
        while not self._started():
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                self._proc = None
                raise BrokerError(self.explain(f"exited with code {code} while starting"))
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(self.explain(f"did not start within {timeout_s:.0f} s"))
            time.sleep(0.1)

    def explain(self, what: str) -> str:
        """``what`` happened to the node: a message with the cause found in its log."""
        tail = self._log_tail()
        for pattern, advice in _FAILURES:
            if re.search(pattern, tail):
                return f"Kafka node {self.node_id} {what}: {advice.format(log_dir=self.log_dir)}"
        last = "\n".join(tail.strip().splitlines()[-8:])
        return f"Kafka node {self.node_id} {what}; its log ({self.log_file}) ends:\n{last}"

    def signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def poll(self) -> int | None:
        """The exit code once the process has ended (None while it runs)."""
        return None if self._proc is None else self._proc.poll()

    def stop(self, timeout_s: float = 30.0) -> None:
        """A controlled shutdown (SIGTERM), then SIGKILL after ``timeout_s``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("Kafka node %d did not stop in %.0f s: killing it", self.node_id, timeout_s)
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def wait(self) -> int:
        """Block until the process exits; its exit code."""
        return 0 if self._proc is None else self._proc.wait()

    def _java(self, java: str, *, heap: bool = False) -> list[str]:
        memory = [f"-Xms{self.heap_mb}m", f"-Xmx{self.heap_mb}m", *_JVM_OPTS] if heap else []
        return [
            java,
            *memory,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dcrowdstream.kafka.log={self.log_file}",
            "-cp",
            self.dist.classpath(),
        ]

    def _write_config(self) -> Path:
        path = self.log_dir.parent / f"{self.log_dir.name}.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        return path

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_tail(self) -> str:
        """The node's log since this start, and what the JVM printed."""
        parts = []
        with contextlib.suppress(FileNotFoundError), self.log_file.open("rb") as fh:
            # The log may have rolled over since this start began.
            fh.seek(self._log_from if self._log_from <= self._log_size() else 0)
            parts.append(fh.read()[-20_000:].decode(errors="replace"))
        with contextlib.suppress(FileNotFoundError):
            out = self.log_dir.parent / f"{self.log_dir.name}.out"
            parts.append(out.read_bytes()[-4_000:].decode(errors="replace"))
        return "\n".join(parts)

    def _started(self) -> bool:
        # All of this start's log, not its tail: a node of a cluster with many
        # partitions logs more than the tail holds within moments of its start line.
        if not self._logged_start:
            with contextlib.suppress(FileNotFoundError), self.log_file.open("rb") as fh:
                fh.seek(self._log_from if self._log_from <= self._log_size() else 0)
                self._logged_start = _STARTED.encode() in fh.read()
        return self._logged_start and port_open(self.host, self.ports.broker)
