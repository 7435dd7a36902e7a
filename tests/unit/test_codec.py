"""Record validation and the dead-letter record."""

from __future__ import annotations

import orjson
import pytest

from channels.codec import (
    RAW_EXCERPT_BYTES,
    DecodeError,
    decode,
    decode_valid,
    encode,
    iter_json_lines,
    parse_input,
    rejected,
)
from channels.records import MAX_TEXT_CHARS, FeatureItem, InputItem, Item, Label, Task


@pytest.mark.parametrize(
    ("raw", "kind", "words"),
    [
        (None, "empty", "empty message"),
        (b"{not json", "json", "invalid JSON"),
        (b"[1, 2]", "schema", "expected a JSON object"),
        (b'{"id": "a"}', "schema", "text: Field required"),
        (b'{"text": "   "}', "schema", "text"),
        (b'{"text": 5}', "schema", "text"),
        (b'{"text": "x", "ts": -1}', "schema", "ts"),
        # Infinity: written back as null, which another process would refuse.
        (b'{"text": "x", "ts": 1e400}', "schema", "ts: Input should be a finite number"),
        (b'{"text": "x", "ts": NaN}', "schema", "ts: Input should be a finite number"),
        (b'{"text": "\xff\xfe"}', "json", "invalid JSON"),
    ],
)
def test_bad_input_is_refused_with_a_reason(raw: bytes | None, kind: str, words: str) -> None:
    with pytest.raises(DecodeError) as caught:
        parse_input(raw)
    assert caught.value.kind == kind
    assert words in str(caught.value)


def test_text_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(DecodeError, match="text"):
        parse_input(orjson.dumps({"text": "a" * (MAX_TEXT_CHARS + 1)}))
    assert parse_input(orjson.dumps({"text": "a" * MAX_TEXT_CHARS})).text


def test_input_is_trimmed_numeric_ids_kept_and_extra_fields_ignored() -> None:
    item = parse_input(b'{"id": 42, "text": "  help  ", "extra": true, "meta": {"k": 1}}')
    assert item == InputItem(id="42", text="help", meta={"k": 1})


def test_item_from_input_fills_id_and_times() -> None:
    given = parse_input(b'{"text": "help"}')
    item = Item.from_input(given, arrival=100.0)
    assert len(item.id) == 32 and item.ts == 100.0 and item.ts_in == 100.0
    kept = Item.from_input(parse_input(b'{"id": "x", "text": "t", "ts": 5}'), arrival=100.0)
    assert (kept.id, kept.ts, kept.ts_in) == ("x", 5.0, 100.0)


def test_encode_decode_round_trip() -> None:
    item = Item(id="1", text="t", ts=1.0, ts_in=2.0, meta={"truth": {"a": "yes"}})
    assert decode(Item, encode(item)) == item


def test_rejected_keeps_a_bounded_excerpt_and_the_size() -> None:
    raw = b"\xff" + b"x" * (RAW_EXCERPT_BYTES * 3)
    record = rejected("features", "invalid JSON", raw)
    assert record.raw_size == len(raw)
    assert len(record.raw.encode("utf-8")) <= RAW_EXCERPT_BYTES + 3
    assert record.raw.startswith("\ufffd") and record.stage == "features"


def test_json_lines_split_and_pretty_object_kept_whole() -> None:
    assert list(iter_json_lines(b'{"text": "a"}\n\n{"text": "b"}\n')) == [
        b'{"text": "a"}',
        b'{"text": "b"}',
    ]
    pretty = b'{\n  "text": "a"\n}'
    assert list(iter_json_lines(pretty)) == [pretty]
    assert list(iter_json_lines(b"  \n ")) == []


@pytest.mark.parametrize("model", [FeatureItem, Task, Label])
def test_records_with_features_refuse_mismatched_or_negative_indices(model: type) -> None:
    base = {
        "id": "i",
        "text": "t",
        "ts": 1.0,
        "ts_in": 1.0,
        "sig": 0,
        "task_id": "t",
        "item_id": "i",
        "classifier": "c",
        "question": "q",
        "tags": ["a", "b"],
        "kind": "passive",
        "created": 1.0,
        "tag": "a",
        "agreement": 1.0,
        "answers": [],
    }
    assert decode(model, orjson.dumps({**base, "idx": [1, 2], "val": [0.5, 0.5]}))
    with pytest.raises(DecodeError, match="same length"):
        decode(model, orjson.dumps({**base, "idx": [1, 2], "val": [0.5]}))
    with pytest.raises(DecodeError, match="negative"):
        decode(model, orjson.dumps({**base, "idx": [-1], "val": [0.5]}))


def test_a_reader_that_skips_bad_records_keeps_the_good_ones_in_order() -> None:
    good = [encode(InputItem(text=f"item {i}")) for i in range(3)]
    values = [good[0], None, b"{not json", good[1], b'{"text": 5}', good[2]]
    assert [item.text for item in decode_valid(InputItem, values)] == ["item 0", "item 1", "item 2"]
