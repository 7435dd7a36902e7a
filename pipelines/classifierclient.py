"""The ``crowdstream classifier`` commands: a pipeline's classifiers, changed through
Kafka as the console's API changes them (pe.common.catalog)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, ConsumerRecord

from channels.codec import DecodeError, decode, encode
from config import Settings
from pe.common.catalog import (
    CHANNEL,
    ClassifierCatalog,
    ClassifierRecord,
    change_refused,
)
from pe.params import ClassifierSpec
from runtime.follower import Follower

__all__ = ["read_catalog", "state_change", "write_change"]

#: How long reading the catalog may take before the topic is judged missing.
READ_TIMEOUT_S = 30.0


async def read_catalog(
    settings: Settings, pipeline: str, seed: Sequence[ClassifierSpec]
) -> ClassifierCatalog:
    """The pipeline's classifiers: ``seed`` (its topology's), changed by every record
    on ``control.classifiers``, as each worker reads them."""
    catalog = ClassifierCatalog(seed)

    def take(records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            try:
                catalog.apply(decode(ClassifierRecord, record.value))
            except DecodeError:
                continue  # the workers dead-letter it

    follower = Follower(
        settings.bootstrap_servers,
        f"{pipeline}.{CHANNEL}",
        take,
        security=settings.security(),
    )
    reading = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.caught_up.wait(), READ_TIMEOUT_S)
    except TimeoutError:
        msg = (
            f"{pipeline}.{CHANNEL} was not read within {READ_TIMEOUT_S:.0f} s: is the "
            "broker up, and has the pipeline been started once (crowdstream up)?"
        )
        raise ConnectionError(msg) from None
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    return catalog


def state_change(catalog: ClassifierCatalog, name: str, action: str) -> ClassifierRecord:
    """The record that does ``action`` (pause, resume, retire) to classifier ``name``."""
    current = catalog.get(name)
    if current is None:
        raise ValueError(f"no classifier {name!r}")
    return current.after(action, "cli")


async def write_change(
    settings: Settings, pipeline: str, catalog: ClassifierCatalog, change: ClassifierRecord
) -> None:
    """Check ``change`` against ``catalog`` (the pipeline's, just read) and write it."""
    problem = change_refused(catalog.get(change.name), change)
    if problem is not None:
        raise ValueError(problem)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        **settings.security().client_options(),
        acks="all",
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{pipeline}.{CHANNEL}", encode(change), key=change.name.encode()
        )
    finally:
        await producer.stop()
