"""A batch of featurised items: what ``items.features`` carries, held column-wise.

The features PE builds one and hands it to fused stages as is (no encode/decode);
a stage in another process decodes the same thing from the topic with
:func:`decode_feature_batch`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import scipy.sparse as sp
from aiokafka import ConsumerRecord

from channels.codec import DecodeError, decode
from channels.records import FeatureItem, Item
from pe.common.hashing import Row, rounded_values
from pe.common.linear import feature_matrix, features_in_range

__all__ = ["FeatureBatch", "decode_feature_batch", "skipping_decoder"]


@dataclass(frozen=True)
class FeatureBatch:
    items: list[Item]
    rows: Sequence[Row]  #: sparse features of each item (the matrix's rows)
    sigs: list[int]  #: SimHash of each item
    matrix: sp.csr_matrix  #: the same features, one row per item

    def __len__(self) -> int:
        return len(self.items)

    def select(self, keep: Sequence[bool]) -> FeatureBatch:
        """The items whose ``keep`` flag is set."""
        if all(keep):
            return self
        chosen = [i for i, flag in enumerate(keep) if flag]
        return FeatureBatch(
            items=[self.items[i] for i in chosen],
            rows=[self.rows[i] for i in chosen],
            sigs=[self.sigs[i] for i in chosen],
            matrix=self.matrix[chosen],
        )

    def encoded(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` records of ``items.features`` (FeatureItem JSON).

        The features are written from the matrix's arrays (orjson writes numpy
        arrays as JSON lists, the same text as the rows' Python numbers), rounded
        as the rows are: no Python list per row.
        """
        indices, values = self.matrix.indices, rounded_values(self.matrix)
        bounds = self.matrix.indptr.tolist()
        out = []
        rows = zip(self.items, self.sigs, bounds[:-1], bounds[1:], strict=True)
        for item, sig, start, end in rows:
            record: dict[str, Any] = {
                "id": item.id,
                "text": item.text,
                "ts": item.ts,
                "ts_in": item.ts_in,
                "source": item.source,
                "meta": item.meta,
                "idx": indices[start:end],
                "val": values[start:end],
                "sig": sig,
            }
            out.append((item.id.encode(), orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)))
        return out


def decode_feature_batch(
    records: Sequence[ConsumerRecord], n_features: int
) -> tuple[FeatureBatch, list[tuple[ConsumerRecord, DecodeError]]]:
    """Validate ``items.features`` records; the bad ones are returned with their reason."""
    items: list[FeatureItem] = []
    bad = []
    for record in records:
        try:
            item = decode(FeatureItem, record.value)
            if not features_in_range(item.idx, n_features):
                raise DecodeError(f"feature index out of range (>= {n_features})", "schema")
        except DecodeError as exc:
            bad.append((record, exc))
            continue
        items.append(item)
    rows = [(item.idx, item.val) for item in items]
    batch = FeatureBatch(
        items=list(items),
        rows=rows,
        sigs=[item.sig for item in items],
        matrix=feature_matrix(rows, n_features),
    )
    return batch, bad


def skipping_decoder(
    n_features: int,
) -> Callable[[Sequence[ConsumerRecord]], Awaitable[tuple[FeatureBatch, list[Any]]]]:
    """The decoder of a reader of ``items.features`` other than the classifier: bad
    records are the classifier's to reject and count; the others skip them."""

    async def decode_skipping(
        records: Sequence[ConsumerRecord],
    ) -> tuple[FeatureBatch, list[Any]]:
        batch, _ = decode_feature_batch(records, n_features)
        return batch, []

    return decode_skipping
