"""Waiting out a broker that is away: the runtime's one retry policy, on tenacity.

Clients wait out a broker outage instead of failing: a read, a follower's whole run
or the first contact is tried again on a Kafka error, after a wait that doubles up
to a bound, and each wait is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiokafka.errors import KafkaError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)
from tenacity.stop import StopBaseT

__all__ = ["broker_retrying"]


def broker_retrying(
    what: str,
    logger: logging.Logger,
    *,
    first_s: float = 0.5,
    max_s: float = 10.0,
    stop: StopBaseT = stop_never,
    errors: tuple[type[BaseException], ...] = (KafkaError,),
    level: Callable[[RetryCallState], int] = lambda _: logging.WARNING,
) -> AsyncRetrying:
    """Retry the block on ``errors`` (and raise the last one once ``stop`` says so),
    waiting ``first_s``, then twice as long each time up to ``max_s``; each wait is
    logged on the caller's ``logger`` as "``what`` (error); retrying in N s" at
    ``level(state)``."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.log(level(state), "%s (%s); retrying in %.1f s", what, error, wait)

    return AsyncRetrying(
        retry=retry_if_exception_type(errors),
        wait=wait_exponential(multiplier=first_s, min=first_s, max=max_s),
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
