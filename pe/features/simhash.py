"""64-bit SimHash signatures and a bounded set for near-duplicate look-ups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.utils import murmurhash3_32

__all__ = ["SignatureSet", "hamming", "simhash"]

_BITS = np.uint64(1) << np.arange(64, dtype=np.uint64)


def simhash(grams: Sequence[str]) -> int:
    """SimHash over a text's grams; similar texts differ in few bits."""
    if not grams:
        return 0
    # Two seeded 32-bit murmur hashes make one stable 64-bit hash per gram
    # (Python's hash() differs between processes).
    low = np.array([murmurhash3_32(g, seed=1, positive=True) for g in grams], dtype=np.uint64)
    high = np.array([murmurhash3_32(g, seed=2, positive=True) for g in grams], dtype=np.uint64)
    hashes = (high << np.uint64(32)) | low
    bits = (hashes[:, None] & _BITS) != 0
    votes = np.where(bits, 1, -1).sum(axis=0)
    return int(np.sum(_BITS[votes > 0], dtype=np.uint64))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class SignatureSet:
    """The last ``capacity`` signatures, searched for near matches in one numpy pass."""

    def __init__(self, capacity: int) -> None:
        self._sigs = np.zeros(capacity, dtype=np.uint64)
        self._size = 0
        self._next = 0

    def __len__(self) -> int:
        return self._size

    def add(self, sig: int) -> None:
        self._sigs[self._next] = np.uint64(sig)
        self._next = (self._next + 1) % len(self._sigs)
        self._size = min(self._size + 1, len(self._sigs))

    def has_near(self, sig: int, max_bits: int) -> bool:
        """Is some stored signature within ``max_bits`` differing bits of ``sig``?"""
        if self._size == 0:
            return False
        xor = self._sigs[: self._size] ^ np.uint64(sig)
        return bool((np.bitwise_count(xor) <= max_bits).any())
