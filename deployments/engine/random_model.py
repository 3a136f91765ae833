"""Random-weight Qwen3 embedding and reranker folders, for tests, demos and benchmarks.

The model hub is not always reachable. A folder written here has the layout of the real
Qwen/Qwen3-Embedding-* and Qwen/Qwen3-Reranker-* repositories (config, safetensors,
tokenizer and, for embeddings, the sentence-transformers files), so it is loaded through
exactly the code path that loads real weights. Scores from random weights are meaningless;
the shapes are the real ones, and so are the token sequences and costs when the real Qwen3
tokenizer is at hand ($QWEN3_TOKENIZER or ../shared/qwen3-tokenizer). Without it a small stand-in
tokenizer is written instead (578 tokens, not 151,669): it splits text into about 3x as many
tokens (2.98x on SciFact), so token counts and timings are not Qwen3's. That is warned about
(`StandInTokenizerWarning`), recorded in the folder's `random_model.json` (`stand_in_tokenizer`),
and benchmarks refuse such a folder unless asked (`--allow-stand-in-tokenizer`).

    python -m deployments.engine.random_model --kind embedding --size 0.6B OUT_DIR
"""

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

from .prompts import DEFAULT_INSTRUCTION, END_OF_TEXT, embedding_query_prompt

__all__ = ["QWEN3_SIZES", "QWEN3_TOKENIZER_SIZE", "MARKER_FILE", "STAND_IN_NOTE", "StandInTokenizerWarning",
           "find_qwen3_tokenizer", "build_fallback_tokenizer", "load_qwen3_tokenizer", "is_stand_in_tokenizer",
           "has_stand_in_tokenizer", "write_random_model"]

logger = logging.getLogger(__name__)

QWEN3_TOKENIZER_SIZE = 151669
"""Tokens of the real Qwen3 tokenizer (vocabulary plus added tokens), the same for every size."""

MARKER_FILE = "random_model.json"
"""Written into every folder made here: random weights, the size, and whether the tokenizer is a stand-in."""

STAND_IN_NOTE = ("the real Qwen3 tokenizer is absent ($QWEN3_TOKENIZER or ../shared/qwen3-tokenizer), so a small "
                 f"stand-in tokenizer is used (hundreds of tokens, not {QWEN3_TOKENIZER_SIZE:,}): token counts are "
                 "NOT Qwen3's (about 3x as many on SciFact), nor are the token budgets, truncation points and "
                 "timings that depend on them")


class StandInTokenizerWarning(UserWarning):
    """A random model is built with the stand-in tokenizer: its token counts are not Qwen3's."""


ModelKind = Literal["embedding", "reranker"]

# Published configurations of the Qwen3 retrieval models (REFERENCE.md section 1), plus a tiny
# one for tests and a "small" one for CPU benchmarks with the real vocabulary and head shapes.
QWEN3_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, tie_word_embeddings=True),
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, tie_word_embeddings=True),
    "0.6B": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "4B": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "8B": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}

QWEN3_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
QWEN3_ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>"]

_SHARED_TOKENIZER = Path(__file__).resolve().parents[2].parent / "shared" / "qwen3-tokenizer"


def find_qwen3_tokenizer() -> Path | None:
    """The real Qwen3 tokenizer folder: $QWEN3_TOKENIZER, else ../shared/qwen3-tokenizer, else None."""
    for candidate in (os.environ.get("QWEN3_TOKENIZER"), _SHARED_TOKENIZER):
        if candidate and (Path(candidate) / "tokenizer.json").is_file():
            return Path(candidate)
    return None


_FALLBACK_CORPUS = [
    "yes no yes no Yes No",
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no". system user assistant Instruct Query Document',
    "Given a web search query, retrieve relevant passages that answer the query",
    "The capital of China is Beijing. Gravity is a force that attracts two bodies towards each other.",
    "It gives weight to physical objects and is responsible for the movement of planets around the sun.",
    "What is the capital of China? Explain gravity. The quick brown fox jumps over the lazy dog.",
    "Search engines rank documents by relevance; embeddings map text to vectors in a shared space.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


def build_fallback_tokenizer() -> Any:
    """A small byte-level BPE tokenizer with the Qwen3 special tokens, built offline.

    For machines without the real tokenizer: same kind of tokenizer (byte-level BPE, the
    Qwen3 specials, single tokens for `yes` and `no`), a much smaller vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(_FALLBACK_CORPUS * 50, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token=END_OF_TEXT)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN3_SPECIAL_TOKENS})
    tokenizer.add_tokens(QWEN3_ADDED_TOKENS)
    for word in ("yes", "no"):
        if len(tokenizer(word, add_special_tokens=False)["input_ids"]) != 1:
            raise RuntimeError(f"fallback tokenizer failed to learn {word!r} as one token")
    tokenizer.qwen3_search_stand_in = True  # read by is_stand_in_tokenizer
    return tokenizer


def is_stand_in_tokenizer(tokenizer: Any) -> bool:
    """Whether `tokenizer` is not the real Qwen3 one (the fallback, or any of another size)."""
    return bool(getattr(tokenizer, "qwen3_search_stand_in", False)) or len(tokenizer) != QWEN3_TOKENIZER_SIZE


def _warn_stand_in() -> None:
    logger.warning("stand-in tokenizer: %s", STAND_IN_NOTE)
    warnings.warn(STAND_IN_NOTE, StandInTokenizerWarning, stacklevel=3)


def load_qwen3_tokenizer(source: str | Path | None = None) -> Any:
    """The real Qwen3 tokenizer when available (or the folder given), else the fallback, with a warning."""
    from transformers import AutoTokenizer

    folder = Path(source) if source else find_qwen3_tokenizer()
    if folder:
        return AutoTokenizer.from_pretrained(str(folder))
    tokenizer = build_fallback_tokenizer()
    _warn_stand_in()
    return tokenizer


def has_stand_in_tokenizer(folder: str | Path) -> bool:
    """Whether a model folder written by `write_random_model` holds the stand-in tokenizer.

    Folders without the marker (real models, or written before it existed) are judged by the
    size of their tokenizer.json when there is one.
    """
    folder = Path(folder)
    marker = folder / MARKER_FILE
    if marker.is_file():
        return bool(json.loads(marker.read_text(encoding="utf-8")).get("stand_in_tokenizer", False))
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        return False
    data = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    ids = set(data.get("model", {}).get("vocab", {}).values()) | {t["id"] for t in data.get("added_tokens", [])}
    return len(ids) != QWEN3_TOKENIZER_SIZE


def set_end_of_text_post_processor(tokenizer: Any, enabled: bool) -> None:
    """Make the tokenizer append `<|endoftext|>` to every input, as the official embedding one does."""
    from tokenizers.processors import TemplateProcessing

    eot_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    if enabled:
        processor = TemplateProcessing(single=f"$A {END_OF_TEXT}", pair=f"$A {END_OF_TEXT} $B:1 {END_OF_TEXT}:1",
                                       special_tokens=[(END_OF_TEXT, eot_id)])
    else:
        processor = TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
    tokenizer.backend_tokenizer.post_processor = processor


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def write_random_model(
    out_dir: str | Path,
    *,
    kind: ModelKind,
    size: str = "tiny",
    tokenizer: Any = None,
    end_of_text_post_processor: bool | None = None,
    seed: int = 0,
    init_std: float | None = None,
    dtype: str = "float32",
    **config_overrides: Any,
) -> Path:
    """Write a random-weight Qwen3 `kind` model of `size` to `out_dir` and return the folder.

    `end_of_text_post_processor` defaults to the official layout: on for embedding
    tokenizers, off for reranker tokenizers. `init_std` widens the weights of small test
    models so that scores spread out (defaults to 0.1 for `tiny`, Qwen3's 0.02 otherwise).
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    if size not in QWEN3_SIZES:
        raise ValueError(f"size must be one of {sorted(QWEN3_SIZES)}, not {size!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer_given = tokenizer is not None  # load_qwen3_tokenizer warns itself when it falls back
    tokenizer = tokenizer if tokenizer_given else load_qwen3_tokenizer()
    stand_in = is_stand_in_tokenizer(tokenizer)
    if stand_in and tokenizer_given:
        _warn_stand_in()
    if end_of_text_post_processor is None:
        end_of_text_post_processor = kind == "embedding"
    set_end_of_text_post_processor(tokenizer, end_of_text_post_processor)
    tokenizer.padding_side = "left" if kind == "embedding" else tokenizer.padding_side

    settings = dict(QWEN3_SIZES[size])
    settings.update(config_overrides)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,  # type: ignore[call-arg]
        rms_norm_eps=1e-6,
        initializer_range=init_std if init_std is not None else (0.1 if size == "tiny" else 0.02),
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        **settings,
    )
    torch.manual_seed(seed)
    model_class = Qwen3Model if kind == "embedding" else Qwen3ForCausalLM
    model = model_class(config).to(getattr(torch, dtype)).eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    _write_json(out / MARKER_FILE, {
        "random_weights": True, "kind": kind, "size": size, "seed": seed,
        "tokenizer": "stand-in" if stand_in else "qwen3", "tokenizer_size": len(tokenizer),
        "stand_in_tokenizer": stand_in,
        "note": STAND_IN_NOTE if stand_in
        else "random weights: scores are meaningless; shapes, tokens and costs are Qwen3's",
    })

    if kind == "embedding":
        _write_json(out / "modules.json", [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ])
        _write_json(out / "1_Pooling" / "config.json", {
            "word_embedding_dimension": config.hidden_size, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": True, "include_prompt": True,
        })
        (out / "2_Normalize").mkdir(exist_ok=True)
        _write_json(out / "config_sentence_transformers.json", {
            "prompts": {"query": embedding_query_prompt(DEFAULT_INSTRUCTION), "document": ""},
            "default_prompt_name": None, "similarity_fn_name": "cosine",
        })
        _write_json(out / "sentence_bert_config.json", {"max_seq_length": 8192, "do_lower_case": False})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the model into")
    parser.add_argument("--kind", choices=["embedding", "reranker"], required=True)
    parser.add_argument("--size", choices=sorted(QWEN3_SIZES), default="0.6B")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: ../shared/qwen3-tokenizer or a built one)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="weight dtype on disk (bfloat16 halves the size of 4B/8B folders)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_random_model(args.out_dir, kind=args.kind, size=args.size, tokenizer=load_qwen3_tokenizer(
        args.tokenizer), seed=args.seed, dtype=args.dtype)
    print(f"wrote random-weight Qwen3 {args.kind} model ({args.size}) to {path}")
    marker = json.loads((path / MARKER_FILE).read_text(encoding="utf-8"))
    if marker["stand_in_tokenizer"]:
        print(f"WARNING: {marker['note']}; recorded in {path / MARKER_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
