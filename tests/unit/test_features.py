"""Feature hashing, normalisation and near-duplicate signatures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from pe.common.hashing import FeatureHasher, sparse_rows
from pe.common.simhash import SignatureSet, hamming, simhash_rows
from pe.common.text import grams, normalize, tokens


def test_normalize_folds_urls_mentions_numbers_and_retweets() -> None:
    text = "RT @red_cross: 200 tents needed in Leogane http://t.co/abc @UN"
    assert normalize(text) == "0 tents needed in leogane  _url_   _user_ "
    assert tokens(text) == ["0", "tents", "needed", "in", "leogane", "url", "user"]


def test_grams_are_unigrams_then_bigrams() -> None:
    assert grams(["we", "need", "water"]) == ["we", "need", "water", "we need", "need water"]


def test_hashing_is_stateless_sorted_and_normalised() -> None:
    docs = [grams(tokens("We need water and food")), grams(tokens(""))]
    first = FeatureHasher(2**18).transform(docs)
    again = FeatureHasher(2**18).transform(docs)
    assert first == again  # two instances agree without sharing state
    idx, val = first[0]
    assert idx == sorted(set(idx)) and len(idx) == 9  # 5 unigrams + 4 bigrams
    assert all(0 <= i < 2**18 for i in idx)
    assert math.isclose(math.sqrt(sum(v * v for v in val)), 1.0, rel_tol=1e-4)
    assert first[1] == ([], [])


def test_hashing_matches_scikit_learns_hashing_vectorizer() -> None:
    # Published models index these features: the hasher must not move them.
    texts = ["We need water and food", "water water WATER", "RT @a: see http://t.co/x 12", ""]
    docs = [grams(tokens(text)) for text in texts]
    ours = FeatureHasher(2**18).matrix(docs)
    theirs = HashingVectorizer(
        n_features=2**18, analyzer=list, alternate_sign=False, norm="l2"
    ).transform(docs)
    theirs.sort_indices()
    assert np.array_equal(ours.indptr, theirs.indptr)
    assert np.array_equal(ours.indices, theirs.indices)
    assert np.array_equal(ours.data, theirs.data)


def test_simhash_near_duplicates_are_close_and_others_far() -> None:
    texts = [
        "We need water and food in Leogane, please help",
        "RT @bob: we need water and food in leogane, please help http://t.co/x",
        "The bridge to Jacmel collapsed after the aftershock",
        "",
    ]
    hasher = FeatureHasher(2**18)
    base, retweet, other, empty = simhash_rows(hasher.matrix([grams(tokens(t)) for t in texts]))
    assert hamming(base, retweet) <= 6
    assert hamming(base, other) > 12
    assert empty == 0
    # Stable: the same text gets the same signature in any batch, in any process.
    alone = simhash_rows(hasher.matrix([grams(tokens(texts[0]))]))
    assert alone == [base]


def test_signature_set_finds_near_matches_and_forgets_the_oldest() -> None:
    sigs = SignatureSet(capacity=2)
    assert not sigs.has_near(0b1111, 1)
    sigs.add(0b1111)
    assert sigs.has_near(0b1110, 1)
    assert not sigs.has_near(0b0000, 3)
    sigs.add(1 << 40)
    sigs.add(1 << 50)  # evicts 0b1111
    assert len(sigs) == 2
    assert not sigs.has_near(0b1111, 1)
    assert sigs.has_near((1 << 50) | 1, 1)


def test_a_batch_without_documents_gives_empty_results() -> None:
    # A batch in which every record was invalid reaches the hasher empty.
    matrix = FeatureHasher(2**18).matrix([])
    assert matrix.shape == (0, 2**18)
    assert sparse_rows(matrix) == [] and simhash_rows(matrix) == []


def test_a_discarded_signature_no_longer_matches() -> None:
    sigs = SignatureSet(capacity=4)
    for sig in (0b1111, 0b1111, 1 << 40):
        sigs.add(sig)
    sigs.discard(0b1111)
    assert sigs.has_near(0b1110, 1)  # one copy is left
    sigs.discard(0b1111)
    sigs.discard(0b1111)  # none left: nothing happens
    assert not sigs.has_near(0b1110, 1) and len(sigs) == 1
    assert sigs.has_near(1 << 40, 0)
    sigs.add(0)  # every value is a signature, 0 too
    assert sigs.has_near(0, 0)


def _naive_nearest(
    sigs: SignatureSet, stored: list[tuple[int, int, bool]], query: int, bits: int
) -> list[int]:
    """Each group's nearest live stored signature (slot), the newest of equals; -1."""
    best: dict[int, tuple[int, int, int]] = {}
    for slot, (sig, group, live) in enumerate(stored):
        distance = hamming(sig, query)
        if live and distance <= bits:
            key = (distance, -slot, slot)
            if group not in best or key < best[group]:
                best[group] = key
    return [best[g][2] if g in best else -1 for g in range(sigs.groups)]


@pytest.mark.parametrize("bits", [0, 3, 6, 7, 9, 12])
def test_nearest_finds_each_groups_nearest_signature_as_a_full_scan_would(bits: int) -> None:
    rng = np.random.default_rng(bits)
    centres = [int(c) for c in rng.integers(0, 2**63, 15, dtype=np.uint64)]

    def near(centre: int, most: int) -> int:
        for bit in rng.integers(0, 64, int(rng.integers(0, most + 1))):
            centre ^= 1 << int(bit)
        return centre

    sigs = SignatureSet(capacity=200, groups=3)
    stored: list[tuple[int, int, bool]] = []
    for _ in range(150):
        sig, group = near(centres[int(rng.integers(0, 15))], 8), int(rng.integers(0, 3))
        assert sigs.add(sig, group) == len(stored)
        stored.append((sig, group, True))
        if rng.random() < 0.1:
            sigs.drop(len(stored) - 1)
            stored[-1] = (sig, group, False)
    queries = [near(centres[int(rng.integers(0, 15))], 10) for _ in range(300)]
    found = sigs.nearest(np.array(queries, dtype=np.uint64), bits)
    assert found.shape == (300, 3)
    for query, row in zip(queries, found.tolist(), strict=True):
        assert row == _naive_nearest(sigs, stored, query, bits)
    assert (found >= 0).any()


def test_nearest_prefers_the_newest_of_equally_near_and_forgets_dropped_slots() -> None:
    sigs = SignatureSet(capacity=3)
    first, second = sigs.add(0b1111), sigs.add(0b1111)
    query = np.array([0b1110, 1 << 60], dtype=np.uint64)
    assert sigs.nearest(query, 1).tolist() == [[second], [-1]]
    sigs.drop(second)
    assert sigs.nearest(query, 1).tolist() == [[first], [-1]]
    third = sigs.add(1 << 60)
    assert sigs.add(1 << 61) == first  # the ring reuses the oldest slot
    assert sigs.nearest(query, 1).tolist() == [[-1], [third]]
    assert SignatureSet(4).nearest(query, 6).tolist() == [[-1], [-1]]
