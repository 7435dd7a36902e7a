"""Encoding and validating records: orjson on bytes, pydantic validation on read."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from channels.records import InputItem, Rejected

__all__ = [
    "DecodeError",
    "decode",
    "decode_valid",
    "encode",
    "iter_json_lines",
    "parse_input",
    "rejected",
    "summarise",
]

M = TypeVar("M", bound=BaseModel)

#: How much of a bad record the rejected topic keeps; enough to diagnose, bounded
#: so a huge bad record cannot blow up the dead-letter topic.
RAW_EXCERPT_BYTES = 4096


class DecodeError(ValueError):
    """A record could not be decoded or validated; the message is the reason.

    ``kind`` is a short, fixed category (``empty``, ``json``, ``schema``) for metrics.
    """

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


def encode(record: BaseModel) -> bytes:
    """Serialise a record to compact JSON bytes."""
    return orjson.dumps(record.model_dump(mode="json"))


def decode(model: type[M], data: bytes | str | None) -> M:
    """Decode JSON bytes into ``model``, raising :class:`DecodeError` with a reason.

    Parsing and validation happen in one pass in pydantic's core (no Python dict in
    between), which is the cheapest way to validate a record here.
    """
    if data is None:
        raise DecodeError("empty message (no value)", "empty")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise DecodeError(f"invalid JSON: {first['ctx']['error']}", "json") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise DecodeError("expected a JSON object", "schema") from None
        raise DecodeError(summarise(exc), "schema") from None


def decode_valid(model: type[M], values: Iterable[bytes | str | None]) -> Iterator[M]:
    """The records of ``values`` that decode into ``model``, skipping the others: for
    a reader of a log whose bad records another stage rejects and counts."""
    for value in values:
        try:
            yield decode(model, value)
        except DecodeError:
            continue


def parse_input(data: bytes | str | None) -> InputItem:
    """Validate one input item (the schema of ``items.raw`` and ``POST /items``)."""
    return decode(InputItem, data)


def rejected(stage: str, reason: str, data: bytes | str | None) -> Rejected:
    """Build the dead-letter record for ``data``."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else (data or b"")
    return Rejected(
        stage=stage,
        reason=reason,
        raw=raw[:RAW_EXCERPT_BYTES].decode("utf-8", "replace"),
        raw_size=len(raw),
        ts=time.time(),
    )


def iter_json_lines(body: bytes) -> Iterator[bytes]:
    """Split a body of JSON lines (or one JSON object) into non-blank records."""
    stripped = body.strip()
    if stripped.startswith(b"{") and b"\n" in stripped:
        # One pretty-printed object spans lines; a JSON-lines body has one per line.
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass
        else:
            yield stripped
            return
    for line in stripped.splitlines():
        if line.strip():
            yield line.strip()


def summarise(exc: ValidationError) -> str:
    """The first errors of ``exc``, where and what, in one line."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{where}: {err['msg']}")
    return "invalid record: " + "; ".join(parts)
