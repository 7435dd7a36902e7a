"""The second pass's memory of the embeddings it computed, found by near-duplicate.

A crisis stream repeats itself: retweets and copies of a message are its
near-duplicates (SimHash signatures within ``max_bits`` differing bits, the task
generator's ``near_dup_bits``, as for crowd labels), and their texts embed alike. The
encoder is the whole cost of the second pass (tens of items a second on a core), so an
item whose near-duplicate was embedded lately takes that embedding instead of the
encoder's time: a retweet-heavy stream pays once a cluster while the memory holds it.

Each encoder keeps its last ``capacity`` embeddings, as float16: half the memory of
float32 (10,000 ``use+minilm`` embeddings of 896 numbers take 17 MiB), for an error
of about 1e-3 of each number, far below what moves a tag. A signature of 0 (a text
without word features) is no item's near-duplicate. Pure logic, in memory only: the
second pass is best effort, and a restart embeds again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pe.common.simhash import SignatureSet

__all__ = ["EmbeddingMemory"]


@dataclass
class _Store:
    """One encoder's embeddings, each in the slot its signature took."""

    sigs: SignatureSet
    vectors: npt.NDArray[np.float16]


class EmbeddingMemory:
    """The last ``capacity`` embeddings of each encoder, by near-duplicate signature."""

    def __init__(self, capacity: int, max_bits: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.max_bits = max_bits
        self._stores: dict[str, _Store] = {}

    def recall(self, encoder: str, sigs: Sequence[int]) -> list[npt.NDArray[np.float32] | None]:
        """For each signature, the embedding by ``encoder`` of its nearest remembered
        near-duplicate (the newest of equally near ones), else None."""
        store = self._stores.get(encoder)
        if store is None or not sigs:
            return [None] * len(sigs)
        slots = store.sigs.nearest(np.array(sigs, dtype=np.uint64), self.max_bits)[:, 0]
        return [
            store.vectors[slot].astype(np.float32) if sig and slot >= 0 else None
            for sig, slot in zip(sigs, slots.tolist(), strict=True)
        ]

    def keep(self, encoder: str, sigs: Sequence[int], vectors: npt.NDArray[np.float32]) -> None:
        """Remember each of ``vectors`` (rows) by its text's signature; the oldest
        go when the memory is full."""
        if not len(sigs):
            return
        store = self._stores.get(encoder)
        dims = vectors.shape[1]
        if store is None or store.vectors.shape[1] != dims:
            # A first embedding, or an encoder of that name whose size changed: the
            # old ones could not serve the models to come.
            store = self._stores[encoder] = _Store(
                SignatureSet(self.capacity), np.zeros((self.capacity, dims), np.float16)
            )
        for sig, vector in zip(sigs, vectors, strict=True):
            if sig:
                store.vectors[store.sigs.add(sig)] = vector
