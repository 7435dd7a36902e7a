"""Telling when the broker stops answering and when it answers again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pipelines.broker import free_port
from runtime.admin import wait_for_broker
from runtime.brokerwatch import BrokerWatch


def test_an_outage_is_reported_once_when_it_starts_and_once_when_it_ends() -> None:
    watch = BrokerWatch()
    assert watch.probed(0.0, answered=True) is None and watch.up
    assert watch.probed(5.0, answered=False) == "down"
    assert not watch.up
    assert watch.probed(10.0, answered=False) is None  # still down: no second report
    assert watch.outage_s(12.0) == 7.0
    assert watch.probed(15.0, answered=True) == "up"
    assert watch.up and watch.outage_s(20.0) == 0.0
    assert watch.probed(20.0, answered=True) is None


def test_a_second_outage_is_timed_from_its_own_start() -> None:
    watch = BrokerWatch()
    watch.probed(0.0, answered=False)
    watch.probed(5.0, answered=True)
    assert watch.probed(30.0, answered=False) == "down"
    assert watch.outage_s(31.0) == 1.0


def test_waiting_for_an_absent_broker_ends_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="runtime.admin")
    port = free_port()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port} not reachable after 1 s"):
        asyncio.run(wait_for_broker([f"127.0.0.1:{port}"], timeout_s=1.0))
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 2
    assert retries[0].levelname == "WARNING"  # the first failure is said loudly
    delays = [float(r.getMessage().split("retrying in ")[1].split(" s")[0]) for r in retries]
    assert delays == sorted(delays) and delays[-1] > delays[0]  # backoff
