"""dtype `auto`: bfloat16 on GPU and on CPUs with bfloat16 units (bench/cpu_paths.py measured it fast and within
the README's thresholds), float32 elsewhere; `float32` is the exact path whatever the CPU."""

from pathlib import Path

import pytest
import torch

from deployments.engine import EmbeddingEngine, RerankEngine, runtime

CPU = torch.device("cpu")


@pytest.mark.parametrize(("units", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cpu_follows_the_bfloat16_units(monkeypatch, units, expected):
    monkeypatch.setattr(runtime, "cpu_has_bfloat16_units", lambda: units)
    assert runtime.resolve_dtype("auto", CPU) == expected
    assert runtime.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert runtime.resolve_dtype("float32", CPU) == torch.float32
    assert runtime.resolve_dtype("bfloat16", CPU) == torch.bfloat16


def test_bfloat16_units_are_read_from_the_cpu():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    assert runtime.cpu_has_bfloat16_units() == bool({"avx512_bf16", "amx_tile"} & set(cpuinfo.read_text().split()))


@pytest.mark.parametrize("units", [True, False])
def test_the_engines_load_what_auto_resolves_to_and_float32_when_asked(monkeypatch, model_factory, units):
    monkeypatch.setattr(runtime, "cpu_has_bfloat16_units", lambda: units)
    auto = "bfloat16" if units else "float32"
    embedding, reranker = model_factory("embedding", "fallback"), model_factory("reranker", "fallback")
    assert EmbeddingEngine.load(str(embedding), device="cpu").info.dtype == auto
    assert RerankEngine.load(str(reranker), device="cpu").info.dtype == auto
    assert EmbeddingEngine.load(str(embedding), device="cpu", dtype="float32").info.dtype == "float32"
    assert RerankEngine.load(str(reranker), device="cpu", dtype="float32").info.dtype == "float32"
