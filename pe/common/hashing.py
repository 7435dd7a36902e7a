"""Unigram+bigram hashed features: stateless, so every instance agrees without coordination."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import overload

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.feature_extraction import FeatureHasher as SkFeatureHasher
from sklearn.preprocessing import normalize

__all__ = ["FeatureHasher", "Row", "SparseRows", "rounded_values", "sparse_rows"]

#: The ``(indices, values)`` of one item's features.
Row = tuple[list[int], list[float]]


class FeatureHasher:
    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        # What scikit-learn's HashingVectorizer(alternate_sign=False, norm="l2") does
        # with grams already computed (see text.grams), but fed (gram, 1) pairs zipped
        # in C instead of the tuple per gram it generates in Python: a quarter less
        # time.
        self._hasher = SkFeatureHasher(n_features, input_type="pair", alternate_sign=False)

    def matrix(self, docs: Sequence[list[str]]) -> sp.csr_matrix:
        """One row per document of grams, L2-normalised, indices sorted in each row."""
        if not docs:
            # scikit-learn raises on no documents; a batch may have no valid item.
            return sp.csr_matrix((0, self.n_features), dtype=np.float64)
        counts = self._hasher.transform(zip(doc, repeat(1)) for doc in docs)
        matrix = normalize(counts, norm="l2", copy=False).tocsr()
        matrix.sort_indices()
        return matrix

    def transform(self, docs: Sequence[list[str]]) -> list[tuple[list[int], list[float]]]:
        """Sparse ``(indices, values)`` per document of grams, indices sorted."""
        return sparse_rows(self.matrix(docs))


def rounded_values(matrix: sp.csr_matrix) -> npt.NDArray[np.float64]:
    """The matrix's stored values, rounded for compact records."""
    values: npt.NDArray[np.float64] = np.round(matrix.data, 6)
    return values


def sparse_rows(matrix: sp.csr_matrix) -> list[Row]:
    """The ``(indices, values)`` of each row, values rounded for compact records."""
    # One conversion of the whole batch to Python lists, then list slices per row:
    # numpy calls per row cost more than the rows themselves.
    indices = matrix.indices.tolist()
    values = rounded_values(matrix).tolist()
    bounds = matrix.indptr.tolist()
    return [
        (indices[start:end], values[start:end])
        for start, end in zip(bounds, bounds[1:], strict=False)
    ]


class SparseRows(Sequence[Row]):
    """:func:`sparse_rows` of a matrix, made when first read, a slice of them alone.

    The features stage writes its records from the matrix (FeatureBatch.encoded);
    only the task generator (the latest items of a batch) and open job windows read
    rows, and making them for every item took longer than encoding the records.
    """

    def __init__(self, matrix: sp.csr_matrix) -> None:
        self._matrix = matrix
        self._rows: list[Row] | None = None

    def __len__(self) -> int:
        return int(self._matrix.shape[0])

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...

    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, slice) and self._rows is None:
            return sparse_rows(self._matrix[index])
        return self._all()[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self._all())

    def _all(self) -> list[Row]:
        if self._rows is None:
            self._rows = sparse_rows(self._matrix)
        return self._rows
