"""Giving freed heap pages back to the system."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Run in a fresh interpreter: the test process's own heap, after hundreds of tests,
# decides where new blocks land and would make the measure say nothing.
PROBE = """
from pathlib import Path
from pe.common.heap import release_free_heap

def resident_mib():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

# Blocks above pymalloc's size but under glibc's mmap threshold, each followed by a
# small live one, so freeing them leaves holes inside the heap.
blocks, pins = [], []
for _ in range(2000):
    blocks.append(bytearray(60_000))
    pins.append(bytearray(600))
blocks.clear()
before = resident_mib()
released = release_free_heap()
print(released, before - resident_mib(), len(pins))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_blocks_between_live_ones_leave_resident_memory() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    released, dropped_mib, pins = out[0], float(out[1]), int(out[2])
    assert released == "True" and pins == 2000
    assert dropped_mib > 50  # of the 114 MiB the blocks took
