"""Child processes that do not outlive their parent."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

__all__ = ["background_helper", "die_with_parent", "helper_pool", "stop_helpers"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to stop this process when its parent dies, even by SIGKILL.

    Runs in the child (a ``preexec_fn`` or a pool initializer); Linux only.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def background_helper() -> None:
    """Initializer of a helper process (a pool's worker): it dies with its parent and
    yields the CPU to it, whose event loop carries the stream's latency, and it uses
    one core: with two BLAS threads, one waiting on the core the worker holds, the
    learner's MiniLM teacher embedded 9 items/s during the live benchmark; with one,
    25."""
    die_with_parent()
    os.nice(10)
    # For the OpenMP runtime scikit-learn loads later; the BLAS libraries must be
    # loaded to be limited: numpy's and scipy's.
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def helper_pool() -> ProcessPoolExecutor:
    """One helper process for a PE's heavy work off the event loop: a fresh
    interpreter (spawned, so nothing of the worker's loop or threads is copied) that
    dies with the worker and yields the CPU to it."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=background_helper,
    )


def stop_helpers() -> None:
    """Kill this process's helpers, as its worker stops.

    What they were doing (a refit, a command being read) is redone from the logs
    after a restart, and a helper still working would hold the interpreter's exit
    until it finished: concurrent.futures waits for its pools' work at exit.
    """
    for child in multiprocessing.active_children():
        child.kill()
