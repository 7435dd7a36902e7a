"""Declaring a pipeline's topics on the broker before any worker starts.

Every topic is created explicitly with its partition count: Faust raises
PartitionsMismatch when a topic was auto-created with another count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from tenacity import RetryCallState, stop_after_delay

from channels.topics import TopicPolicy, TopicSpec
from runtime.cluster import PLAINTEXT, Security
from runtime.retry import broker_retrying

__all__ = ["declare_topics", "partitions_of", "wait_for_broker"]

log = logging.getLogger(__name__)

#: Kafka's TOPIC_ALREADY_EXISTS error code: declaring is idempotent.
_TOPIC_EXISTS = 36
#: Longest pause between attempts to reach a broker that does not answer.
MAX_WAIT_DELAY_S = 5.0


async def partitions_of(
    bootstrap_servers: list[str], topic: str, security: Security = PLAINTEXT
) -> list[int]:
    """The partition ids of ``topic`` (empty if it does not exist).

    A consumer's own metadata covers only the topics it reads already, so a reader
    that assigns itself every partition must ask first.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security.client_options())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0:
        return []
    return sorted(p["partition"] for p in described["partitions"])


async def wait_for_broker(
    bootstrap_servers: list[str], timeout_s: float = 30.0, security: Security = PLAINTEXT
) -> None:
    """Wait until the broker answers metadata requests, retrying with backoff; raise
    ConnectionError after ``timeout_s``."""
    where = ",".join(bootstrap_servers)

    def level(state: RetryCallState) -> int:
        # The first failures are common while a cluster starts; say so once, loudly.
        waited = state.next_action.sleep if state.next_action is not None else 0.0
        first = state.attempt_number == 1
        return logging.WARNING if first or waited >= MAX_WAIT_DELAY_S else logging.INFO

    async def probe() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            **security.client_options(),
            request_timeout_ms=5000,
        )
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    retrying = broker_retrying(
        f"broker {where} not reachable",
        log,
        first_s=0.1,
        max_s=MAX_WAIT_DELAY_S,
        stop=stop_after_delay(timeout_s),
        errors=(KafkaError, OSError),
        level=level,
    )
    try:
        await retrying(probe)
    except (KafkaError, OSError) as exc:
        msg = f"broker {where} not reachable after {timeout_s:.0f} s: {exc}"
        raise ConnectionError(msg) from exc
    failures = retrying.statistics.get("attempt_number", 1) - 1
    if failures:
        log.warning("broker %s answers (after %d failed attempts)", where, failures)


async def declare_topics(
    bootstrap_servers: list[str],
    specs: Iterable[TopicSpec],
    policy: TopicPolicy,
    wait_s: float = 30.0,
    security: Security = PLAINTEXT,
) -> list[str]:
    """Create the topics that do not exist yet (waiting up to ``wait_s`` for the broker);
    return the names created."""
    await wait_for_broker(bootstrap_servers, wait_s, security)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [spec for spec in specs if spec.name not in existing]
        if not wanted:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    spec.partitions,
                    policy.replication_factor,
                    topic_configs=spec.configs(policy),
                )
                for spec in wanted
            ]
        )
        created = []
        for name, code, message in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code != _TOPIC_EXISTS:
                msg = f"cannot create topic {name}: error {code} {message}"
                raise RuntimeError(msg)
        await _wait_for_leaders(admin, created, wait_s)
        return created
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str], wait_s: float) -> None:
    """Return once every partition of ``topics`` has a leader: a new topic's leaders
    are elected just after it is created, and clients that come first only log
    NotLeaderForPartition errors and retry."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while topics and loop.time() < deadline:
        described = await admin.describe_topics(topics)
        if all(
            d["error_code"] == 0
            and d["partitions"]
            and all(p["leader"] >= 0 for p in d["partitions"])
            for d in described
        ):
            return
        await asyncio.sleep(0.1)
