"""Aggregating a task's answers into one label."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from channels.records import NA_TAG

__all__ = ["majority_vote"]


def majority_vote(answers: Sequence[str], min_agreement: int) -> tuple[str | None, float]:
    """The tag at least ``min_agreement`` answers agree on, and its share of the answers.

    Returns ``(None, share)`` when no tag has enough votes, when the leading tags tie,
    or when the winner is the "no label" answer (it must never train a model).
    """
    if not answers:
        return None, 0.0
    ranked = Counter(answers).most_common()
    tag, votes = ranked[0]
    share = votes / len(answers)
    tied = len(ranked) > 1 and ranked[1][1] == votes
    if votes < min_agreement or tied or tag == NA_TAG:
        return None, share
    return tag, share
