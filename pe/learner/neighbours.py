"""The teacher's soft labels smoothed over each sampled item's nearest neighbours.

The teacher (pe.learner.teacher) learns from a few hundred crowd labels, and its
probability of a tag varies from one item to a nearly identical one: noise the
student then learns too. Each sampled item's soft labels lean towards the mean of its
nearest neighbours' in the sample, by the teacher's embedding (a step of label
propagation). Offline (docs/quality.md, "Smoothing the teacher's soft labels"),
halfway to the mean of 10 neighbours took `request`'s word model from tag F1 0.635
to 0.648 (every one of 6 seeds gained) and `aid_related`'s from 0.718 to 0.719.

The neighbours are found in the fitting process between refits, with the sample's
embeddings (:class:`NeighbourGraph`), and a refit uses them as they are: finding
them in 20,000 items of ``use+minilm`` takes 15-20 s of a core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn import config_context
from sklearn.neighbors import NearestNeighbors

__all__ = ["NEIGHBOURS", "RELINK_SHARE", "NeighbourGraph", "smooth"]

FloatArray = npt.NDArray[np.float64]

#: The neighbours an item's soft labels lean towards (offline, 10 and 30 were within
#: 0.002 of each other; docs/quality.md).
NEIGHBOURS = 10
#: The graph is found again when more than this share of the embedded sample has no
#: neighbours yet: a sample that grew or moved on by a fifth. Items new since then
#: keep their teacher's soft labels as they are until then.
RELINK_SHARE = 0.2
#: Memory for the distances computed at once (MB): at scikit-learn's default (1 GB)
#: the fitting process would hold a gigabyte of them for a 20,000-item sample.
_WORKING_MEMORY_MB = 64


class NeighbourGraph:
    """Each sampled item's nearest neighbours in the sample as it was when last found,
    by item id."""

    def __init__(self) -> None:
        self.neighbours: dict[str, tuple[str, ...]] = {}

    def stale(self, ids: Sequence[str]) -> bool:
        """Are enough of ``ids`` (the embedded sample) without neighbours to find them
        again?"""
        if len(ids) <= NEIGHBOURS:
            return False
        lacking = sum(1 for key in ids if key not in self.neighbours)
        return lacking > RELINK_SHARE * len(ids)

    def find(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        """Find each item's :data:`NEIGHBOURS` nearest others among ``ids`` (their
        embeddings ``vectors``, a row each): nearest by cosine."""
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        # On unit vectors Euclidean distance ranks as cosine does, and scikit-learn
        # computes it with one matrix product a chunk.
        with config_context(working_memory=_WORKING_MEMORY_MB):
            search = NearestNeighbors(n_neighbors=NEIGHBOURS, algorithm="brute").fit(unit)
            nearest = search.kneighbors(return_distance=False)  # each item's others
        self.neighbours = {
            key: tuple(ids[j] for j in row) for key, row in zip(ids, nearest, strict=True)
        }

    def links(self, ids: Sequence[str]) -> sp.csr_matrix:
        """The mean over each item's neighbours, as a matrix over ``ids`` (the sample a
        fit is taught from): row i averages item i's neighbours that are among
        ``ids``; an empty row for an item with none."""
        position = {key: i for i, key in enumerate(ids)}
        rows: list[int] = []
        columns: list[int] = []
        for i, key in enumerate(ids):
            found = [position[other] for other in self.neighbours.get(key, ()) if other in position]
            rows.extend([i] * len(found))
            columns.extend(found)
        counts = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(ids))
        weights = 1.0 / counts[rows] if rows else np.zeros(0)
        return sp.csr_matrix((weights, (rows, columns)), shape=(len(ids), len(ids)))


def smooth(probabilities: FloatArray, links: sp.csr_matrix, share: float) -> FloatArray:
    """``probabilities`` (a row an item, a column a tag) moved ``share`` of the way to
    their mean over each item's neighbours (``links``, :meth:`NeighbourGraph.links`);
    an item without neighbours keeps its own."""
    linked = np.asarray(links.getnnz(axis=1) > 0)
    mean = np.asarray(links @ probabilities)
    return np.where(linked[:, None], (1 - share) * probabilities + share * mean, probabilities)
