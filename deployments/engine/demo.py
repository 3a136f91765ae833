"""The model cards' example through the engine: two queries, two documents.

    qwen3-search-demo                       # Qwen/Qwen3-Embedding-0.6B and Qwen/Qwen3-Reranker-0.6B from the hub
    qwen3-search-demo --embedding-model DIR --reranker-model DIR
    qwen3-search-demo --random              # offline: random-weight models with the real 0.6B shapes

With the real weights the similarity matrix is the model card's
[[0.7646, 0.1414], [0.1355, 0.6000]]; random weights give meaningless numbers.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from . import DEFAULT_INSTRUCTION, EmbeddingEngine, EngineError, RerankEngine

QUERIES = ["What is the capital of China?", "Explain gravity"]
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is "
    "responsible for the movement of planets around the sun.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Qwen3 model cards' example through the engine.")
    parser.add_argument("--embedding-model", default="Qwen/Qwen3-Embedding-0.6B")
    parser.add_argument("--reranker-model", default="Qwen/Qwen3-Reranker-0.6B")
    parser.add_argument("--random", metavar="SIZE", nargs="?", const="0.6B",
                        help="use random-weight models of this size (default 0.6B) instead of downloading")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    if args.random:
        from .random_model import load_qwen3_tokenizer, write_random_model

        folder = Path(tempfile.gettempdir()) / f"qwen3-search-random-{args.random}"
        tokenizer = load_qwen3_tokenizer()
        for kind in ("embedding", "reranker"):
            if not (folder / kind / "config.json").is_file():
                print(f"writing a random-weight {args.random} {kind} model to {folder / kind} ...")
                write_random_model(folder / kind, kind=kind, size=args.random, tokenizer=tokenizer)
        args.embedding_model, args.reranker_model = str(folder / "embedding"), str(folder / "reranker")
        print("NOTE: random weights: the numbers below show the pipeline working, not relevance.\n")

    try:
        started = time.perf_counter()
        embedder = EmbeddingEngine.load(args.embedding_model, device=args.device)
        reranker = RerankEngine.load(args.reranker_model, device=args.device)
        print(f"loaded both models in {time.perf_counter() - started:.1f}s on {embedder.info.device}")
    except EngineError as exc:
        parser.exit(2, f"error: {exc}\n")

    queries = embedder.embed(QUERIES, instruction=DEFAULT_INSTRUCTION)
    documents = embedder.embed(DOCUMENTS)
    np.set_printoptions(precision=4, suppress=True)
    print(f"\nembedding similarity (queries x documents), {embedder.name}:\n{queries @ documents.T}")
    print(f"\nreranker P(yes), {reranker.name}:")
    for query in QUERIES:
        for document, score in zip(DOCUMENTS, reranker.score(query, DOCUMENTS), strict=True):
            print(f"  {score:.4f}  {query!r} <- {document[:60]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
