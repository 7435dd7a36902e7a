"""Fuzzing the decoders every topic and HTTP ingress uses: random bytes, wrong types,
huge strings, deep JSON, invalid UTF-8 and emoji give a decode error with a reason
(the record then goes to items.rejected), never another exception."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings

from channels.codec import DecodeError, decode, iter_json_lines, parse_input, rejected
from channels.jobs import JobCommand
from channels.records import MAX_TEXT_CHARS, Answer, Label, Task
from channels.signing import DEVELOPMENT_KEY, ModelRefused, ModelSigner
from tests.fuzzing import JSON, payloads


def _rejected_reason(exc: Exception, raw: bytes) -> None:
    assert str(exc)
    record = rejected("fuzz", str(exc), raw)
    assert len(record.raw.encode()) <= 4 * 4096 and record.raw_size == len(raw)
    orjson.dumps(record.model_dump(mode="json"))  # the dead letter itself encodes


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_input_items_decode_or_are_rejected_with_a_reason(raw: bytes) -> None:
    for line in iter_json_lines(raw):
        try:
            item = parse_input(line)
        except DecodeError as exc:
            _rejected_reason(exc, line)
        else:
            assert 1 <= len(item.text) <= MAX_TEXT_CHARS


@settings(max_examples=200, deadline=None)
@given(payloads())
def test_internal_records_decode_or_are_rejected_with_a_reason(raw: bytes) -> None:
    for model in (Task, Answer, Label, JobCommand):
        try:
            decode(model, raw)
        except DecodeError as exc:
            _rejected_reason(exc, raw)


@settings(max_examples=200, deadline=None)
@given(payloads())
def test_model_messages_are_refused_with_a_reason(raw: bytes) -> None:
    try:
        ModelSigner(DEVELOPMENT_KEY).verify(raw)
    except ModelRefused as exc:
        assert exc.kind in {"invalid", "schema_version", "unsigned", "tampered"}


@settings(max_examples=100, deadline=None)
@given(JSON)
def test_any_json_value_in_any_field_is_a_clean_rejection(value: Any) -> None:
    for field in ("id", "text", "ts", "meta", "source"):
        raw = orjson.dumps({"text": "water needed", field: value})
        try:
            parse_input(raw)
        except DecodeError as exc:
            assert exc.kind in {"schema", "json", "empty"}
