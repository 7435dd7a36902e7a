"""The second pass's memory of embeddings, found by near-duplicate signature."""

from __future__ import annotations

import numpy as np
import pytest

from pe.classifier.embedding_memory import EmbeddingMemory


def _vectors(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_a_near_duplicate_takes_the_embedding_of_its_nearest_remembered_signature() -> None:
    memory = EmbeddingMemory(capacity=10, max_bits=3)
    memory.keep("enc", [0b1111_0000, 0b1111_0111], _vectors([1.0, 0.0], [0.0, 1.0]))
    near, nearer, far, other = memory.recall("enc", [0b1111_0001, 0b1111_0110, 0b1010_1010, 1])
    assert near is not None and nearer is not None
    np.testing.assert_allclose(near, [1.0, 0.0])  # 1 bit from the first, 2 from the second
    np.testing.assert_allclose(nearer, [0.0, 1.0])  # 1 bit from the second
    assert far is None  # 4 bits or more from both
    assert other is None  # 0b1 is 5 and 6 bits away
    assert memory.recall("another encoder", [0b1111_0000]) == [None]


def test_a_text_without_features_is_no_near_duplicate() -> None:
    memory = EmbeddingMemory(capacity=10, max_bits=3)
    memory.keep("enc", [0, 0b1], _vectors([1.0, 0.0], [0.0, 1.0]))
    zero, one = memory.recall("enc", [0, 0b1])
    assert zero is None  # neither kept nor found under 0
    assert one is not None
    full = EmbeddingMemory(capacity=1, max_bits=0)
    full.keep("enc", [5], _vectors([1.0, 0.0]))
    full.keep("enc", [0], _vectors([0.0, 1.0]))  # takes no room
    assert full.recall("enc", [5])[0] is not None


def test_the_newest_of_equally_near_embeddings_is_recalled_and_the_oldest_forgotten() -> None:
    memory = EmbeddingMemory(capacity=2, max_bits=0)
    memory.keep("enc", [7], _vectors([1.0, 0.0]))
    memory.keep("enc", [7], _vectors([0.0, 1.0]))
    [seven] = memory.recall("enc", [7])
    assert seven is not None
    np.testing.assert_allclose(seven, [0.0, 1.0])
    memory.keep("enc", [9, 11], _vectors([0.5, 0.5], [0.25, 0.75]))  # a full memory
    assert memory.recall("enc", [7]) == [None]
    kept = memory.recall("enc", [9, 11])
    assert all(vector is not None for vector in kept)


def test_embeddings_come_back_as_float32_within_half_precision() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(0, 0.05, size=(3, 384)).astype(np.float32)
    memory = EmbeddingMemory(capacity=10, max_bits=0)
    memory.keep("enc", [1, 2, 3], vectors)
    recalled = memory.recall("enc", [1, 2, 3])
    for vector, original in zip(recalled, vectors, strict=True):
        assert vector is not None and vector.dtype == np.float32
        np.testing.assert_allclose(vector, original, atol=1e-4)


def test_an_encoder_whose_size_changed_starts_afresh() -> None:
    memory = EmbeddingMemory(capacity=10, max_bits=0)
    memory.keep("enc", [1], _vectors([1.0, 0.0]))
    memory.keep("enc", [2], _vectors([1.0, 0.0, 0.0]))
    assert memory.recall("enc", [1]) == [None]
    [two] = memory.recall("enc", [2])
    assert two is not None and two.shape == (3,)


def test_a_memory_holds_one_embedding_at_least() -> None:
    with pytest.raises(ValueError, match="capacity"):
        EmbeddingMemory(capacity=0, max_bits=3)
