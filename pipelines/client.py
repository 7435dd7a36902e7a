"""Client side of a pipeline: pushing items in and reading classified items out."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from channels.cluster import client_options
from channels.codec import DecodeError, decode
from channels.dedup import FirstById
from channels.records import ClassifiedItem

__all__ = ["format_item", "item_key", "push_lines", "tail_classified"]

#: Sends in flight before the pusher waits for acknowledgements.
_WINDOW = 5000


def item_key(line: bytes) -> bytes | None:
    """The record key (the item id) if the line is a JSON object with an id."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("id"), str | int):
        return str(obj["id"]).encode()
    return None


async def push_lines(
    bootstrap: list[str],
    pipeline: str,
    lines: Iterable[bytes],
    rate: float | None = None,
) -> int:
    """Send non-blank lines to ``<pipeline>.items.raw`` as they are (the features PE
    validates them); at most ``rate`` per second. Returns the number sent."""
    # Acknowledged by every in-sync replica and written once, even across a retry.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_options(),
        linger_ms=5,
        acks="all",
        enable_idempotence=True,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    topic = f"{pipeline}.items.raw"
    sent = 0
    pending: list[asyncio.Future[object]] = []
    started = time.monotonic()
    try:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            pending.append(await producer.send(topic, line, key=item_key(line)))
            sent += 1
            if len(pending) >= _WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
            if rate:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def format_item(item: ClassifiedItem) -> str:
    tags = " ".join(
        f"{name}={p.tag}({p.confidence:.2f},v{p.model_version})"
        if p.tag is not None
        else f"{name}=-"
        for name, p in item.labels.items()
    )
    text = item.text.replace("\n", " ")
    return f"{item.id}  {tags}  {text[:100]}"


async def tail_classified(
    bootstrap: list[str],
    pipeline: str,
    *,
    classifier: str | None = None,
    tag: str | None = None,
    count: int | None = None,
    as_json: bool = False,
    from_beginning: bool = False,
    idle_timeout_s: float | None = None,
) -> int:
    """Print classified items as they arrive; returns how many were printed."""
    consumer = AIOKafkaConsumer(
        f"{pipeline}.items.classified",
        bootstrap_servers=bootstrap,
        **client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    shown = 0
    once = FirstById()  # at least once upstream: show each id once
    idle_since = time.monotonic()
    try:
        while count is None or shown < count:
            batches = await consumer.getmany(timeout_ms=500)
            records = [r for batch in batches.values() for r in batch]
            if not records:
                if idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                    break
                continue
            idle_since = time.monotonic()
            for record in records:
                try:
                    item = decode(ClassifiedItem, record.value)
                except DecodeError:
                    continue
                if not once.first(item.id):
                    continue
                if classifier is not None:
                    prediction = item.labels.get(classifier)
                    if prediction is None or prediction.tag is None:
                        continue
                    if tag is not None and prediction.tag != tag:
                        continue
                line = record.value.decode() if as_json else format_item(item)
                sys.stdout.write(line + "\n")
                shown += 1
                if count is not None and shown >= count:
                    break
            sys.stdout.flush()
    finally:
        await consumer.stop()
    return shown
