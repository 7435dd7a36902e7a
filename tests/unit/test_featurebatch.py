"""Feature batches on the wire and in memory, and the classifier's output records."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from aiokafka import ConsumerRecord

from channels.codec import decode
from channels.records import ClassifiedItem, FeatureItem, Item, LinearModel, SparseRow
from pe.classifier.agent import classify
from pe.common.featurebatch import FeatureBatch, decode_feature_batch
from pe.common.hashing import FeatureHasher, sparse_rows
from pe.common.linear import compile_model
from pe.common.simhash import simhash_rows
from pe.common.text import grams, tokens

N_FEATURES = 2**12
TEXTS = ["we need water in Leogane", "the bridge collapsed", "tents needed, please help", "ok"]


def make_batch() -> FeatureBatch:
    items = [
        Item(id=f"i{n}", text=text, ts=1.0, ts_in=2.0 + n, source="sms", meta={"k": n})
        for n, text in enumerate(TEXTS)
    ]
    matrix = FeatureHasher(N_FEATURES).matrix([grams(tokens(i.text)) for i in items])
    return FeatureBatch(items, sparse_rows(matrix), simhash_rows(matrix), matrix)


def as_records(encoded: list[tuple[bytes, bytes]]) -> list[ConsumerRecord]:
    return [
        ConsumerRecord("t", 0, n, 0, 0, key, value, None, len(key), len(value), [])
        for n, (key, value) in enumerate(encoded)
    ]


def test_sparse_rows_are_the_rows_of_the_matrix() -> None:
    matrix = make_batch().matrix
    for i, (idx, val) in enumerate(sparse_rows(matrix)):
        row = matrix.getrow(i)
        assert idx == row.indices.tolist()
        assert val == pytest.approx(row.data.tolist(), abs=1e-6)


def test_an_encoded_batch_is_valid_feature_items_keyed_by_id() -> None:
    batch = make_batch()
    encoded = batch.encoded()
    assert [key for key, _ in encoded] == [b"i0", b"i1", b"i2", b"i3"]
    first = decode(FeatureItem, encoded[0][1])
    assert first.id == "i0" and first.source == "sms" and first.meta == {"k": 0}
    assert (first.idx, first.val, first.sig) == (*batch.rows[0], batch.sigs[0])


def test_decoding_a_batch_gives_back_the_same_batch_and_the_bad_records() -> None:
    batch = make_batch()
    forged = orjson.dumps(
        {"id": "x", "text": "t", "ts": 1, "ts_in": 1, "idx": [N_FEATURES], "val": [1.0], "sig": 0}
    )
    records = as_records([*batch.encoded(), (b"x", forged), (b"y", b"{not json")])
    decoded, bad = decode_feature_batch(records, N_FEATURES)
    assert [item.id for item in decoded.items] == ["i0", "i1", "i2", "i3"]
    assert decoded.rows == batch.rows and decoded.sigs == batch.sigs
    assert np.allclose(decoded.matrix.toarray(), batch.matrix.toarray(), atol=1e-6)
    assert [(rec.key, exc.kind) for rec, exc in bad] == [(b"x", "schema"), (b"y", "json")]
    assert "out of range" in str(bad[0][1])


def test_select_keeps_items_rows_and_matrix_aligned() -> None:
    batch = make_batch()
    chosen = batch.select([False, True, False, True])
    assert [item.id for item in chosen.items] == ["i1", "i3"]
    assert chosen.rows == [batch.rows[1], batch.rows[3]]
    assert chosen.sigs == [batch.sigs[1], batch.sigs[3]]
    assert (chosen.matrix.toarray() == batch.matrix[[1, 3]].toarray()).all()
    assert batch.select([True] * 4) is batch


def test_classified_records_are_valid_and_use_each_model() -> None:
    batch = make_batch()
    water = batch.rows[0][0]
    # "yes" whenever a feature of the first text is present.
    model = LinearModel(
        classes=["no", "yes"],
        link="sigmoid",
        n_features=N_FEATURES,
        intercept=[-2.0],
        rows=[SparseRow(idx=water, val=[20.0] * len(water))],
    )
    out = classify(batch, {"aid": (compile_model(model), 7)}, ["aid", "request"], now=9.0)
    records = [ClassifiedItem.model_validate_json(orjson.dumps(r)) for r in out]
    assert [r.id for r in records] == ["i0", "i1", "i2", "i3"]
    assert records[0].labels["aid"].tag == "yes" and records[0].labels["aid"].model_version == 7
    assert records[3].labels["aid"].tag == "no"
    assert all(r.labels["request"].tag is None for r in records)
    assert all(r.labels["request"].model_version == 0 for r in records)
    assert records[2].ts_in == 4.0 and records[2].ts_out == 9.0 and records[2].source == "sms"
