"""The teacher's soft labels smoothed over each sampled item's nearest neighbours."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from pe.learner import neighbours as module
from pe.learner.neighbours import NeighbourGraph, smooth


def _circle(n: int) -> npt.NDArray[np.float32]:
    """``n`` unit vectors at equal angles, scaled variously: cosine ignores length."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    scale = 1.0 + np.arange(n)[:, None] % 3
    circle = np.column_stack([np.cos(angles), np.sin(angles)]) * scale
    return np.asarray(circle, dtype=np.float32)


def test_each_item_s_neighbours_are_the_nearest_others_by_cosine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(module, "NEIGHBOURS", 2)
    ids = [f"i{k}" for k in range(12)]
    graph = NeighbourGraph()
    graph.find(ids, _circle(12))
    for k, key in enumerate(ids):  # the two on either side, never itself
        assert set(graph.neighbours[key]) == {ids[(k - 1) % 12], ids[(k + 1) % 12]}


def test_links_average_the_neighbours_still_in_the_sample() -> None:
    graph = NeighbourGraph()
    graph.neighbours = {"a": ("b", "c"), "b": ("a", "gone"), "c": ("gone",)}
    links = graph.links(["a", "b", "c", "new"]).toarray()
    assert links.tolist() == [
        [0.0, 0.5, 0.5, 0.0],
        [1.0, 0.0, 0.0, 0.0],  # the neighbour that left the sample is not averaged
        [0.0, 0.0, 0.0, 0.0],  # none left: an empty row
        [0.0, 0.0, 0.0, 0.0],  # new since the neighbours were found
    ]
    assert graph.links([]).shape == (0, 0)


def test_smoothing_moves_soft_labels_towards_the_neighbours_mean() -> None:
    graph = NeighbourGraph()
    graph.neighbours = {"a": ("b", "c"), "b": ("a",)}
    links = graph.links(["a", "b", "c"])
    probabilities = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])
    smoothed = smooth(probabilities, links, 0.5)
    assert smoothed[0] == pytest.approx([0.6, 0.4])  # halfway to (0.3, 0.7)
    assert smoothed[1] == pytest.approx([0.7, 0.3])  # halfway to a's (0.9, 0.1)
    assert smoothed[2] == pytest.approx([0.1, 0.9])  # no neighbours: its own
    assert smoothed.sum(axis=1) == pytest.approx(1.0)
    assert smooth(probabilities, links, 0.0) == pytest.approx(probabilities)


def test_the_neighbours_are_found_again_once_a_fifth_of_the_sample_has_none() -> None:
    graph = NeighbourGraph()
    few = [f"i{k}" for k in range(module.NEIGHBOURS)]
    assert not graph.stale(few)  # too few items to have that many neighbours
    ids = [f"i{k}" for k in range(100)]
    assert graph.stale(ids)
    graph.neighbours = {key: () for key in ids[:80]}
    assert not graph.stale(ids)  # 20 of 100 without: not yet
    assert graph.stale(ids + ["new"])
