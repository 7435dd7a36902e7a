"""A stopping worker's data plane: a producer that cannot deliver its last records
does not hold the worker's exit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from aiokafka import ConsumerRecord

from runtime import dataflow
from runtime.batches import Publisher
from runtime.dataflow import DataPlane, Pending, ReaderSettings


class _StuckPublisher(Publisher):
    """A producer whose flush never ends (a produce retried without end)."""

    async def stop(self) -> None:
        await asyncio.Event().wait()


async def test_a_producer_that_never_flushes_is_left_after_the_flush_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dataflow, "FLUSH_TIMEOUT_S", 0.2)
    settings = ReaderSettings(["127.0.0.1:9"], "g", 100, 10.0, 10.0)

    async def on_error(
        topic: str, records: Sequence[ConsumerRecord], exc: BaseException
    ) -> Pending:
        return []

    plane = DataPlane(settings, on_error, _StuckPublisher(["127.0.0.1:9"]))
    started = time.monotonic()
    await asyncio.wait_for(plane.on_stop(), 5.0)
    assert time.monotonic() - started < 2.0
    assert "did not deliver its last records" in caplog.text
