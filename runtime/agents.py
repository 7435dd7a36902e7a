"""PEs as Faust agents that take one event per batch.

Faust pays about 70 µs for each event an agent takes, as much as a whole item's
work on the data path. So the runtime reads, sheds and decodes records in batches
(see runtime.dataflow and runtime.follower) and puts each batch on the agent's
channel as one event: Faust's cost is paid per batch. The caller waits for the
agent to finish the batch and gets its result (the futures of what it sent), which
keeps the runtime's guarantee that a batch's offsets are committed only after its
outputs are acknowledged. A batch the agent raises on goes back to the caller with
the exception (the data plane dead-letters it, a follower reads it again) and the
agent goes on with the next one: an agent never dies of its input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import faust
from mode.utils.queues import FlowControlEvent, ThrowableQueue

__all__ = ["BatchAgent"]

T = TypeVar("T")
R = TypeVar("R")

#: Batches that may wait for an agent (each caller waits for its own).
QUEUE_SIZE = 16


class _BatchChannel(faust.Channel[Any]):
    """An in-memory channel outside Faust's flow control.

    Faust pauses channel queues until its consumer has partitions, and empties them
    at each of its rebalances; workers run no Faust consumer (the runtime reads), and
    a batch put here is awaited by its caller, so a queue emptied by Faust would leave
    the caller waiting forever. One batch waits at a time per caller.
    """

    @property
    def queue(self) -> ThrowableQueue[Any]:
        if self._queue is None:
            always_open = FlowControlEvent()
            always_open.resume()
            self._queue = ThrowableQueue(maxsize=QUEUE_SIZE, flow_control=always_open)
        return self._queue


@dataclass(frozen=True)
class _Batch(Generic[T, R]):
    unit: T
    done: asyncio.Future[R]


class BatchAgent(Generic[T, R]):
    """A Faust agent named ``name`` that runs ``handler`` on each batch it is given.

    Calling the instance with a batch hands it to the agent and returns the
    handler's result, or raises what the handler raised.
    """

    def __init__(self, app: faust.App, name: str, handler: Callable[[T], Awaitable[R]]) -> None:
        self.name = name
        self._handler = handler
        self._channel = _BatchChannel(app)
        self.agent = app.agent(self._channel, name=name)(self._take)

    async def _take(self, stream: faust.StreamT[Any]) -> None:
        batch: _Batch[T, R]
        async for batch in stream:
            if batch.done.done():
                continue  # the caller gave up (it was cancelled): nobody waits for it
            try:
                result = await self._handler(batch.unit)
            except Exception as exc:  # noqa: BLE001 (passed to the caller, who decides)
                if not batch.done.done():
                    batch.done.set_exception(exc)
            else:
                if not batch.done.done():
                    batch.done.set_result(result)

    async def __call__(self, unit: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        # The batch goes in as a plain value, not a Faust event: events are Kafka
        # messages to Faust, skipped while its consumer's flow control is paused and
        # acked against offsets; a batch has neither (the runtime commits them).
        await self._channel.put(_Batch(unit, done))  # type: ignore[arg-type]
        return await done
