"""Nearest training examples (the novelty check): by code Hamming distance and by features,
against brute force and a hand-made set with a known answer."""

import numpy as np

from dlc.metrics.novelty import nearest_features, nearest_hamming


def test_nearest_hamming_against_brute_force():
    rng = np.random.default_rng(0)
    queries, pool = rng.integers(0, 3, (7, 6)), rng.integers(0, 3, (50, 6))
    index, distance = nearest_hamming(queries, pool)
    brute = [min(int((q != p).sum()) for p in pool) for q in queries]
    assert distance.tolist() == brute
    assert [int((q != pool[i]).sum()) for q, i in zip(queries, index)] == brute


def test_nearest_on_a_hand_made_set():
    """Three training codes; a copy of the second is at distance 0 from it, a code that
    changes one token of the third at distance 1, and features follow the same rows."""
    pool = np.array([[0, 0, 0, 0], [1, 2, 3, 0], [3, 3, 3, 3]])
    queries = np.array([[1, 2, 3, 0], [3, 3, 1, 3], [0, 0, 0, 1]])
    index, distance = nearest_hamming(queries, pool)
    assert index.tolist() == [1, 2, 0] and distance.tolist() == [0, 1, 1]
    pool_features = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    query_features = np.array([[9.0, 0.0], [3.0, 4.0], [0.0, 12.0]])
    index, distance = nearest_features(query_features, pool_features)
    assert index.tolist() == [1, 0, 2]
    np.testing.assert_allclose(distance, [1.0, 5.0, 2.0])


def test_chunking_gives_the_unchunked_answer(monkeypatch):
    rng = np.random.default_rng(1)
    queries, pool = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    whole = nearest_features(queries, pool)
    monkeypatch.setattr("dlc.metrics.novelty.CHUNK_ELEMENTS", 200)
    chunked = nearest_features(queries, pool)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_allclose(whole[1], chunked[1])
    codes, code_pool = rng.integers(0, 4, (40, 8)), rng.integers(0, 4, (30, 8))
    monkeypatch.setattr("dlc.metrics.novelty.CHUNK_ELEMENTS", 2 ** 26)
    whole = nearest_hamming(codes, code_pool)
    monkeypatch.setattr("dlc.metrics.novelty.CHUNK_ELEMENTS", 300)
    chunked = nearest_hamming(codes, code_pool)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])
