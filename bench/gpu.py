"""GPU measurements for the 0.6B models: throughput, MFU and HTTP latency, in minutes.

    bash bench/gpu.sh                 # writes the random 0.6B models, then runs this (< 8 min on one H200)
    python bench/gpu.py --models DIR  # DIR/embedding and DIR/reranker: random-weight Qwen3 0.6B folders

Random weights with the real shapes of Qwen3-Embedding-0.6B / Qwen3-Reranker-0.6B, bf16.
Workload: texts of 16..512 Qwen3 tokens (uniform), cut from SciFact abstracts when
`../shared/datasets/scifact` (or `./shared/...`) is there, generated words otherwise.
Sections, each skipped with a message when its requirements are missing:
1. torch backend: embedding tokens/s, reranking pairs/s (one query x --documents documents,
   the shape of a rerank request), MFU against --peak-tflops (H200 dense bf16: 990);
2. the same rows through the vLLM backend, when `import vllm` works;
3. p50/p99 latency through HTTP (the real Serve application on a local Ray) at a few
   concurrencies, per backend, when Ray is installed (a section that would start after
   --budget-s is skipped, so the whole run fits bench/gpu.sh's 8 minutes).

MFU counts the FLOPs of each prompt's full forward pass (2 x linear parameters x tokens, plus
causal attention), i.e. the work the model card's code would do; the reranker's shared-prefix
cache does less than that, so its "MFU" is model-card-equivalent throughput.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.engine as engine_bench  # noqa: E402
from bench._measure import percentile  # noqa: E402
from deployments.engine.model_files import read_config  # noqa: E402

H200_DENSE_BF16_TFLOPS = 990.0
QUERY = "Which genes are linked to the growth of cancer cells?"


def find_scifact() -> Path | None:
    for shared in (ROOT.parent / "shared", ROOT / "shared"):
        corpus = shared / "datasets" / "scifact" / "corpus.jsonl"
        if corpus.is_file():
            return corpus
    return None


def forward_flops(config: dict[str, Any], lengths: list[int]) -> float:
    """FLOPs of one forward pass over each sequence (no padding, causal attention)."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    q_dim = config["num_attention_heads"] * config.get("head_dim", hidden // config["num_attention_heads"])
    kv_dim = config["num_key_value_heads"] * config.get("head_dim", hidden // config["num_attention_heads"])
    linear = layers * (hidden * (q_dim + 2 * kv_dim) + q_dim * hidden + 3 * hidden * config["intermediate_size"])
    total = 0.0
    for n in lengths:
        total += 2.0 * linear * n  # matmuls: multiply + add per weight per token
        total += 2.0 * layers * q_dim * n * (n + 1)  # QK^T and AV over the causal triangle
    return total


def best_of(call, runs: int) -> float:
    """Fastest of `runs` timed calls (after the caller's warm-up): the least disturbed run."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def throughput_rows(backend: str, models: Path, texts: list[str], documents: list[list[str]], args, peak: float
                    ) -> list[dict[str, Any]]:
    from deployments.engine import EmbeddingEngine, RerankEngine

    # Eager by default: torch.compile and CUDA-graph capture add minutes to each start, which the
    # 8-minute budget cannot hold; --vllm-compile measures the compiled engine.
    extra = ({"vllm": {"gpu_memory_utilization": 0.45, "enforce_eager": not args.vllm_compile}}
             if backend == "vllm" else None)
    rows: list[dict[str, Any]] = []
    embedder = EmbeddingEngine.load(str(models / "embedding"), backend=backend, dtype="bfloat16",
                                    max_length=args.max_length, backend_options=extra)
    try:
        config = read_config(models / "embedding")
        lengths = [len(ids) for ids in embedder.tokenize(texts)]
        embedder.embed(texts[:64])  # warm-up: kernels, allocator
        seconds = best_of(lambda: (embedder.embed(texts), synchronize()), args.runs)
        flops = forward_flops(config, lengths)
        rows.append({"backend": backend, "task": "embed", "items": len(texts), "tokens": sum(lengths),
                     "seconds": seconds, "items_per_s": len(texts) / seconds, "tokens_per_s": sum(lengths) / seconds,
                     "mfu": flops / seconds / (peak * 1e12), "max_batch_tokens": embedder.max_batch_tokens})
    finally:
        embedder.shutdown()
    reranker = RerankEngine.load(str(models / "reranker"), backend=backend, dtype="bfloat16",
                                 max_length=args.max_length, backend_options=extra)
    try:
        config = read_config(models / "reranker")
        queries = [f"{QUERY} ({i})" for i in range(len(documents))]
        lengths = [n for q, docs in zip(queries, documents, strict=True) for n in reranker.count_tokens(q, docs)]
        reranker.score(QUERY, documents[0][:8])

        def score_all() -> None:
            for query, docs in zip(queries, documents, strict=True):
                reranker.score(query, docs)
            synchronize()

        seconds = best_of(score_all, args.runs)
        pairs = sum(len(d) for d in documents)
        flops = forward_flops(config, lengths)
        rows.append({"backend": backend, "task": f"rerank (1 query x {len(documents[0])} docs)", "items": pairs,
                     "tokens": sum(lengths), "seconds": seconds, "items_per_s": pairs / seconds,
                     "tokens_per_s": sum(lengths) / seconds, "mfu": flops / seconds / (peak * 1e12),
                     "max_batch_tokens": reranker.max_batch_tokens})
    finally:
        reranker.shutdown()
    return rows


async def http_run(url: str, path: str, bodies: list[dict], concurrency: int) -> tuple[float, list[float]]:
    import httpx

    pending = list(reversed(bodies))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        async def worker() -> None:
            while pending:
                body = pending.pop()
                started = time.perf_counter()
                (await client.post(path, json=body)).raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def http_rows(backend: str, models: Path, texts: list[str], args) -> list[dict[str, Any]]:
    from bench._local_app import local_app

    gpu_half = {"ray_actor_options": {"num_cpus": 1, "num_gpus": 0.5}, "max_ongoing_requests": 256,
                "max_queued_requests": -1}
    entry = {"backend": backend, "dtype": "bfloat16", "max_length": args.max_length, "deployment": gpu_half}
    app_args = {
        "embedding_models": [{"model": str(models / "embedding"), **entry}],
        "reranker_models": [{"model": str(models / "reranker"), **entry}],
        "limits": {"max_inputs_per_request": 4096, "max_documents_per_request": 4096},
        "index": {"storage_path": tempfile.mkdtemp(prefix="qwen3-search-gpu-bench-")},
    }
    per = args.http_texts_per_request
    chunks = [texts[i:i + per] for i in range(0, len(texts) - per + 1, per)]
    bodies = {
        "/v1/embeddings": [{"input": chunk} for chunk in chunks],
        "/v1/rerank": [{"query": f"{QUERY} ({i})", "documents": chunk} for i, chunk in enumerate(chunks)],
    }
    rows = []
    with local_app(app_args, num_cpus=max(4, (os.cpu_count() or 4) - 2)) as url:
        for path, all_bodies in bodies.items():
            asyncio.run(http_run(url, path, all_bodies[:4], 2))  # warm-up
            for concurrency in args.concurrency:
                requests = all_bodies[: max(args.http_requests, 4 * concurrency)]
                elapsed, latencies = asyncio.run(http_run(url, path, requests, concurrency))
                rows.append({"backend": backend, "route": path, "concurrency": concurrency, "requests": len(requests),
                             "requests_per_s": len(requests) / elapsed,
                             "p50_ms": statistics.median(latencies) * 1000,
                             "p99_ms": percentile(latencies, 0.99) * 1000})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="folder with embedding/ and reranker/")
    parser.add_argument("--texts", type=int, default=4096, help="texts in the embedding workload")
    parser.add_argument("--queries", type=int, default=16, help="rerank requests in the rerank workload")
    parser.add_argument("--documents", type=int, default=64, help="documents per rerank request")
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row (the fastest is kept)")
    parser.add_argument("--peak-tflops", type=float, default=H200_DENSE_BF16_TFLOPS)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--http-requests", type=int, default=64, help="requests per concurrency level (at least 4c)")
    parser.add_argument("--http-texts-per-request", type=int, default=16)
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "vllm", "http"])
    parser.add_argument("--json", type=Path, help="also write every row here")
    parser.add_argument("--vllm-compile", action="store_true", help="vLLM with torch.compile and CUDA graphs")
    parser.add_argument("--budget-s", type=float, default=330,
                        help="start no HTTP section after this many seconds (bench/gpu.sh allows ~470 in all)")
    args = parser.parse_args()
    began = time.perf_counter()

    import torch

    from deployments.engine.random_model import load_qwen3_tokenizer

    corpus = find_scifact()
    if corpus is not None:
        engine_bench.SCIFACT = corpus
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        import vllm

        vllm_version: str | None = vllm.__version__
    except Exception as exc:  # not installed, or a build that does not load here
        vllm_version, vllm_error = None, f"{type(exc).__name__}: {exc}"
    print(f"qwen3-search GPU benchmark, {date.today()}, {gpu}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, vllm {vllm_version or 'absent'}; peak {args.peak_tflops:.0f} TFLOP/s bf16")
    tokenizer = load_qwen3_tokenizer()
    texts = engine_bench.make_texts(tokenizer, args.texts, seed=1)
    pool = engine_bench.make_texts(tokenizer, args.queries * args.documents, seed=2)
    documents = [pool[i * args.documents:(i + 1) * args.documents] for i in range(args.queries)]
    print(f"workload: {'SciFact abstracts' if corpus else 'generated words'}, 16..512 tokens per text; "
          f"{args.texts} texts to embed; {args.queries} rerank requests x {args.documents} documents", flush=True)

    results: dict[str, Any] = {"date": str(date.today()), "gpu": gpu, "torch": torch.__version__,
                               "vllm": vllm_version, "throughput": [], "http": []}
    for backend in ("torch", "vllm"):
        if backend in args.skip:
            continue
        if backend == "vllm" and vllm_version is None:
            print(f"\nvLLM rows skipped: import vllm failed ({vllm_error}); install the `gpu` extra", flush=True)
            continue
        started = time.perf_counter()
        results["throughput"] += throughput_rows(backend, args.models, texts, documents, args, args.peak_tflops)
        print(f"({backend} rows took {time.perf_counter() - started:.0f} s)", flush=True)
    if results["throughput"]:
        print("\n| backend | task | items | tokens | seconds | items/s | tokens/s | MFU | tokens/step |")
        print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
        for r in results["throughput"]:
            print(f"| {r['backend']} | {r['task']} | {r['items']} | {r['tokens']:,} | {r['seconds']:.2f} | "
                  f"{r['items_per_s']:,.0f} | {r['tokens_per_s']:,.0f} | {r['mfu']:.1%} | {r['max_batch_tokens']} |",
                  flush=True)

    if "http" not in args.skip:
        try:
            import ray  # noqa: F401
            from ray import serve  # noqa: F401
        except ImportError as exc:
            print(f"\nHTTP latency skipped: Ray Serve is not installed here ({exc})")
        else:
            for backend in ("torch", "vllm"):
                if backend in args.skip or (backend == "vllm" and vllm_version is None):
                    continue
                if time.perf_counter() - began > args.budget_s:
                    print(f"\nHTTP rows for {backend} skipped: past the {args.budget_s:.0f} s budget")
                    continue
                try:
                    results["http"] += http_rows(backend, args.models, texts, args)
                except ImportError as exc:  # Ray is there, the app's other dependencies are not
                    print(f"\nHTTP latency skipped: the Serve application cannot be imported here ({exc})")
                    break
        if results["http"]:
            print(f"\nHTTP through Ray Serve (bf16, each model on 0.5 GPU), "
                  f"{args.http_texts_per_request} texts or documents per request")
            print("| backend | route | clients | requests | requests/s | p50 ms | p99 ms |")
            print("|---|---|--:|--:|--:|--:|--:|")
            for r in results["http"]:
                print(f"| {r['backend']} | {r['route']} | {r['concurrency']} | {r['requests']} | "
                      f"{r['requests_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":  # vLLM's engine process is spawned: this guard is required
    main()
