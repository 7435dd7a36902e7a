"""aiokafka under uvloop: a write to a connection that is closed is a broken connection.

aiokafka's ``AIOKafkaConnection.send`` turns an ``OSError`` from its transport into a
``KafkaConnectionError``, which its callers handle: the group coordinator marks the
node dead and finds another, a read is tried again. uvloop raises ``RuntimeError``
instead for a transport it has closed (aio-libs/aiokafka#1038, open): when a broker
died, a consumer group's heartbeat or commit died with that error, ``getmany`` raised
it, and the worker's data plane crashed. :func:`install` makes aiokafka see it as the
broken connection it is. Kept here until aiokafka catches it itself.
"""

from __future__ import annotations

from typing import Any

from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError

__all__ = ["install"]

#: uvloop's message for an operation on a closed handle.
_CLOSED = "the handler is closed"
_installed = False


def install() -> None:
    """Wrap ``AIOKafkaConnection.send`` (once per process)."""
    global _installed
    if _installed:
        return
    send = AIOKafkaConnection.send

    def guarded(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        try:
            return send(self, request, expect_response)
        except RuntimeError as err:
            if _CLOSED not in str(err):
                raise
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(
                f"Connection at {self.host}:{self.port} broken: {err}"
            ) from err

    setattr(AIOKafkaConnection, "send", guarded)  # noqa: B010 (mypy refuses assigning a method)
    _installed = True
