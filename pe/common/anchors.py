"""A classifier's worked examples as anchors of its teacher's embedding space.

An operator writes a few example messages for each tag (``examples`` in the
topology; the worker page shows them too). The teacher (pe.learner.teacher) sees,
beside an item's embedding, its similarity to the nearest example of each tag: one
more feature a tag. With a few hundred crowd labels the embedding's hundreds of
weights are learned from little, and that one feature carries what the examples say
from the first label on. In a one-off screen (docs/quality.md, "Worked examples as
anchors") it added 0.027 of `aid_related`'s word model's AUC with 100 labels and 0.004 with 420.

The second opinion (channels.records.SecondOpinion) carries the examples'
embeddings, so the classifier applies its teacher without embedding them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Anchors", "Embedded", "with_anchors"]

FloatArray = npt.NDArray[np.float64]
#: A classifier's worked examples: (tag, its examples' texts) for each tag with some.
Anchors = tuple[tuple[str, tuple[str, ...]], ...]
#: The same, each tag's examples embedded (a row each).
Embedded = tuple[tuple[str, FloatArray], ...]


def with_anchors(vectors: npt.ArrayLike, anchors: Sequence[npt.ArrayLike]) -> FloatArray:
    """``vectors`` (an embedding a row), each row followed by its largest inner product
    with each anchor set (a tag's examples' embeddings, a row each). Embeddings are unit
    length per encoder, so that is the nearest example's cosine (summed over a joined
    embedding's encoders). A zero row, an item not embedded, stays zero."""
    rows = np.asarray(vectors, dtype=np.float64)
    if not anchors:
        return rows
    nearest = [(rows @ np.asarray(tag, dtype=np.float64).T).max(axis=1) for tag in anchors]
    return np.column_stack([rows, *nearest])
