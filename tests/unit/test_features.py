"""Feature hashing, normalisation and near-duplicate signatures."""

from __future__ import annotations

import math

import numpy as np
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
