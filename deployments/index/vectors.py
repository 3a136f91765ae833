"""VectorSet: the in-memory search structure of one collection on one shard.

Every vector lives in a dense float32 matrix (exact search is one matrix product and is
the fastest choice for small collections). Above a size threshold an HNSW graph (usearch,
8-bit quantised: a quarter of the memory of float32, and the fastest build we measured in
bench/index.py) proposes candidates, which are re-scored exactly against the float32 rows,
so quantisation never changes a returned score. Updates and deletes apply to both at once.
Not thread-safe: the shard serialises access.
"""

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

__all__ = ["IndexType", "VectorSet", "top_k"]

IndexType = Literal["auto", "exact", "hnsw"]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest scores of each row, best first."""
    if scores.shape[1] <= k:
        order = np.argsort(-scores, axis=1, kind="stable")
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.take_along_axis(part, np.argsort(-part_scores, axis=1, kind="stable"), axis=1)
    return order[:, :k]


class VectorSet:
    """Labels -> unit vectors, searchable by inner product."""

    def __init__(
        self,
        dimensions: int,
        *,
        index_type: IndexType = "auto",
        hnsw_threshold: int = 20000,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 128,
        oversample: float = 2.0,
    ) -> None:
        self.dimensions = dimensions
        self.index_type = index_type
        self.hnsw_threshold = hnsw_threshold
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self.oversample = oversample
        self._matrix = np.empty((0, dimensions), dtype=np.float32)
        self._labels = np.empty(0, dtype=np.int64)
        self._count = 0
        self._row: dict[int, int] = {}
        self._hnsw: Any = None

    def __len__(self) -> int:
        return self._count

    @property
    def uses_hnsw(self) -> bool:
        return self._hnsw is not None

    # ----- writes -----
    def upsert(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(labels), self.dimensions)
        if len(np.unique(labels)) != len(labels):  # the last vector of a label wins (HNSW refuses repeats)
            _, last_from_end = np.unique(labels[::-1], return_index=True)
            keep = np.sort(len(labels) - 1 - last_from_end)
            labels, vectors = labels[keep], vectors[keep]
        replaced = [int(label) for label in labels if int(label) in self._row]
        self._reserve(self._count + len(labels))
        for label, vector in zip(labels.tolist(), vectors, strict=True):
            row = self._row.get(label)
            if row is None:
                row = self._count
                self._row[label] = row
                self._labels[row] = label
                self._count += 1
            self._matrix[row] = vector
        if self._hnsw is not None:
            if replaced:
                self._hnsw.remove(np.asarray(replaced, dtype=np.uint64))
            self._hnsw.add(labels.astype(np.uint64), vectors)
        elif self._wants_hnsw():
            self._build_hnsw()

    def remove(self, labels: Iterable[int]) -> None:
        gone = []
        for label in labels:
            row = self._row.pop(int(label), None)
            if row is None:
                continue
            gone.append(int(label))
            last = self._count - 1
            if row != last:  # keep the matrix dense: move the last row into the hole
                moved = int(self._labels[last])
                self._matrix[row] = self._matrix[last]
                self._labels[row] = moved
                self._row[moved] = row
            self._count -= 1
        if gone and self._hnsw is not None:
            self._hnsw.remove(np.asarray(gone, dtype=np.uint64))

    def _reserve(self, needed: int) -> None:
        if needed <= len(self._labels):
            return
        capacity = max(needed, 2 * len(self._labels), 1024)
        matrix = np.empty((capacity, self.dimensions), dtype=np.float32)
        matrix[: self._count] = self._matrix[: self._count]
        labels = np.empty(capacity, dtype=np.int64)
        labels[: self._count] = self._labels[: self._count]
        self._matrix, self._labels = matrix, labels

    def _wants_hnsw(self) -> bool:
        return self.index_type == "hnsw" or (self.index_type == "auto" and self._count >= self.hnsw_threshold)

    def _build_hnsw(self) -> None:
        from usearch.index import Index

        index = Index(ndim=self.dimensions, metric="cos", dtype="i8", connectivity=self.connectivity,
                      expansion_add=self.expansion_add, expansion_search=self.expansion_search)
        if self._count:
            index.add(self._labels[: self._count].astype(np.uint64), self._matrix[: self._count])
        self._hnsw = index

    # ----- reads -----
    def search(self, queries: np.ndarray, k: int, *, allowed: set[int] | None = None, exact: bool = False
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(labels, scores) of the k best documents for each query, best first."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dimensions)
        if self._count == 0 or k < 1:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in queries]
        if allowed is not None:
            return self._search_allowed(queries, k, allowed, exact)
        if self._hnsw is None or exact:
            return self._exact(queries, k, rows=None)
        return self._approximate(queries, k, candidates=max(int(k * self.oversample), k + 16), allowed=None)

    def _exact(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        matrix = self._matrix[: self._count] if rows is None else self._matrix[rows]
        labels = self._labels[: self._count] if rows is None else self._labels[rows]
        scores = queries @ matrix.T
        best = top_k(scores, k)
        return [(labels[b], scores[i, b]) for i, b in enumerate(best)]

    def _search_allowed(self, queries: np.ndarray, k: int, allowed: set[int], exact: bool
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
        rows = np.fromiter((self._row[label] for label in allowed if label in self._row), dtype=np.int64)
        if len(rows) == 0:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in queries]
        # A selective filter is answered exactly over the matching rows: perfect recall, and
        # cheap because the rows are few. A broad one uses the graph with enough over-fetch.
        if self._hnsw is None or exact or len(rows) <= self.hnsw_threshold:
            return self._exact(queries, k, rows=np.sort(rows))
        selectivity = len(rows) / self._count
        candidates = min(self._count, int(max(k * self.oversample, k + 16) / selectivity) + 1)
        results = self._approximate(queries, k, candidates=candidates, allowed=allowed)
        if any(len(labels) < min(k, len(rows)) for labels, _ in results):
            return self._exact(queries, k, rows=np.sort(rows))
        return results

    def _approximate(self, queries: np.ndarray, k: int, *, candidates: int, allowed: set[int] | None
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        assert self._hnsw is not None
        candidates = min(candidates, self._count)
        self._hnsw.expansion_search = max(self.expansion_search, candidates)
        matches = self._hnsw.search(queries, candidates)
        if hasattr(matches, "counts"):  # BatchMatches
            keys, counts = np.atleast_2d(matches.keys), np.atleast_1d(matches.counts)
        else:  # usearch answers a single query with Matches
            keys, counts = np.atleast_2d(matches.keys), np.array([len(matches.keys)])
        out = []
        for i, query in enumerate(queries):
            found = [int(key) for key in keys[i, : int(counts[i])]]
            if allowed is not None:
                found = [key for key in found if key in allowed]
            rows = np.fromiter((self._row[key] for key in found if key in self._row), dtype=np.int64)
            scores = self._matrix[rows] @ query  # exact float32 re-scoring of the candidates
            order = np.argsort(-scores, kind="stable")[:k]
            out.append((self._labels[rows[order]], scores[order]))
        return out
