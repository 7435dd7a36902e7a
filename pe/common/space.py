"""The feature space every stage agrees on: hashed word n-grams (of the words'
stems, by default), optionally character n-grams and a sentence embedding (features
parameters).

Indices ``[0, n_features)`` hold the hashed n-grams; an embedding takes the next
``EMBEDDING_DIMS`` indices. Word and character blocks are each L2-normalised,
added (weighted equally) and the sum normalised again (a word and a character gram
that are the same string share an index); the embedding block is unit length times
``embedding_weight``. Near-duplicate signatures use the word block alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize as normalize_rows

from pe.common.embedding import load_embedder
from pe.common.hashing import FeatureHasher
from pe.common.text import grams, normalize, stemmer, tokens
from pe.params import FeaturesParams

__all__ = ["FeatureSpace"]


class FeatureSpace:
    def __init__(self, params: FeaturesParams) -> None:
        self.params = params
        self.dimensions = params.dimensions
        self._words = FeatureHasher(params.n_features)
        self._stem = stemmer(params.stemmer)
        self._chars = (
            HashingVectorizer(
                n_features=params.n_features,
                analyzer="char_wb",
                ngram_range=(2, 5),
                preprocessor=normalize,
                alternate_sign=False,
                norm="l2",
            )
            if params.char_ngrams
            else None
        )
        self._embed = load_embedder(params.embedding) if params.embedding != "none" else None

    def matrices(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(features, word block) of each text: one row each, indices sorted."""
        words = self._words.matrix([grams(self._stem(tokens(text))) for text in texts])
        hashed = words
        if self._chars is not None and len(texts):
            hashed = normalize_rows(words + self._chars.transform(texts))
        if self._embed is not None:
            dense = self._embed(texts).astype(np.float64) * self.params.embedding_weight
            hashed = sp.hstack([hashed, sp.csr_matrix(dense)], format="csr")
        matrix = sp.csr_matrix(hashed, shape=(len(texts), self.dimensions))
        matrix.sort_indices()
        return matrix, words

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.matrices(texts)[0]
