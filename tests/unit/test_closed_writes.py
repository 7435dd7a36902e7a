"""Under uvloop, aiokafka's write to a closed connection raises RuntimeError where it
expects OSError; runtime.closed_writes makes it the KafkaConnectionError its callers
handle (a consumer group's heartbeat died with it and crashed a worker)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaConnectionError

from runtime import closed_writes


class _Header:
    def encode(self) -> bytes:
        return b""


class _Struct:
    def build_request_header(self, correlation_id: int, client_id: str) -> _Header:
        return _Header()

    def encode(self) -> bytes:
        return b""


class _Request:
    def prepare(self, versions: object) -> _Struct:
        return _Struct()


class _Writer:
    def __init__(self, error: RuntimeError) -> None:
        self.error = error

    def write(self, data: bytes) -> None:
        raise self.error

    def close(self) -> None:
        pass


CLOSED = RuntimeError(
    "unable to perform operation on <TCPTransport closed=True reading=False 0x1>; "
    "the handler is closed"
)


def _send_with(error: RuntimeError) -> AIOKafkaConnection:
    async def main() -> AIOKafkaConnection:
        conn = AIOKafkaConnection("127.0.0.1", 9)
        conn._writer = _Writer(error)  # noqa: SLF001 (a transport uvloop closed)
        conn.send(_Request())
        return conn

    return asyncio.run(main())


def test_a_write_to_a_closed_transport_is_a_broken_connection() -> None:
    closed_writes.install()
    wrapped = AIOKafkaConnection.send
    closed_writes.install()  # once per process, however often called
    assert AIOKafkaConnection.send is wrapped
    with pytest.raises(KafkaConnectionError, match="broken"):
        _send_with(CLOSED)


def test_another_runtime_error_is_not_hidden() -> None:
    closed_writes.install()
    with pytest.raises(RuntimeError, match="something else"):
        _send_with(RuntimeError("something else"))
