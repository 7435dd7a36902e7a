"""Test tiers: the fault scenarios run only when the marker expression names them
(``make test-faults``, ``pytest -m faults``). A fault file run by path reports its
tests as skipped, with how to run them, rather than selecting nothing."""

from __future__ import annotations

import pytest

FAULTS = "faults"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FAULTS in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a fault scenario: run it with make test-faults or -m faults")
    for item in items:
        if item.get_closest_marker(FAULTS) is not None:
            item.add_marker(skip)
