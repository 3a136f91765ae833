"""The tokenizer of the benchmarks' random-weight Qwen3 models: the real one, or a refusal.

Without the real Qwen3 tokenizer, `random_model` writes a 578-token stand-in that splits text
into about 3x as many tokens (2.98x on SciFact), so every tokens/s figure, token budget and
latency a benchmark prints would describe another model. The benchmarks that build random
models therefore stop unless `--allow-stand-in-tokenizer` is given, and say how to get the real
one.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from deployments.engine.random_model import (
    STAND_IN_NOTE,
    find_qwen3_tokenizer,
    has_stand_in_tokenizer,
    load_qwen3_tokenizer,
)

__all__ = ["ALLOW_STAND_IN", "add_stand_in_option", "benchmark_tokenizer", "check_model_folder"]

ALLOW_STAND_IN = "--allow-stand-in-tokenizer"

_HOW = (f"set $QWEN3_TOKENIZER to a folder with the Qwen3 tokenizer.json (or put it in ../shared/qwen3-tokenizer), "
        f"or pass {ALLOW_STAND_IN} to measure with the stand-in anyway")


def add_stand_in_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(ALLOW_STAND_IN, action="store_true",
                        help="run even without the real Qwen3 tokenizer (token counts then ~3x the real ones)")


def benchmark_tokenizer(args: argparse.Namespace) -> Any:
    """The real Qwen3 tokenizer; the stand-in only when `args` allows it, else exit 2 saying why."""
    if find_qwen3_tokenizer() is None and not args.allow_stand_in_tokenizer:
        sys.exit(f"refusing to benchmark: {STAND_IN_NOTE}.\n{_HOW}")
    return load_qwen3_tokenizer()


def check_model_folder(folder: str | Path, args: argparse.Namespace) -> None:
    """Refuse a (cached) random-model folder that holds the stand-in tokenizer, unless allowed."""
    if has_stand_in_tokenizer(folder) and not args.allow_stand_in_tokenizer:
        sys.exit(f"refusing to benchmark {folder}: it was written with the stand-in tokenizer (see "
                 f"{Path(folder) / 'random_model.json'}); delete it and {_HOW}")
