"""The random-weight model writer: real layouts and real configurations."""

import json
import subprocess
import sys

from deployments.engine import EmbeddingEngine, RerankEngine
from deployments.engine.random_model import QWEN3_SIZES, build_fallback_tokenizer, find_qwen3_tokenizer


def test_published_sizes_match_the_model_cards():
    # REFERENCE.md section 1: layers and hidden width of the three sizes.
    assert {s: (QWEN3_SIZES[s]["num_hidden_layers"], QWEN3_SIZES[s]["hidden_size"]) for s in ("0.6B", "4B", "8B")} == {
        "0.6B": (28, 1024), "4B": (36, 2560), "8B": (36, 4096)
    }


def test_command_line_writes_loadable_folders(tmp_path):
    for kind in ("embedding", "reranker"):
        out = tmp_path / kind
        subprocess.run([sys.executable, "-m", "deployments.engine.random_model", "--kind", kind, "--size", "tiny",
                        str(out)], check=True, capture_output=True)
        config = json.loads((out / "config.json").read_text())
        assert config["model_type"] == "qwen3" and config["hidden_size"] == 64
    assert (tmp_path / "embedding" / "modules.json").is_file()
    assert not (tmp_path / "reranker" / "modules.json").exists()
    embedder = EmbeddingEngine.load(str(tmp_path / "embedding"))
    assert embedder.embed(["hello"]).shape == (1, 64)
    assert RerankEngine.load(str(tmp_path / "reranker")).score("q", ["d"]).shape == (1,)


def test_fallback_tokenizer_has_the_qwen3_special_tokens():
    tokenizer = build_fallback_tokenizer()
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]) == token
    for word in ("yes", "no"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1


def test_shared_tokenizer_facts_when_present():
    folder = find_qwen3_tokenizer()
    if folder is None:
        import pytest

        pytest.skip("../shared/qwen3-tokenizer is absent on this machine")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.convert_tokens_to_ids(["yes", "no", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        9693, 2152, 151643, 151644, 151645
    ]
    assert len(tokenizer) == 151669
