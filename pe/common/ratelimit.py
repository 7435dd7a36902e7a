"""Token-bucket rate limits by key (a worker id, a client address).

Kept rather than a library: ``limits`` counts requests in fixed or moving windows
(no bursts refilled at a rate) and ``aiolimiter`` is one bucket per limiter, with no
keys and no bound on how many it keeps; this is a bounded set of keyed buckets that
says how long to wait (the ``Retry-After`` of a 429).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``rate`` requests a second per key, in bursts of up to ``burst``.

    At most ``max_keys`` buckets are kept, least recently used dropped first: a
    dropped key starts again with a full bucket, which only errs on the kind side.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str) -> float:
        """Take one request for ``key``: 0.0 if allowed, else the seconds to wait."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait
