"""Reciprocal rank fusion of the dense and lexical candidate lists (Cormack, Clarke & Buettcher, SIGIR 2009).

    fused(d) = sum over retrievers r that found d of  weight_r / (rrf_k + rank_r(d))      (ranks from 1)

Why ranks and not scores: cosine similarities and BM25 / ts_rank scores live on unrelated
scales (BM25 is unbounded and depends on the collection), so adding them needs a calibration that
changes per collection and per query; ranks need none. `rrf_k` (60 in the paper) damps the
difference between the first few ranks; a weight above 1 trusts a retriever more.

Plain functions over `Hit`s: no Ray, no storage, so they are tested and reused on their own.
"""

from dataclasses import dataclass, field
from typing import Any

from .base import Hit

__all__ = ["DEFAULT_RRF_K", "RETRIEVERS", "FusedHit", "reciprocal_rank_fusion", "ranked"]

DEFAULT_RRF_K = 60
RETRIEVERS = ("dense", "lexical")


@dataclass
class FusedHit:
    """A candidate with what each retriever said about it."""

    id: str
    text: str
    metadata: dict[str, Any] | None
    embedding_score: float | None = None
    lexical_score: float | None = None
    fused_score: float | None = None
    """The RRF score (hybrid), else None."""
    retrievers: dict[str, int] = field(default_factory=dict)
    """Retriever name -> the 1-based rank it gave this document."""

    @property
    def retriever_score(self) -> float:
        """The score the candidate list is ordered by: fused, else the one retriever's own."""
        for value in (self.fused_score, self.embedding_score, self.lexical_score):
            if value is not None:
                return value
        return 0.0


def ranked(hits: list[Hit], retriever: str) -> list[FusedHit]:
    """One retriever's list as candidates (ranks 1, 2, ...), for the modes that do not fuse."""
    return [FusedHit(h.id, h.text, h.metadata, h.embedding_score, h.lexical_score, None, {retriever: rank})
            for rank, h in enumerate(hits, start=1)]


def reciprocal_rank_fusion(lists: dict[str, list[Hit]], *, rrf_k: int = DEFAULT_RRF_K,
                           weights: dict[str, float] | None = None, limit: int | None = None) -> list[FusedHit]:
    """The union of the ranked lists ordered by fused score (ties: the better best rank, then id), cut at
    `limit`; each hit keeps its per-retriever ranks and both scores where known."""
    if rrf_k < 1:
        raise ValueError(f"rrf_k must be at least 1, not {rrf_k}")
    fused: dict[str, FusedHit] = {}
    for retriever, hits in lists.items():
        weight = 1.0 if weights is None else float(weights.get(retriever, 1.0))
        for rank, hit in enumerate(hits, start=1):
            entry = fused.get(hit.id)
            if entry is None:
                entry = fused[hit.id] = FusedHit(hit.id, hit.text, hit.metadata, fused_score=0.0)
            if hit.embedding_score is not None:
                entry.embedding_score = hit.embedding_score
            if hit.lexical_score is not None:
                entry.lexical_score = hit.lexical_score
            entry.retrievers[retriever] = rank
            entry.fused_score = (entry.fused_score or 0.0) + weight / (rrf_k + rank)
    order = sorted(fused.values(), key=lambda h: (-(h.fused_score or 0.0), min(h.retrievers.values()), h.id))
    return order if limit is None else order[:limit]
