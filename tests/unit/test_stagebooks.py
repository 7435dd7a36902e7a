"""A stage's shedding books: what it says in the log, and a reader's resumption."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import orjson
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from channels.shedding import SheddingPolicy
from pe.common.metrics import Metrics
from runtime import stagebooks
from runtime.stagebooks import StageShedder

# Judged on windows of 50 ms, so the test runs in moments.
POLICY = SheddingPolicy(
    enabled=True, max_age_s=0.01, min_backlog=1, adapt_every_s=0.01, trend_s=0.05, max_drain_s=0.01
)


@dataclass
class Reader:
    """What a stage's shedder asks of its reader."""

    resumed: int = 0
    waiting: int = 10_000

    def lag(self) -> int:
        return self.waiting


def records(n: int, written: float, start: int = 0) -> list[ConsumerRecord]:
    value = orjson.dumps({"id": "x", "text": "flood"})
    return [
        ConsumerRecord(
            "t", 0, start + i, int(written * 1000), 0, None, value, None, 0, len(value), []
        )
        for i in range(n)
    ]


def overload(shedder: StageShedder) -> int:
    """Input written at one instant, read later and later: shed. Records read."""
    written = time.time()
    read = 0
    for step in range(40):
        shedder(records(100, written, step * 100))
        read += 100
        time.sleep(0.01)
    return read


def test_overload_is_logged_with_what_was_shed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger=stagebooks.__name__)
    monkeypatch.setattr(stagebooks, "REPORT_EVERY_S", 0.2)
    registry = CollectorRegistry()
    reader = Reader()
    shedder = StageShedder(
        POLICY, Metrics.create(registry), "p", "features", dup_key=str.lower, reader=lambda: reader
    )
    overload(shedder)
    text = caplog.text
    assert "features: overloaded: input arrives faster than this stage reads" in text
    assert "10,000 records waiting" in text
    assert "features: shed " in text and "items read in the last" in text
    shed = registry.get_sample_value(
        "crowdstream_items_shed_total",
        {"pipeline": "p", "pe": "features", "reason": "near_duplicate"},
    )
    assert shed and "(near_duplicate " in text  # the same text every time: copies
    # Caught up: said once.
    caplog.clear()
    for _ in range(10):
        shedder(records(10, time.time()))
        time.sleep(0.011)
    assert "features: no longer overloaded" in caplog.text


def test_a_reader_that_resumes_restarts_the_judgement() -> None:
    registry = CollectorRegistry()
    reader = Reader()
    shedder = StageShedder(
        POLICY, Metrics.create(registry), "p", "features", dup_key=str.lower, reader=lambda: reader
    )

    def kept_fraction() -> float | None:
        labels = {"pipeline": "p", "pe": "features"}
        return registry.get_sample_value("crowdstream_shedding_keep_fraction", labels)

    overload(shedder)
    assert (kept_fraction() or 1.0) < 1.0
    reader.resumed += 1  # partitions assigned, a rewind or a pause: our own backlog
    kept = shedder(records(100, time.time() - 60))
    assert len(kept) == 100 and kept_fraction() == 1.0
