"""Unigram+bigram hashed features: stateless, so every instance agrees without coordination."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction import FeatureHasher as SkFeatureHasher
from sklearn.preprocessing import normalize

__all__ = ["FeatureHasher", "sparse_rows"]


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


def sparse_rows(matrix: sp.csr_matrix) -> list[tuple[list[int], list[float]]]:
    """The ``(indices, values)`` of each row, values rounded for compact records."""
    # One conversion of the whole batch to Python lists, then list slices per row:
    # numpy calls per row cost more than the rows themselves.
    indices = matrix.indices.tolist()
    values = np.round(matrix.data, 6).tolist()
    bounds = matrix.indptr.tolist()
    return [
        (indices[start:end], values[start:end])
        for start, end in zip(bounds, bounds[1:], strict=False)
    ]
