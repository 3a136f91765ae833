"""Reciprocal rank fusion (deployments/index/fusion.py), checked against the formula by hand."""

import pytest

from deployments.index.base import Hit
from deployments.index.fusion import ranked, reciprocal_rank_fusion


def dense(*ids: str) -> list[Hit]:
    return [Hit(i, f"text {i}", None, 1.0 - n / 10) for n, i in enumerate(ids)]


def lexical(*ids: str) -> list[Hit]:
    return [Hit(i, f"text {i}", None, None, 20.0 - n) for n, i in enumerate(ids)]


def test_scores_are_the_sum_of_reciprocal_ranks():
    fused = reciprocal_rank_fusion({"dense": dense("a", "b", "c"), "lexical": lexical("c", "d")}, rrf_k=60)
    by_id = {h.id: h for h in fused}
    assert by_id["c"].fused_score == pytest.approx(1 / 63 + 1 / 61)
    assert by_id["a"].fused_score == pytest.approx(1 / 61)
    assert by_id["d"].fused_score == pytest.approx(1 / 62)
    assert [h.id for h in fused] == ["c", "a", "b", "d"]  # b and d tie at 1/62 (best rank 2 each): by id
    assert by_id["c"].retrievers == {"dense": 3, "lexical": 1}
    assert by_id["c"].embedding_score == pytest.approx(0.8) and by_id["c"].lexical_score == 20.0
    assert by_id["d"].embedding_score is None and by_id["a"].lexical_score is None


def test_weights_limit_and_k():
    lists = {"dense": dense("a", "b"), "lexical": lexical("b", "a")}
    assert [h.id for h in reciprocal_rank_fusion(lists, weights={"dense": 2.0, "lexical": 1.0})] == ["a", "b"]
    assert [h.id for h in reciprocal_rank_fusion(lists, weights={"dense": 1.0, "lexical": 2.0})] == ["b", "a"]
    only_lexical = reciprocal_rank_fusion(lists, weights={"dense": 0.0})
    assert [h.id for h in only_lexical] == ["b", "a"]
    assert len(reciprocal_rank_fusion({"dense": dense(*"abcdef")}, limit=3)) == 3
    small_k = reciprocal_rank_fusion({"dense": dense("a", "b")}, rrf_k=1)
    assert [h.fused_score for h in small_k] == pytest.approx([1 / 2, 1 / 3])
    with pytest.raises(ValueError):
        reciprocal_rank_fusion(lists, rrf_k=0)
    assert reciprocal_rank_fusion({"dense": [], "lexical": []}) == []


def test_a_single_retriever_keeps_its_order_and_scores():
    hits = ranked(lexical("x", "y"), "lexical")
    assert [(h.id, h.retrievers, h.retriever_score, h.fused_score) for h in hits] == [
        ("x", {"lexical": 1}, 20.0, None), ("y", {"lexical": 2}, 19.0, None)]
