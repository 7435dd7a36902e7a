"""Aggregating a task's answers into one label."""

from __future__ import annotations

import pytest

from channels.records import NA_TAG
from pe.annotator.aggregate import majority_vote


@pytest.mark.parametrize(
    ("answers", "needed", "expected"),
    [
        (["yes", "yes", "no"], 2, ("yes", 2 / 3)),
        (["yes", "no", NA_TAG], 2, (None, 1 / 3)),
        (["yes", "no"], 1, (None, 0.5)),  # a tie is no label
        ([NA_TAG, NA_TAG, "yes"], 2, (None, 2 / 3)),  # "no label" never trains
        (["no"], 1, ("no", 1.0)),
        ([], 1, (None, 0.0)),
    ],
)
def test_majority_vote(answers: list[str], needed: int, expected: tuple[str | None, float]) -> None:
    tag, share = majority_vote(answers, needed)
    assert tag == expected[0]
    assert share == pytest.approx(expected[1])
