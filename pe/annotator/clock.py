"""Clocks for the annotator: virtual time for simulations, the event loop for live runs.

The pool service and the simulated crowd read time and schedule callbacks only
through a :class:`Clock`, so a simulated hour on a :class:`VirtualClock` takes
milliseconds and runs the same code as a live pool on a :class:`LoopClock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "Handle", "LoopClock", "VirtualClock"]


class Handle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds (virtual for a simulation)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        """Run ``callback`` once ``delay`` seconds of this clock have passed."""


class _VirtualHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A discrete-event clock: time jumps to the next scheduled callback."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._queue: list[tuple[float, int, _VirtualHandle, Callable[[], None]]] = []
        self._order = itertools.count()  # FIFO among callbacks due at the same time

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _VirtualHandle:
        handle = _VirtualHandle()
        entry = (self._now + max(delay, 0.0), next(self._order), handle, callback)
        heapq.heappush(self._queue, entry)
        return handle

    def run(self, until: float | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Run callbacks in time order until none is left, ``until`` is reached, or
        ``stop()`` turns true (checked after each callback)."""
        while self._queue:
            due, _, handle, callback = self._queue[0]
            if until is not None and due > until:
                break
            heapq.heappop(self._queue)
            if handle.cancelled:
                continue
            self._now = due
            callback()
            if stop is not None and stop():
                return
        if until is not None:
            self._now = max(self._now, until)


class LoopClock:
    """The running asyncio loop's clock, ``speed`` virtual seconds per real second.

    ``speed`` > 1 lets a simulated crowd work faster than people in demos and tests;
    a pool of real people runs at speed 1.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._loop = asyncio.get_running_loop()
        self._origin = self._loop.time()

    def now(self) -> float:
        return (self._loop.time() - self._origin) * self.speed

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_later(max(delay, 0.0) / self.speed, callback)
