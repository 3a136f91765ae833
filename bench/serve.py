"""HTTP API (Ray Serve) vs the in-process engine: same model, same requests, one run.

    python bench/serve.py                       # embedding and rerank, concurrency 1, 4, 16
    python bench/serve.py --kind embedding --replicas 2 --concurrency 1 8 32

For each concurrency level, `c` clients send the same list of requests:
- in-process: `c` threads call the engine directly (`EmbeddingEngine.embed` /
  `RerankEngine.score`), the obvious way to serve a model from Python;
- HTTP: `c` asyncio clients POST /v1/embeddings or /v1/rerank to the Serve application
  (proxy -> ingress -> model replica), with --replicas replicas sharing the same torch threads.
It prints tokens/s, p50/p99 latency and the HTTP / in-process throughput ratio. The model is
a random-weight Qwen3 of --size (default "small", whose batches take well over 50 ms here).
"""

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._local_app import local_app  # noqa: E402
from bench._measure import Timing, percentile, run_threads  # noqa: E402
from bench._tokenizer import add_stand_in_option, benchmark_tokenizer, check_model_folder  # noqa: E402
from bench.engine import make_texts  # noqa: E402
from deployments.engine import EmbeddingEngine, RerankEngine  # noqa: E402
from deployments.engine.random_model import write_random_model  # noqa: E402


async def run_http(url: str, path: str, bodies: list[dict], concurrency: int) -> Timing:
    pending = list(reversed(bodies))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def worker() -> None:
            while pending:
                body = pending.pop()
                started = time.perf_counter()
                (await client.post(path, json=body)).raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["embedding", "rerank", "both"], default="both")
    parser.add_argument("--size", default="small", help="random Qwen3 size (tiny, small, 0.6B...)")
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--texts-per-request", type=int, default=8, help="texts (or documents) per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads in-process")
    parser.add_argument("--replicas", type=int, default=1, help="model replicas behind the HTTP API")
    add_stand_in_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    replica_threads = max(1, args.threads // args.replicas)

    tokenizer = benchmark_tokenizer(args)
    root = Path(tempfile.gettempdir()) / "qwen3-search-bench" / args.size
    folders = {"embedding": root / "embedding", "rerank": root / "reranker"}
    for kind, folder in folders.items():
        if not (folder / "config.json").is_file():
            write_random_model(folder, kind="embedding" if kind == "embedding" else "reranker", size=args.size,
                               tokenizer=tokenizer)
        check_model_folder(folder, args)  # a cached folder may predate the real tokenizer
    kinds = ["embedding", "rerank"] if args.kind == "both" else [args.kind]
    texts = make_texts(tokenizer, args.requests * args.texts_per_request, seed=3)
    chunks = [texts[i * args.texts_per_request:(i + 1) * args.texts_per_request] for i in range(args.requests)]
    bodies = {
        "embedding": [{"input": chunk} for chunk in chunks],
        "rerank": [{"query": f"question {i}: which genes drive the growth of cancer cells?", "documents": chunk}
                   for i, chunk in enumerate(chunks)],
    }
    print(f"qwen3-search serving benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"in-process: {args.threads} torch threads; HTTP: {args.replicas} replica(s) x {replica_threads} threads; "
          f"random Qwen3 {args.size!r}; {args.requests} requests x {args.texts_per_request} texts (16..512 tokens)")

    tokens: dict[str, int] = {}
    in_process: dict[tuple[str, int], Timing] = {}
    for kind in kinds:
        if kind == "embedding":
            embedder = EmbeddingEngine.load(str(folders[kind]))
            tokens[kind] = sum(embedder.count_tokens(texts))
            call: Callable[[dict], object] = lambda body, e=embedder: e.embed(body["input"])  # noqa: E731
        else:
            reranker = RerankEngine.load(str(folders[kind]))
            tokens[kind] = sum(sum(reranker.count_tokens(b["query"], b["documents"])) for b in bodies[kind])
            call = lambda body, r=reranker: r.score(body["query"], body["documents"])  # noqa: E731
        call(bodies[kind][0])  # warm-up
        for c in args.concurrency:
            in_process[kind, c] = run_threads(call, bodies[kind], c)

    replica = {"torch_threads": replica_threads,
               "deployment": {"num_replicas": args.replicas, "max_ongoing_requests": 64, "max_queued_requests": -1,
                              "ray_actor_options": {"num_cpus": 1}}}
    app_args = {
        "embedding_models": [{"model": str(folders["embedding"]), **replica}],
        "reranker_models": [{"model": str(folders["rerank"]), **replica}],
        "limits": {"max_inputs_per_request": 4096, "max_documents_per_request": 4096},
        "index": {"storage_path": tempfile.mkdtemp(prefix="qwen3-search-serve-bench-")},
    }
    with local_app(app_args, num_cpus=2 * args.replicas + 2) as url:
        for kind in kinds:
            path = "/v1/embeddings" if kind == "embedding" else "/v1/rerank"
            asyncio.run(run_http(url, path, bodies[kind][:2], 1))  # warm-up
            print(f"\n{'Embedding' if kind == 'embedding' else 'Reranking'} via {path}: {tokens[kind]:,} tokens "
                  "per level")
            print("| clients | in-process tok/s | p50 ms | p99 ms | HTTP tok/s | p50 ms | p99 ms | HTTP / in-process |")
            print("|--------:|-----------------:|-------:|-------:|-----------:|-------:|-------:|------------------:|")
            for c in args.concurrency:
                http_elapsed, http_latencies = asyncio.run(run_http(url, path, bodies[kind], c))
                local_elapsed, local_latencies = in_process[kind, c]
                local_rate, http_rate = tokens[kind] / local_elapsed, tokens[kind] / http_elapsed
                print(f"| {c:7d} | {local_rate:16,.0f} | {statistics.median(local_latencies) * 1000:6.0f} | "
                      f"{percentile(local_latencies, 0.99) * 1000:6.0f} | {http_rate:10,.0f} | "
                      f"{statistics.median(http_latencies) * 1000:6.0f} | "
                      f"{percentile(http_latencies, 0.99) * 1000:6.0f} | {http_rate / local_rate:17.2f} |", flush=True)


if __name__ == "__main__":
    main()
