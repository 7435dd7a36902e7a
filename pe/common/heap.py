"""Giving the C heap's free pages back to the system after a large temporary, and
running the garbage collector at the pace of batches.

A retrain and a model swap build temporaries that grow with the labels bought (the
examples sent to the fitter, a model's JSON and its weights decoded as Python
numbers). glibc keeps the pages they freed inside its heap, between live blocks, so
the worker's resident memory grew by each retrain's peak although nothing lived on;
``malloc_trim`` returns those pages (measured: a third less resident memory after
forty growing model swaps). Python has no call for it, hence ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

__all__ = ["release_free_heap", "tune_collector"]

#: Container objects allocated (net of those freed) between two collections of the
#: youngest generation; CPython's default is 700.
YOUNG_GENERATION_THRESHOLD = 100_000


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): their allocators return pages themselves
    return trim


def release_free_heap() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def tune_collector() -> None:
    """Leave what exists now out of every later collection, and collect young objects
    once per batch rather than many times in each.

    Called once a worker has started: its modules, topology and first models live as
    long as it does, and a full collection walking them held the event loop about
    200 ms in the PE contract's runs. A batch of 5,000 items keeps up to about 20
    containers an item alive until it is written (records, rows, output dicts), all
    freed by reference counting; at the default threshold the collector ran about 160
    times a batch, moved each batch into the older generations and walked them again
    there: about a sixth of the worker's time at saturation (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
