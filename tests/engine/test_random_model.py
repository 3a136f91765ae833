"""The random-weight model writer: real layouts and real configurations."""

import json
import os
import subprocess
import sys

import pytest

from deployments.engine import EmbeddingEngine, RerankEngine, random_model
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
        pytest.skip("../shared/qwen3-tokenizer is absent on this machine")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.convert_tokens_to_ids(["yes", "no", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        9693, 2152, 151643, 151644, 151645
    ]
    assert len(tokenizer) == 151669


@pytest.fixture
def no_real_tokenizer(monkeypatch, tmp_path):
    """As on a machine without ../shared: neither $QWEN3_TOKENIZER nor the shared folder."""
    monkeypatch.delenv("QWEN3_TOKENIZER", raising=False)
    monkeypatch.setattr(random_model, "_SHARED_TOKENIZER", tmp_path / "absent")
    assert find_qwen3_tokenizer() is None


def test_the_stand_in_is_warned_about_and_recorded_in_the_folder(no_real_tokenizer, tmp_path):
    with pytest.warns(random_model.StandInTokenizerWarning, match="token counts are NOT Qwen3's"):
        tokenizer = random_model.load_qwen3_tokenizer()
    assert random_model.is_stand_in_tokenizer(tokenizer) and len(tokenizer) < 1000
    with pytest.warns(random_model.StandInTokenizerWarning):
        folder = random_model.write_random_model(tmp_path / "embedding", kind="embedding", tokenizer=tokenizer)
    marker = json.loads((folder / random_model.MARKER_FILE).read_text())
    assert marker["stand_in_tokenizer"] is True and marker["tokenizer"] == "stand-in"
    assert "about 3x" in marker["note"] and random_model.has_stand_in_tokenizer(folder)
    assert EmbeddingEngine.load(str(folder)).embed(["still loads"]).shape == (1, 64)


def test_the_command_line_says_so_on_stderr(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "QWEN3_TOKENIZER"}
    hide_shared = ("import pathlib, sys; import deployments.engine.random_model as m; "
                   "m._SHARED_TOKENIZER = pathlib.Path(sys.argv[1]); m.main(sys.argv[2:])")
    result = subprocess.run([sys.executable, "-c", hide_shared, str(tmp_path / "absent"), "--kind", "reranker",
                             "--size", "tiny", str(tmp_path / "r")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "StandInTokenizerWarning" in result.stderr
    assert "WARNING: the real Qwen3 tokenizer is absent" in result.stderr


def test_a_folder_with_the_real_tokenizer_is_not_a_stand_in(tmp_path):
    if find_qwen3_tokenizer() is None:
        pytest.skip("../shared/qwen3-tokenizer is absent on this machine")
    folder = random_model.write_random_model(tmp_path / "r", kind="reranker",
                                             tokenizer=random_model.load_qwen3_tokenizer())
    marker = json.loads((folder / random_model.MARKER_FILE).read_text())
    assert marker["stand_in_tokenizer"] is False and marker["tokenizer_size"] == random_model.QWEN3_TOKENIZER_SIZE
    assert not random_model.has_stand_in_tokenizer(folder)
    (folder / random_model.MARKER_FILE).unlink()  # a folder without the marker: judged by its tokenizer.json
    assert not random_model.has_stand_in_tokenizer(folder)


def test_benchmarks_refuse_the_stand_in_unless_asked(no_real_tokenizer, tmp_path):
    import argparse

    from bench._tokenizer import add_stand_in_option, benchmark_tokenizer, check_model_folder

    parser = argparse.ArgumentParser()
    add_stand_in_option(parser)
    with pytest.raises(SystemExit, match="(?s)refusing to benchmark.*--allow-stand-in-tokenizer"):
        benchmark_tokenizer(parser.parse_args([]))
    allowed = parser.parse_args(["--allow-stand-in-tokenizer"])
    with pytest.warns(random_model.StandInTokenizerWarning):
        tokenizer = benchmark_tokenizer(allowed)
    with pytest.warns(random_model.StandInTokenizerWarning):
        folder = random_model.write_random_model(tmp_path / "cached", kind="reranker", tokenizer=tokenizer)
    with pytest.raises(SystemExit, match="written with the stand-in tokenizer"):
        check_model_folder(folder, parser.parse_args([]))
    check_model_folder(folder, allowed)
