"""64-bit SimHash signatures and a bounded set for near-duplicate look-ups."""

from __future__ import annotations

from dataclasses import dataclass
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
    matches in one numpy pass (:meth:`has_near`), or for a whole batch of signatures
    at once (:meth:`nearest`)."""

    def __init__(self, capacity: int, groups: int = 1) -> None:
        """``groups``: :meth:`nearest` finds the nearest signature of each group."""
        self.groups = groups
        self._sigs = np.zeros(capacity, dtype=np.uint64)
        # A discarded slot stays until the ring overwrites it: every signature is a
        # valid value (0 too), so a mask says which slots count.
        self._live = np.zeros(capacity, dtype=np.bool_)
        #: When each slot was filled (a count of adds): the newest of equal matches wins.
        self._added = np.zeros(capacity, dtype=np.int64)
        self._group = np.zeros(capacity, dtype=np.int64)
        self._size = 0
        self._next = 0
        self._adds = 0
        #: :meth:`nearest`'s block tables, by distance, for the slots as they were
        #: at ``_adds`` (see _BlockTables).
        self._tables: dict[int, _BlockTables] = {}

    def __len__(self) -> int:
        return int(np.count_nonzero(self._live[: self._size]))

    def add(self, sig: int, group: int = 0) -> int:
        """Store ``sig`` in ``group``; returns its slot (the oldest slot, when full,
        is reused)."""
        slot = self._next
        self._sigs[slot] = np.uint64(sig)
        self._group[slot] = group
        self._live[slot] = True
        self._adds += 1
        self._added[slot] = self._adds
        self._next = (slot + 1) % len(self._sigs)
        self._size = min(self._size + 1, len(self._sigs))
        return slot

    def discard(self, sig: int) -> None:
        """Forget one stored copy of ``sig``, if there is one."""
        found = np.flatnonzero(
            self._live[: self._size] & (self._sigs[: self._size] == np.uint64(sig))
        )
        if found.size:
            self._live[found[0]] = False

    def drop(self, slot: int) -> None:
        """Forget the signature in ``slot`` (as :meth:`add` returned it)."""
        self._live[slot] = False

    def has_near(self, sig: int, max_bits: int) -> bool:
        """Is some stored signature within ``max_bits`` differing bits of ``sig``?"""
        if self._size == 0:
            return False
        xor = self._sigs[: self._size] ^ np.uint64(sig)
        return bool((self._live[: self._size] & (np.bitwise_count(xor) <= max_bits)).any())

    def nearest(self, sigs: npt.NDArray[np.uint64], max_bits: int) -> npt.NDArray[np.int64]:
        """For each of ``sigs`` (rows) and each group (columns), the slot of the
        group's stored signature nearest to it within ``max_bits`` differing bits
        (the newest of equally near ones), else -1. One search serves every group.

        Multi-index hashing: cut the 64 bits into m blocks, m at least
        ``(max_bits + 1) / 2``; two signatures that differ in at most ``max_bits``
        bits then differ in at most one bit of some block. So a query is compared
        only with the stored signatures whose value in some block is the query's or
        one bit from it, each found in a table of the block's values. With m = 4
        (blocks of 16 bits, up to 7 bits apart) a query meets about 1/400 of the
        set; past MAX_BLOCKED_BITS blocks are too narrow to prune and every pair is
        compared.
        """
        found = np.full((len(sigs), self.groups), -1, dtype=np.int64)
        if self._size == 0 or not len(sigs):
            return found
        if max_bits <= MAX_BLOCKED_BITS:
            pairs = self._block_pairs(sigs, max_bits)
        else:
            pairs = self._all_pairs(sigs, max_bits)
        query, slot = (np.concatenate(part) if part else np.zeros(0, np.int64) for part in pairs)
        if not query.size:
            return found
        # By query and group, nearest first, then newest: the first pair of each
        # (query, group) is its answer.
        group = self._group[slot]
        distance = np.bitwise_count(self._sigs[slot] ^ sigs[query])
        order = np.lexsort((-self._added[slot], distance, group, query))
        query, group, slot = query[order], group[order], slot[order]
        first = np.flatnonzero(np.r_[True, (query[1:] != query[:-1]) | (group[1:] != group[:-1])])
        found[query[first], group[first]] = slot[first]
        return found

    def _near(
        self,
        sigs: npt.NDArray[np.uint64],
        query: npt.NDArray[np.int64],
        slot: npt.NDArray[np.int64],
        max_bits: int,
        pairs: _Pairs,
    ) -> None:
        """Add to ``pairs`` those of (query, slot) within ``max_bits``, live."""
        close = np.flatnonzero(np.bitwise_count(self._sigs[slot] ^ sigs[query]) <= max_bits)
        query, slot = query[close], slot[close]
        live = self._live[slot]
        pairs[0].append(query[live])
        pairs[1].append(slot[live])

    def _block_pairs(self, sigs: npt.NDArray[np.uint64], max_bits: int) -> _Pairs:
        """The near pairs among those within one bit in some block (repeats possible)."""
        tables = self._tables.get(max_bits)
        if tables is None or tables.adds != self._adds:
            tables = self._tables[max_bits] = _BlockTables(
                self._sigs[: self._size], max_bits, self._adds
            )
        pairs: _Pairs = ([], [])
        for block in tables.blocks:
            # The query's value in the block and every value one bit from it.
            near = ((sigs >> block.shift) & block.mask).astype(np.int64)[:, None] ^ block.flips
            near = near.ravel()
            # Most values are no stored signature's: find the others first (a table of
            # booleans is the cheapest to look up), then where their slots are.
            hit = np.flatnonzero(block.present[near])
            if not hit.size:
                continue
            low, counts = block.starts[near[hit]], block.counts[near[hit]]
            query = np.repeat(hit // block.flips.size, counts)
            # Each value's run in ``order``: low .. low + count - 1.
            offsets = np.repeat(low - (np.cumsum(counts) - counts), counts)
            slot = block.order[offsets + np.arange(int(counts.sum()))]
            self._near(sigs, query, slot, max_bits, pairs)
        return pairs

    def _all_pairs(self, sigs: npt.NDArray[np.uint64], max_bits: int) -> _Pairs:
        """The near pairs among all, PAIRS_AT_ONCE at a time."""
        pairs: _Pairs = ([], [])
        live = np.flatnonzero(self._live[: self._size])
        step = max(1, PAIRS_AT_ONCE // max(live.size, 1))
        for start in range(0, len(sigs), step):
            count = len(sigs[start : start + step])
            query = np.repeat(np.arange(start, start + count), live.size)
            self._near(sigs, query, np.tile(live, count), max_bits, pairs)
        return pairs


#: (query, slot) pairs, in parts.
_Pairs = tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.int64]]]
#: Past this distance :meth:`SignatureSet.nearest` compares every pair ...
MAX_BLOCKED_BITS = 10
#: ... this many pairs at a time.
PAIRS_AT_ONCE = 1 << 20


@dataclass(frozen=True)
class _Block:
    """One block of bits: where it is, and the slots grouped by their value in it."""

    shift: np.uint64
    mask: np.uint64
    flips: npt.NDArray[np.int64]  #: 0, then each single bit of the block
    order: npt.NDArray[np.int64]  #: slots sorted by their value in the block
    present: npt.NDArray[np.bool_]  #: whether some slot has each value
    counts: npt.NDArray[np.int64]  #: how many slots have each value
    starts: npt.NDArray[np.int64]  #: where each value's slots start in ``order``


class _BlockTables:
    """The blocks :meth:`SignatureSet.nearest` cuts signatures into for a distance,
    with their tables, for the slots as they were after ``adds`` adds."""

    def __init__(self, sigs: npt.NDArray[np.uint64], max_bits: int, adds: int) -> None:
        self.adds = adds
        self.blocks: list[_Block] = []
        count = max(4, -(-(max_bits + 1) // 2))
        bounds = np.linspace(0, 64, count + 1).round().astype(int).tolist()
        for low, high in zip(bounds[:-1], bounds[1:], strict=True):
            width = high - low
            values = ((sigs >> np.uint64(low)) & np.uint64((1 << width) - 1)).astype(np.int64)
            counts = np.bincount(values, minlength=1 << width)
            starts = np.zeros(1 << width, dtype=np.int64)
            np.cumsum(counts[:-1], out=starts[1:])
            self.blocks.append(
                _Block(
                    shift=np.uint64(low),
                    mask=np.uint64((1 << width) - 1),
                    flips=np.array([0] + [1 << bit for bit in range(width)], dtype=np.int64),
                    order=np.argsort(values, kind="stable").astype(np.int64),
                    present=counts > 0,
                    counts=counts,
                    starts=starts,
                )
            )
