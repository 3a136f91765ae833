"""Vector index benchmark: recall@10 against exact search, queries per second, build time, memory.

    python bench/index.py                                 # 100k vectors, every library
    python bench/index.py --sizes 1000000 --libraries exact qwen3-search

Random unit vectors of 1024 dimensions (Qwen3-Embedding-0.6B's width) and random unit
queries. Uniform noise has no cluster structure, the hardest case for graph indexes:
recall here is a floor, real embeddings do better. Rows:
- exact: numpy matrix product over float32 rows (what VectorSet does below its threshold);
- qwen3-search: VectorSet in HNSW mode (usearch, int8 graph, exact float32 re-scoring of
  2x over-fetched candidates);
- usearch-f32, usearch-i8, faiss-hnsw, hnswlib: the libraries alone, HNSW M=16,
  efConstruction=128.
Queries per second are measured one query at a time (how a search service calls it), and
"ef" is the search breadth (expansion_search / efSearch).
"""

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deployments.index.vectors import VectorSet, top_k  # noqa: E402

M, EF_CONSTRUCTION = 16, 128


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def unit_rows(n: int, d: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), d), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def clustered_unit_rows(n: int, d: int, seed: int, centres: int = 1000, spread: float = 0.5,
                        chunk: int = 100_000) -> np.ndarray:
    """Unit vectors scattered around `centres` random directions: cluster structure like real embeddings."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, d), dtype=np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        block = means[rng.integers(0, centres, size)] + spread * rng.standard_normal((size, d), dtype=np.float32) \
            / np.sqrt(d, dtype=np.float32)
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_truth(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    best = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 100):
        best[start : start + 100] = top_k(queries[start : start + 100] @ data.T, k)
    return best


class Candidate:
    """A library under test: build once, then search one query at a time with a breadth."""

    def __init__(self, name: str, build: Callable[[np.ndarray], object],
                 search: Callable[[object, np.ndarray, int, int], np.ndarray], efs: list[int | None]) -> None:
        self.name, self.build, self.search, self.efs = name, build, search, efs


def usearch_candidate(dtype: str) -> Candidate:
    def build(data: np.ndarray) -> object:
        from usearch.index import Index

        index = Index(ndim=data.shape[1], metric="cos", dtype=dtype, connectivity=M, expansion_add=EF_CONSTRUCTION)
        index.add(np.arange(len(data), dtype=np.uint64), data)
        return index

    def search(index: object, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        index.expansion_search = ef  # type: ignore[attr-defined]
        return np.asarray(index.search(query, k).keys)  # type: ignore[attr-defined]

    return Candidate(f"usearch-{dtype}", build, search, [64, 128, 256, 512])


def faiss_candidate() -> Candidate:
    def build(data: np.ndarray) -> object:
        import faiss

        index = faiss.IndexHNSWFlat(data.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.add(data)
        return index

    def search(index: object, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        index.hnsw.efSearch = ef  # type: ignore[attr-defined]
        return index.search(query[None], k)[1][0]  # type: ignore[attr-defined]

    return Candidate("faiss-hnsw", build, search, [64, 128, 256, 512])


def hnswlib_candidate() -> Candidate:
    def build(data: np.ndarray) -> object:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=data.shape[1])
        index.init_index(max_elements=len(data), ef_construction=EF_CONSTRUCTION, M=M)
        index.add_items(data, np.arange(len(data)))
        return index

    def search(index: object, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        index.set_ef(max(ef, k))  # type: ignore[attr-defined]
        return index.knn_query(query, k=k)[0][0]  # type: ignore[attr-defined]

    return Candidate("hnswlib", build, search, [64, 128, 256, 512])


def ours_candidate() -> Candidate:
    def build(data: np.ndarray) -> object:
        vectors = VectorSet(data.shape[1], index_type="hnsw", connectivity=M, expansion_add=EF_CONSTRUCTION)
        vectors.upsert(np.arange(len(data)), data)
        return vectors

    def search(index: object, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        index.expansion_search = ef  # type: ignore[attr-defined]
        return index.search(query[None], k)[0][0]  # type: ignore[attr-defined]

    return Candidate("qwen3-search", build, search, [64, 128, 256, 512])


def exact_candidate() -> Candidate:
    def build(data: np.ndarray) -> object:
        vectors = VectorSet(data.shape[1], index_type="exact")
        vectors.upsert(np.arange(len(data)), data)
        return vectors

    def search(index: object, query: np.ndarray, k: int, ef: int) -> np.ndarray:
        return index.search(query[None], k)[0][0]  # type: ignore[attr-defined]

    return Candidate("exact", build, search, [None])


CANDIDATES = {"exact": exact_candidate, "qwen3-search": ours_candidate, "usearch-f32": lambda: usearch_candidate("f32"),
              "usearch-i8": lambda: usearch_candidate("i8"), "faiss-hnsw": faiss_candidate,
              "hnswlib": hnswlib_candidate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=200, help="queries timed one at a time")
    parser.add_argument("--libraries", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--data", choices=["random", "clustered"], default="random",
                        help="uniform random unit vectors (the hardest case), or vectors around 1000 cluster centres")
    parser.add_argument("--efs", type=int, nargs="+", default=[64, 128, 256, 512], help="HNSW search breadths")
    args = parser.parse_args()
    print(f"qwen3-search index benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs; {args.data} "
          f"unit vectors, d={args.dim}, k=10, {args.queries} single queries; "
          f"HNSW M={M}, efConstruction={EF_CONSTRUCTION}")
    for n in args.sizes:
        if args.data == "random":
            data, queries = unit_rows(n, args.dim, seed=0), unit_rows(args.queries, args.dim, seed=1)
        else:  # the queries are fresh points around the same centres
            both = clustered_unit_rows(n + args.queries, args.dim, seed=0)
            data, queries = both[:n], both[n:]
        truth = exact_truth(data, queries, 10)
        print(f"\n{n:,} {args.data} vectors ({data.nbytes / 2**30:.2f} GiB of float32)")
        print("| index | build s | memory GiB | ef | recall@10 | queries/s | vs exact |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        exact_qps = None
        for name in args.libraries:
            candidate = CANDIDATES[name]()
            gc.collect()
            before = rss_bytes()
            started = time.perf_counter()
            index = candidate.build(data)
            build_s = time.perf_counter() - started
            memory = (rss_bytes() - before) / 2**30
            for ef in (candidate.efs if candidate.efs == [None] else args.efs):
                candidate.search(index, queries[0], 10, ef or 0)  # warm-up
                found = []
                started = time.perf_counter()
                for query in queries:
                    found.append(candidate.search(index, query, 10, ef or 0))
                qps = len(queries) / (time.perf_counter() - started)
                recall = float(np.mean([len(set(np.asarray(f).tolist()) & set(t.tolist())) / 10
                                        for f, t in zip(found, truth, strict=True)]))
                exact_qps = qps if name == "exact" else exact_qps
                ratio = f"{qps / exact_qps:.1f}x" if exact_qps else "-"
                print(f"| {name} | {build_s:.1f} | {memory:.2f} | {ef or '-'} | {recall:.3f} | {qps:,.0f} | {ratio} |",
                      flush=True)
            del index
            gc.collect()


if __name__ == "__main__":
    main()
