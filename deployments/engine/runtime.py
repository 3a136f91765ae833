"""Device, dtype and attention choices shared by both engines."""

import importlib.util
from pathlib import Path
from typing import Any

import torch

from .errors import InvalidInputError, UnsupportedModelError

__all__ = ["resolve_device", "resolve_dtype", "cpu_has_bfloat16_units", "attention_implementation", "load_pretrained",
           "default_batch_tokens"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """`auto` is CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"unknown device {device!r}", param="device") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was asked for but no CUDA device is available", param="device")
    return resolved


def cpu_has_bfloat16_units() -> bool:
    """AVX512-BF16 or AMX: bfloat16 matrix products run in hardware. Elsewhere oneDNN emulates
    them, slower than float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on GPU and on CPUs with bfloat16 units, float32 on other CPUs.

    bench/cpu_paths.py measured bfloat16 on an AMX CPU at 2.8-3.1x the embedding and 1.5x the
    reranking throughput of float32, with min cosine 0.9999, max score difference 0.004 and
    SciFact nDCG@10 -0.07 points (README, "CPU fast paths"). `float32` is the exact path: what
    the model cards' code computes, and what the tests compare in.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_bfloat16_units() else torch.float32
    if dtype not in _DTYPES:
        raise InvalidInputError(f"dtype must be auto or one of {sorted(_DTYPES)}, not {dtype!r}", param="dtype")
    return _DTYPES[dtype]


def attention_implementation(device: torch.device) -> str:
    """Flash-attention 2 on GPU when installed, PyTorch SDPA otherwise."""
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def default_batch_tokens(device: torch.device) -> int:
    """Padded tokens per forward pass: enough to fill a GPU, small enough for CPU caches.

    On CPU, bench/engine.py measured 2048-4096 fastest (larger batches fall out of cache).
    """
    return 32768 if device.type == "cuda" else 4096


def load_pretrained(auto_class: Any, model_dir: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """`auto_class.from_pretrained` with our device/dtype/attention choices, errors typed."""
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attention_implementation(device)}
    if device.type == "cuda":
        kwargs["device_map"] = str(device)
    try:
        model = auto_class.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UnsupportedModelError(f"cannot load model weights from {model_dir}: {exc}") from exc
    if device.type != "cuda":
        model = model.to(device)
    return model.eval()
