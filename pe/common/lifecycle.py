"""Child processes that do not outlive their parent."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

__all__ = [
    "HELPER_NICE",
    "Helper",
    "background_helper",
    "die_with_parent",
    "helper_pool",
    "stop_helpers",
]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _prctl(option: int, arg: int | bytes) -> None:
    """Linux's prctl on this process; nothing elsewhere."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, arg)


def die_with_parent() -> None:
    """Ask the kernel to stop this process when its parent dies, even by SIGKILL.

    Runs in the child (a ``preexec_fn`` or a pool initializer); Linux only.
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


#: How much a helper process yields the CPU (its nice value) by default: to the
#: worker, whose event loop carries the stream's latency.
HELPER_NICE = 10


def _name_process(name: str) -> None:
    """Give this process the name ``ps``, ``top`` and ``/proc/<pid>/comm`` show (the
    kernel keeps 15 bytes): a worker's helpers all run the same ``spawn_main`` command
    line, and an operator (or a test) must tell which is which. Linux only."""
    _prctl(_PR_SET_NAME, name.encode()[:15])


def background_helper(name: str, nice: int = HELPER_NICE) -> None:
    """Initializer of a helper process (a pool's worker): it dies with its parent,
    takes ``name`` (:func:`_name_process`) and yields the CPU to it (``nice``), and it
    uses one core: with two BLAS threads, one waiting on the core the worker holds,
    the learner's MiniLM teacher embedded 9 items/s during the live benchmark; with
    one, 25."""
    die_with_parent()
    _name_process(name)
    os.nice(nice)
    # For the OpenMP runtime scikit-learn loads later; the BLAS libraries must be
    # loaded to be limited: numpy's and scipy's.
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def helper_pool(name: str, nice: int = HELPER_NICE) -> ProcessPoolExecutor:
    """One helper process for a PE's heavy work off the event loop: a fresh
    interpreter (spawned, so nothing of the worker's loop or threads is copied) named
    ``name`` that dies with the worker and yields the CPU to it
    (:func:`background_helper`)."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=background_helper,
        initargs=(name, nice),
    )


class Helper:
    """A PE's helper process (:func:`helper_pool`), started at once: a fresh
    interpreter importing scikit-learn or an encoder at the first call took seconds of
    CPU from the event loop while items flowed. If that process dies (killed, out of
    memory), :meth:`renew` starts another: a dead pool would fail every call."""

    def __init__(self, name: str, nice: int = HELPER_NICE) -> None:
        self.name = name  #: what it does: the process's name (ps) and the log's
        self.nice = nice
        self.executor = self._start()
        self.generation = 0  #: processes started before this one (what they held is lost)

    def _start(self) -> ProcessPoolExecutor:
        executor = helper_pool(self.name, self.nice)
        executor.submit(int)
        return executor

    def renew(self, broken: ProcessPoolExecutor, why: BaseException) -> None:
        """Start another process if ``broken`` (a call on it failed) is still the
        current one: every call of the PE's shares it."""
        if broken is not self.executor:
            return
        log.error("the %s process died (%s); starting another", self.name, why)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._start()
        self.generation += 1


def stop_helpers() -> None:
    """Kill this process's helpers, as its worker stops.

    What they were doing (a refit, a command being read) is redone from the logs
    after a restart, and a helper still working would hold the interpreter's exit
    until it finished: concurrent.futures waits for its pools' work at exit.
    """
    for child in multiprocessing.active_children():
        child.kill()
