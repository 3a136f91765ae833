"""The vLLM backend beside the torch backend: same model, same texts, same engine code.

    python bench/backends.py                      # ~5 minutes on 2 CPU cores (vLLM's CPU build)
    python bench/backends.py --qwen-size 0.6B --device cuda    # on a GPU, with the `gpu` extra

Both backends sit behind the same EmbeddingEngine / RerankEngine (prompts, tokenisation,
truncation are ours either way), each at its own defaults for batching. Rows:
- embedding one batch of --texts texts (16..512 tokens, SciFact abstracts when
  ../shared/datasets/scifact is present) and one short text alone (latency);
- reranking one query with --documents documents, and one document alone;
- --concurrency requests of 8 texts at once through `pool_async`: vLLM batches them
  continuously; the torch backend runs them one after another (in a Serve replica its
  token-budget batcher would merge them first).
The ratio is torch seconds / vLLM seconds (above 1: vLLM is faster). Outputs are checked
equal between the backends (cosine, |score difference|). Each timing is the median of
--repeats runs after a warm-up, each run on texts not seen before (vLLM's prefix cache would
otherwise answer repeats from memory). On CPU vLLM proves correctness, not speed: its kernels are
built for GPUs.
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._measure import cpu_model  # noqa: E402
from bench.engine import make_texts, source_words  # noqa: E402
from deployments.engine import EmbeddingEngine, RerankEngine  # noqa: E402
from deployments.engine.random_model import load_qwen3_tokenizer, write_random_model  # noqa: E402

T = TypeVar("T")

QUERY = "Which genes are linked to the growth of cancer cells?"


def print_table(title: str, rows: list[tuple[str, str, float, float]]) -> None:
    print(f"\n{title}")
    print(f"| {'workload':<44} | {'size':>14} | {'torch s':>8} | {'vLLM s':>8} | {'torch/vLLM':>10} |")
    print(f"|{'-' * 46}|{'-' * 16}|{'-' * 10}|{'-' * 10}|{'-' * 12}|")
    for name, size, t_torch, t_vllm in rows:
        print(f"| {name:<44} | {size:>14} | {t_torch:8.3f} | {t_vllm:8.3f} | {t_torch / t_vllm:9.2f}x |")


def concurrent_pool(engine: EmbeddingEngine, requests: list[list[list[int]]]) -> None:
    async def run() -> None:
        await asyncio.gather(*(engine.backend.pool_async(ids) for ids in requests))

    asyncio.run(run())


def median_seconds(call: Callable[[T], object], workloads: list[T]) -> tuple[float, object]:
    """Median seconds of `call` over distinct workloads (the first is the warm-up), and the
    result of the second: vLLM's prefix cache remembers a prompt it has seen, so a repeat of
    the same texts would time cache hits."""
    call(workloads[0])
    times, first = [], None
    for i, workload in enumerate(workloads[1:]):
        started = time.perf_counter()
        result = call(workload)
        times.append(time.perf_counter() - started)
        if i == 0:
            first = result
    return statistics.median(times), first


def measure_embedding(backend: str, folder: str, work: dict[str, list], args: argparse.Namespace
                      ) -> tuple[dict[str, float], np.ndarray, str]:
    engine = EmbeddingEngine.load(folder, backend=backend, device=args.device, dtype=args.dtype,
                                  max_length=args.max_length, threads=args.threads)
    try:
        times: dict[str, float] = {}
        times["batch"], vectors = median_seconds(engine.embed, work["batches"])
        times["alone"], _ = median_seconds(engine.embed, work["singles"])
        requests = [[engine.tokenize(chunk) for chunk in group] for group in work["concurrent"]]
        times["concurrent"], _ = median_seconds(lambda group: concurrent_pool(engine, group), requests)
        settings = f"{backend}: {engine.backend.dtype}, {engine.max_batch_tokens} tokens/step"
        return times, np.asarray(vectors), settings
    finally:
        engine.shutdown()


def measure_rerank(backend: str, folder: str, work: dict[str, list], args: argparse.Namespace
                   ) -> tuple[dict[str, float], np.ndarray]:
    engine = RerankEngine.load(folder, backend=backend, device=args.device, dtype=args.dtype,
                               max_length=args.max_length, threads=args.threads)
    try:
        times: dict[str, float] = {}
        times["batch"], scores = median_seconds(lambda qd: engine.score(*qd), work["rerank"])
        times["alone"], _ = median_seconds(lambda qd: engine.score(*qd), work["rerank_single"])
        return times, np.asarray(scores)
    finally:
        engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qwen-size", default="small", help="random Qwen3 size (head_dim >= 32): small, 0.6B, ...")
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--documents", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent 8-text requests")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="CPU threads for both backends (torch.set_num_threads; OMP_NUM_THREADS for vLLM's engine)")
    args = parser.parse_args()

    import torch
    import vllm

    tokenizer = load_qwen3_tokenizer()
    _, source = source_words()
    print(f"qwen3-search backends benchmark, {date.today()}, {cpu_model()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, vllm {vllm.__version__}, device {args.device}, "
          f"dtype {args.dtype}, threads {args.threads}")
    print(f"workload: {source}, 16..512 Qwen3 tokens per text, shuffled; random Qwen3 size {args.qwen_size!r}")
    root = Path(tempfile.gettempdir()) / "qwen3-search-bench" / args.qwen_size
    folders = {}
    for kind in ("embedding", "reranker"):
        folders[kind] = root / kind
        if not (folders[kind] / "config.json").is_file():
            write_random_model(folders[kind], kind=kind, size=args.qwen_size, tokenizer=tokenizer)
    # Distinct texts for every timed run (and the warm-up): see median_seconds.
    runs = args.repeats + 1
    texts = make_texts(tokenizer, runs * (args.texts + 5 + 8 * args.concurrency), seed=1)
    documents = make_texts(tokenizer, runs * (args.documents + 5), seed=2)
    pieces = iter(texts)
    work: dict[str, list] = {
        "batches": [[next(pieces) for _ in range(args.texts)] for _ in range(runs)],
        "singles": [[next(pieces)] for _ in range(5 * runs)],
        "concurrent": [[[next(pieces) for _ in range(8)] for _ in range(args.concurrency)] for _ in range(runs)],
    }
    docs = iter(documents)
    work["rerank"] = [(f"{QUERY} ({i})", [next(docs) for _ in range(args.documents)]) for i in range(runs)]
    work["rerank_single"] = [(f"{QUERY} [{i}]", [next(docs)]) for i in range(5 * runs)]

    embed: dict[str, dict[str, float]] = {}
    vectors: dict[str, np.ndarray] = {}
    settings = []
    for backend in ("torch", "vllm"):
        embed[backend], vectors[backend], setting = measure_embedding(backend, str(folders["embedding"]), work, args)
        settings.append(setting)
    rerank: dict[str, dict[str, float]] = {}
    scores: dict[str, np.ndarray] = {}
    for backend in ("torch", "vllm"):
        rerank[backend], scores[backend] = measure_rerank(backend, str(folders["reranker"]), work, args)

    cosine = float((vectors["torch"] * vectors["vllm"]).sum(1).min())
    score_diff = float(np.abs(scores["torch"] - scores["vllm"]).max())
    print(f"settings: {'; '.join(settings)}")
    print(f"agreement: min cosine {cosine:.7f} (embeddings), max |score difference| {score_diff:.1e} (rerank)")
    print_table("Seconds per call (median); ratio above 1 means vLLM is faster", [
        ("embed one batch", f"{args.texts} texts", embed["torch"]["batch"], embed["vllm"]["batch"]),
        ("embed one text alone (latency)", "1 text", embed["torch"]["alone"], embed["vllm"]["alone"]),
        (f"embed {args.concurrency} concurrent requests (pool_async)", f"{args.concurrency} x 8 texts",
         embed["torch"]["concurrent"], embed["vllm"]["concurrent"]),
        ("rerank one query", f"{args.documents} documents", rerank["torch"]["batch"], rerank["vllm"]["batch"]),
        ("rerank one document alone (latency)", "1 document", rerank["torch"]["alone"], rerank["vllm"]["alone"]),
    ])


if __name__ == "__main__":  # vLLM's engine process is spawned: this guard is required
    main()
