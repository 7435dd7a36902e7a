"""64-bit SimHash signatures and a bounded set for near-duplicate look-ups."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.utils import murmurhash3_32

__all__ = ["SignatureSet", "hamming", "simhash_rows"]

_SHIFTS = np.arange(64, dtype=np.uint64)


@lru_cache(maxsize=2)
def _feature_signs(n_features: int) -> npt.NDArray[np.int8]:
    """For every feature index, the +1/-1 votes of its stable 64-bit hash's bits.

    Two seeded murmur hashes make the 64 bits (Python's hash() differs between
    processes). The table (n_features x 64 bytes: 16 MiB for 2^18 features) is built
    once per process so that a batch's signatures are one sparse product.
    """
    keys = np.arange(n_features, dtype=np.int32)
    low = murmurhash3_32(keys, seed=1, positive=True).astype(np.uint64)
    high = murmurhash3_32(keys, seed=2, positive=True).astype(np.uint64)
    hashes = (high << np.uint64(32)) | low
    bits = ((hashes[:, None] >> _SHIFTS) & np.uint64(1)).astype(np.int8)
    return np.asarray(bits * 2 - 1, dtype=np.int8)


def simhash_rows(matrix: sp.csr_matrix) -> list[int]:
    """SimHash of each row of a hashed-feature matrix, for a whole batch at once.

    Each feature votes with its weight for the bits of its 64-bit hash; similar
    texts share most features and so differ in few bits. A row without features
    gets 0.
    """
    nnz = matrix.indices.size
    # Row i of `weights` holds row i's feature weights, one column per stored entry.
    weights = sp.csr_matrix(
        (matrix.data.astype(np.float32), np.arange(nnz), matrix.indptr),
        shape=(matrix.shape[0], nnz),
    )
    votes = weights @ _feature_signs(matrix.shape[1])[matrix.indices].astype(np.float32)
    packed = ((np.asarray(votes) > 0).astype(np.uint64) << _SHIFTS).sum(axis=1, dtype=np.uint64)
    return [int(sig) for sig in packed]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class SignatureSet:
    """The last ``capacity`` signatures added, less those discarded, searched for near
    matches in one numpy pass."""

    def __init__(self, capacity: int) -> None:
        self._sigs = np.zeros(capacity, dtype=np.uint64)
        # A discarded slot stays until the ring overwrites it: every signature is a
        # valid value (0 too), so a mask says which slots count.
        self._live = np.zeros(capacity, dtype=np.bool_)
        self._size = 0
        self._next = 0

    def __len__(self) -> int:
        return int(np.count_nonzero(self._live[: self._size]))

    def add(self, sig: int) -> None:
        self._sigs[self._next] = np.uint64(sig)
        self._live[self._next] = True
        self._next = (self._next + 1) % len(self._sigs)
        self._size = min(self._size + 1, len(self._sigs))

    def discard(self, sig: int) -> None:
        """Forget one stored copy of ``sig``, if there is one."""
        found = np.flatnonzero(
            self._live[: self._size] & (self._sigs[: self._size] == np.uint64(sig))
        )
        if found.size:
            self._live[found[0]] = False

    def has_near(self, sig: int, max_bits: int) -> bool:
        """Is some stored signature within ``max_bits`` differing bits of ``sig``?"""
        if self._size == 0:
            return False
        xor = self._sigs[: self._size] ^ np.uint64(sig)
        return bool((self._live[: self._size] & (np.bitwise_count(xor) <= max_bits)).any())
