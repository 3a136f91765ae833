"""VectorSet: exact search, HNSW with exact re-scoring, deletes, updates, filtered search."""

import numpy as np
import pytest

from deployments.index import VectorSet


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    """Vectors around 50 centres: structured like real embeddings, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, d))
    return unit(centres[rng.integers(0, 50, n)] + 0.6 * rng.standard_normal((n, d)))


def brute_force(data: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    scores = queries @ data.T
    return [labels[np.argsort(-row, kind="stable")[:k]].tolist() for row in scores]


def test_exact_search_equals_brute_force_with_scores():
    data, labels = clustered(500, 32, 0), np.arange(100, 600)
    queries = clustered(20, 32, 1)
    vectors = VectorSet(32, index_type="exact")
    vectors.upsert(labels, data)
    results = vectors.search(queries, 10)
    assert [r[0].tolist() for r in results] == brute_force(data, labels, queries, 10)
    for (found, scores), query in zip(results, queries, strict=True):
        np.testing.assert_allclose(scores, data[found - 100] @ query, rtol=1e-5)
        assert list(scores) == sorted(scores, reverse=True)


def test_hnsw_recall_and_exact_scores():
    data, labels = clustered(5000, 64, 2), np.arange(5000)
    queries = clustered(100, 64, 3)
    vectors = VectorSet(64, index_type="hnsw")
    vectors.upsert(labels, data)
    assert vectors.uses_hnsw
    truth = brute_force(data, labels, queries, 10)
    results = vectors.search(queries, 10)
    recall = np.mean([len(set(r[0].tolist()) & set(t)) / 10 for r, t in zip(results, truth, strict=True)])
    assert recall >= 0.95
    for (found, scores), query in zip(results, queries, strict=True):  # scores are exact float32, not i8
        np.testing.assert_allclose(scores, data[found] @ query, rtol=1e-5)
    exact = vectors.search(queries, 10, exact=True)
    assert [r[0].tolist() for r in exact] == truth


@pytest.mark.parametrize("index_type", ["exact", "hnsw"])
def test_deletes_and_updates_apply_at_once(index_type):
    data = clustered(300, 16, 4)
    vectors = VectorSet(16, index_type=index_type)
    vectors.upsert(np.arange(300), data)
    target = data[7]
    assert vectors.search(target[None], 1)[0][0].tolist() == [7]
    vectors.remove([7, 7, 12345])
    assert len(vectors) == 299
    for labels, _ in vectors.search(np.stack([target, data[299]]), 300):
        assert 7 not in labels.tolist()
    moved = unit(-data[3:4])  # label 3 now points the other way
    vectors.upsert(np.array([3]), moved)
    assert len(vectors) == 299
    assert vectors.search(moved, 1)[0][0].tolist() == [3]
    assert 3 not in vectors.search(data[3:4], 5)[0][0].tolist()


def test_auto_switches_to_hnsw_at_the_threshold():
    vectors = VectorSet(16, index_type="auto", hnsw_threshold=100)
    vectors.upsert(np.arange(99), clustered(99, 16, 5))
    assert not vectors.uses_hnsw
    vectors.upsert(np.array([99]), clustered(1, 16, 6))
    assert vectors.uses_hnsw and len(vectors) == 100


@pytest.mark.parametrize("allowed_count", [30, 3000])
def test_filtered_search_returns_only_allowed_and_the_true_best(allowed_count):
    data = clustered(6000, 32, 7)
    vectors = VectorSet(32, index_type="hnsw", hnsw_threshold=1000)
    vectors.upsert(np.arange(6000), data)
    rng = np.random.default_rng(8)
    allowed = set(rng.choice(6000, allowed_count, replace=False).tolist())
    queries = clustered(20, 32, 9)
    allowed_sorted = np.array(sorted(allowed))
    truth = brute_force(data[allowed_sorted], allowed_sorted, queries, 10)
    results = vectors.search(queries, 10, allowed=allowed)
    hits = 0
    for (labels, _), expected in zip(results, truth, strict=True):
        assert len(labels) == 10 and set(labels.tolist()) <= allowed
        hits += len(set(labels.tolist()) & set(expected))
    assert hits / (10 * len(queries)) >= (1.0 if allowed_count <= 1000 else 0.9)
    assert vectors.search(queries[:1], 5, allowed=set())[0][0].tolist() == []
