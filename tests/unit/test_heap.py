"""Giving freed heap pages back to the system."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pe.common.heap import release_free_heap


def _resident_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_blocks_between_live_ones_leave_resident_memory() -> None:
    # Blocks above pymalloc's size but under glibc's mmap threshold, each followed
    # by a small live one, so freeing them leaves holes inside the heap.
    blocks, pins = [], []
    for _ in range(2000):
        blocks.append(bytearray(60_000))
        pins.append(bytearray(600))
    blocks.clear()
    before = _resident_mib()
    assert release_free_heap()
    assert before - _resident_mib() > 50
    assert len(pins) == 2000
