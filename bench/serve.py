"""HTTP API (Ray Serve) vs the in-process engine: same model, same requests, one run.

    python bench/serve.py                       # embedding and rerank, concurrency 1, 4, 16
    python bench/serve.py --kind embedding --concurrency 1 8 32 --requests 128

For each concurrency level, `c` clients send the same list of requests:
- in-process: `c` threads call the engine directly (`EmbeddingEngine.embed` /
  `RerankEngine.score`), the obvious way to serve a model from Python;
- HTTP: `c` asyncio clients POST to /v1/embeddings or /v1/rerank of the Serve app, one
  model replica with the same torch threads.
It prints tokens/s, p50/p99 latency and the HTTP / in-process throughput ratio. The model is
a random-weight Qwen3 of --size (default "small", whose batches take well over 50 ms here).
"""

import argparse
import asyncio
import os
import platform
import queue
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import httpx  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.engine import make_texts  # noqa: E402
from deployments.engine import EmbeddingEngine, RerankEngine  # noqa: E402
from deployments.engine.random_model import load_qwen3_tokenizer, write_random_model  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_threads(call: Callable[[object], None], requests: list[object], concurrency: int) -> tuple[float, list[float]]:
    pending: queue.Queue = queue.Queue()
    for request in requests:
        pending.put(request)
    latencies: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                request = pending.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            call(request)
            with lock:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


async def run_http(url: str, path: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float]]:
    pending = list(reversed(bodies))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def worker() -> None:
            while pending:
                body = pending.pop()
                started = time.perf_counter()
                response = await client.post(path, json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["embedding", "rerank", "both"], default="both")
    parser.add_argument("--size", default="small", help="random Qwen3 size (tiny, small, 0.6B...)")
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--texts-per-request", type=int, default=8, help="texts (or documents) per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads in-process")
    parser.add_argument("--replicas", type=int, default=1, help="model replicas behind the HTTP API")
    parser.add_argument("--replica-threads", type=int, default=None,
                        help="torch threads per replica (default: --threads divided among the replicas)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = load_qwen3_tokenizer()
    root = Path(tempfile.gettempdir()) / "qwen3-search-bench" / args.size
    kinds = ["embedding", "rerank"] if args.kind == "both" else [args.kind]
    folders = {"embedding": root / "embedding", "rerank": root / "reranker"}
    for kind, folder in folders.items():
        if not (folder / "config.json").is_file():
            write_random_model(folder, kind="embedding" if kind == "embedding" else "reranker", size=args.size,
                               tokenizer=tokenizer)

    rng = random.Random(0)
    texts = make_texts(tokenizer, args.requests * args.texts_per_request, seed=3)
    chunks = [texts[i * args.texts_per_request:(i + 1) * args.texts_per_request] for i in range(args.requests)]
    queries = [f"question {rng.randint(0, 10**6)} about genes and cancer cells?" for _ in chunks]

    print(f"qwen3-search serving benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"in-process torch threads {args.threads}, HTTP: {args.replicas} replica(s) x "
          f"{args.replica_threads or max(1, args.threads // args.replicas)} threads, random Qwen3 {args.size!r}, "
          f"{args.requests} requests x "
          f"{args.texts_per_request} texts (16..512 tokens) per level")
    in_process: dict[tuple[str, int], tuple[float, list[float]]] = {}
    tokens: dict[str, int] = {}
    for kind in kinds:
        if kind == "embedding":
            engine = EmbeddingEngine.load(str(folders[kind]))
            tokens[kind] = sum(engine.count_tokens(texts))
            engine.embed(texts[:4])
            call: Callable[[object], None] = lambda c: engine.embed(c)  # noqa: E731
            requests: list[object] = chunks
        else:
            reranker = RerankEngine.load(str(folders[kind]))
            tokens[kind] = sum(sum(reranker.count_tokens(q, c)) for q, c in zip(queries, chunks, strict=True))
            reranker.score("warm up", texts[:2])
            call = lambda qc: reranker.score(*qc)  # noqa: E731
            requests = list(zip(queries, chunks, strict=True))
        for c in args.concurrency:
            in_process[kind, c] = run_threads(call, requests, c)

    import ray
    from ray import serve

    from deployments.app import build_app

    port = free_port()
    # Logical CPUs: one per replica of each model, plus room for the ingress.
    ray.init(num_cpus=2 * args.replicas + 1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    replica = {"num_replicas": args.replicas, "max_ongoing_requests": 64, "max_queued_requests": -1,
               "ray_actor_options": {"num_cpus": 1}}
    replica_threads = args.replica_threads or max(1, args.threads // args.replicas)
    model_args = {"torch_threads": replica_threads, "deployment": replica}
    serve.run(build_app({
        "embedding_models": [{"model": str(folders["embedding"]), **model_args}],
        "reranker_models": [{"model": str(folders["rerank"]), **model_args}],
        "limits": {"max_inputs_per_request": 4096, "max_documents_per_request": 4096},
    }), name="bench", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    for kind in kinds:
        path = "/v1/embeddings" if kind == "embedding" else "/v1/rerank"
        bodies = ([{"input": c} for c in chunks] if kind == "embedding"
                  else [{"query": q, "documents": c} for q, c in zip(queries, chunks, strict=True)])
        asyncio.run(run_http(url, path, bodies[:2], 1))  # warm-up
        print(f"\n{'Embedding' if kind == 'embedding' else 'Reranking'} via {path}: {tokens[kind]:,} tokens per level")
        print("| clients | in-process tok/s | p50 ms | p99 ms | HTTP tok/s | p50 ms | p99 ms | HTTP / in-process |")
        print("|--------:|-----------------:|-------:|-------:|-----------:|-------:|-------:|------------------:|")
        for c in args.concurrency:
            http_elapsed, http_latencies = asyncio.run(run_http(url, path, bodies, c))
            local_elapsed, local_latencies = in_process[kind, c]
            local_rate, http_rate = tokens[kind] / local_elapsed, tokens[kind] / http_elapsed
            print(f"| {c:7d} | {local_rate:16,.0f} | {statistics.median(local_latencies) * 1000:6.0f} | "
                  f"{percentile(local_latencies, 0.99) * 1000:6.0f} | {http_rate:10,.0f} | "
                  f"{statistics.median(http_latencies) * 1000:6.0f} | {percentile(http_latencies, 0.99) * 1000:6.0f} | "
                  f"{http_rate / local_rate:17.2f} |")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
