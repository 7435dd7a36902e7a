"""Client side of a pipeline: pushing items in and reading classified items out."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from channels.codec import DecodeError, decode
from channels.dedup import FirstById
from channels.records import ClassifiedItem, TagPrediction
from pe.classifier.recent import Query
from pipelines.pushwatch import PushReport, ReaderLag, Tally, item_id
from runtime.cluster import PLAINTEXT, Security

__all__ = [
    "format_item",
    "item_key",
    "laps",
    "push_and_follow",
    "push_lines",
    "tail_classified",
    "tail_shows",
]

#: Sends in flight before the pusher waits for acknowledgements.
_WINDOW = 5000
#: How often a paced push looks at how far behind the pipeline is.
_PACE_S = 0.05
#: Output this long quiet, the pipeline caught up: what is missing was shed.
_QUIET_S = 2.0


def item_key(line: bytes) -> bytes | None:
    """The record key (the item id) if the line is a JSON object with an id."""
    found = item_id(line)
    return None if found is None else found.encode()


#: Separates an item's id from its lap in :func:`laps`.
LAP = "~"


def laps(items: Sequence[dict[str, Any]]) -> Iterator[bytes]:
    """``items`` as JSON lines, lap after lap without end (a stream that must outlast a
    sample); from the second lap on, each item under an id of its own
    (``<id>~<lap>``)."""
    for lap in itertools.count():
        for item in items:
            yield orjson.dumps(item if lap == 0 else {**item, "id": f"{item['id']}{LAP}{lap}"})


def first_lap(item_id: str) -> str:
    """The id ``item_id`` had in the first lap of :func:`laps`."""
    return item_id.split(LAP, 1)[0]


async def push_lines(
    bootstrap: list[str],
    pipeline: str,
    lines: Iterable[bytes],
    rate: float | None = None,
    *,
    admit: Callable[[], Awaitable[int]] | None = None,
    expect: Callable[[str], None] | None = None,
    security: Security = PLAINTEXT,
) -> int:
    """Send non-blank lines to ``<pipeline>.items.raw`` as they are (the features PE
    validates them); at most ``rate`` per second. ``admit()``, awaited once what was
    sent is acknowledged, says how many more lines may go (it may wait first);
    ``expect(id)`` hears the id of each line that has one. Returns the number sent."""
    # Acknowledged by every in-sync replica and written once, even across a retry.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **security.client_options(),
        linger_ms=5,
        acks="all",
        enable_idempotence=True,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    topic = f"{pipeline}.items.raw"
    sent = 0
    admitted = 0
    pending: list[asyncio.Future[object]] = []
    started = time.monotonic()
    try:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            if admit is not None and admitted <= 0:
                await asyncio.gather(*pending)  # on the broker, where readers see it
                pending.clear()
                admitted = await admit()
            admitted -= 1
            key = item_key(line)
            if expect is not None and key is not None:
                expect(key.decode())
            pending.append(await producer.send(topic, line, key=key))
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


async def push_and_follow(
    bootstrap: list[str],
    pipeline: str,
    lines: Iterable[bytes],
    rate: float | None = None,
    *,
    max_lag: int | None = 5000,
    wait_s: float = 120.0,
    security: Security = PLAINTEXT,
) -> PushReport:
    """Push ``lines`` as :func:`push_lines` does, holding back while the pipeline's
    readers of ``items.raw`` are more than ``max_lag`` records behind (None: never),
    so a file goes in as fast as the pipeline takes it and never looks like overload
    to load shedding; then wait up to ``wait_s`` for the pipeline to catch up and say
    what became of the items (classified, rejected, shed)."""
    raw = f"{pipeline}.items.raw"
    lag = ReaderLag(bootstrap, [raw, f"{pipeline}.items.features"], security)
    tally = Tally(bootstrap, pipeline, security) if wait_s > 0 else None
    await lag.start()
    tracked = 0

    async def admit() -> int:
        if max_lag is None:
            return _WINDOW
        # Polled: the broker tells nobody when a group's committed offsets move.
        while (behind := await lag.behind(raw)) is not None and behind >= max_lag:  # noqa: ASYNC110
            await asyncio.sleep(_PACE_S)
        return max_lag - (behind or 0)

    def expect(item_id: str) -> None:
        nonlocal tracked
        tracked += 1
        if tally is not None:
            tally.expect(item_id)

    try:
        if tally is not None:
            await tally.start()
        sent = await push_lines(
            bootstrap, pipeline, lines, rate, admit=admit, expect=expect, security=security
        )
        report = PushReport(sent=sent, untracked=sent - tracked)
        if tally is None:
            return report
        caught_up = await _settle(lag, tally, wait_s)
        report.classified, report.rejected = tally.classified, tally.rejected
        if caught_up or not tally.waiting:
            report.shed = tally.waiting
        else:
            report.waiting = tally.waiting
        return report
    finally:
        if tally is not None:
            await tally.stop()
        await lag.stop()


async def _settle(lag: ReaderLag, tally: Tally, wait_s: float) -> bool:
    """Until every pushed item is out, or the pipeline caught up and its output stayed
    quiet for ``_QUIET_S`` (what is still missing then was shed), or ``wait_s``.
    Whether the pipeline caught up."""
    deadline = time.monotonic() + wait_s
    last, quiet_since = tally.waiting, time.monotonic()
    while tally.waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if tally.waiting != last:
            last, quiet_since = tally.waiting, time.monotonic()
        elif time.monotonic() - quiet_since > _QUIET_S and await lag.caught_up():
            return True
    return await lag.caught_up()


def format_item(item: ClassifiedItem) -> str:
    """One line for people: ``id  name=tag(confidence,vN[,source])...  text``; a
    revision's id is marked ``(revised)``."""
    tags = " ".join(
        f"{name}={p.tag}({p.confidence or 0.0:.2f},v{p.model_version}{_origin(p)})"
        if p.tag is not None
        else f"{name}=-"
        for name, p in item.labels.items()
    )
    text = item.text.replace("\n", " ")
    revised = " (revised)" if item.revision else ""
    return f"{item.id}{revised}  {tags}  {text[:100]}"


def _origin(prediction: TagPrediction) -> str:
    """Where a tag came from, when not from the model."""
    if prediction.source == "crowd":
        return ",crowd"
    if prediction.source == "propagated":
        return f",from {prediction.from_item}"
    return ""


def tail_shows(record: dict[str, Any], query: Query) -> bool:
    """Does ``crowdstream tail`` show this record? With a classifier: a record that has
    a tag of it matching the query's tag and source."""
    if query.classifier is not None:
        prediction = record.get("labels", {}).get(query.classifier) or {}
        if prediction.get("tag") is None:
            return False
    return query.matches(record)


async def tail_classified(
    bootstrap: list[str],
    pipeline: str,
    *,
    classifier: str | None = None,
    tag: str | None = None,
    source: str | None = None,
    count: int | None = None,
    as_json: bool = False,
    from_beginning: bool = False,
    idle_timeout_s: float | None = None,
    security: Security = PLAINTEXT,
) -> int:
    """Print classified items and their revisions as they arrive (each once); returns
    how many were printed."""
    consumer = AIOKafkaConsumer(
        f"{pipeline}.items.classified",
        bootstrap_servers=bootstrap,
        **security.client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    shown = 0
    query = Query(classifier, tag, source=source)
    once = FirstById()  # at least once upstream: show each (id, revision) once
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
                if not once.first(item.id, item.revision):
                    continue
                if not tail_shows(orjson.loads(record.value), query):
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
