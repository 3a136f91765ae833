"""Settings of the vLLM backend: the typed `vllm:` section of a model entry.

Torch-free and vLLM-free, so the app config can validate a model entry (and the tests can
check the memory arithmetic) on a machine without either. The backend
(`vllm_backend.py`) reads the section from `BackendOptions.extra["vllm"]`.

What is not here comes from the model entry itself, the same for every backend:
`max_model_len` is the entry's `max_length`, the dtype is the entry's `dtype` (auto:
bfloat16 on GPU, float32 on CPU), `max_num_seqs` defaults to `max_batch_size` and
`max_num_batched_tokens` to `max_batch_tokens`.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["VllmOptions", "DEFAULT_GPU_MEMORY_UTILIZATION", "DEFAULT_CPU_KV_CACHE_GIB",
           "derive_gpu_memory_utilization", "vllm_options_from_extra"]

DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
"""vLLM's own default: the share of one device's memory a whole-GPU engine may take."""

DEFAULT_CPU_KV_CACHE_GIB = 1
"""CPU KV cache when neither the entry nor VLLM_CPU_KVCACHE_SPACE sets one (vLLM would reserve most of RAM)."""


class VllmOptions(BaseModel):
    """The `vllm:` section of an embedder or reranker entry (used when its backend is vllm)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_memory_utilization: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Share of the whole device's memory this engine may use (weights, activations, KV cache). "
                    "vLLM counts it against the device, not against Ray's num_gpus: None derives it from the "
                    "replica's num_gpus (0.9 x num_gpus below one GPU), so that two 0.5-GPU replicas on one "
                    "device both start.",
    )
    kv_cache_space_gib: int | None = Field(
        default=None, ge=1,
        description="CPU only: GiB of RAM for the KV cache (sets VLLM_CPU_KVCACHE_SPACE for this engine). "
                    "None: VLLM_CPU_KVCACHE_SPACE when set, else 1 GiB.",
    )
    enforce_eager: bool | None = Field(
        default=None,
        description="Run without CUDA graphs and torch.compile: faster start, slower steps. None: eager on CPU "
                    "(vLLM's CPU compile path runs the inductor C++ compiler at every start), compiled on GPU.",
    )
    max_num_seqs: int | None = Field(
        default=None, ge=1,
        description="Sequences vLLM's scheduler runs in one step at most; None: the entry's max_batch_size.",
    )
    max_num_batched_tokens: int | None = Field(
        default=None, ge=16,
        description="Tokens vLLM's scheduler runs in one step at most (longer prompts are prefilled in chunks); "
                    "None: the entry's max_batch_tokens, else vLLM's default for the device.",
    )
    enable_prefix_caching: bool | None = Field(
        default=None,
        description="Reuse the KV cache of shared prompt prefixes (a reranker query's system prompt, instruction "
                    "and query are computed once for all of its documents). None: vLLM's default, on for these "
                    "last-token pooling models.",
    )


def derive_gpu_memory_utilization(num_gpus: float, *, whole_device: float = DEFAULT_GPU_MEMORY_UTILIZATION
                                  ) -> float:
    """vLLM's `gpu_memory_utilization` for a replica given `num_gpus` of one device by Ray.

    vLLM reserves that share of the *device*, whatever Ray's fractional `num_gpus` says, and at
    start it refuses to run when the share is more than the free memory. So a replica with a
    fraction `f` of one GPU asks for `f * whole_device`: k replicas whose fractions add up to one
    device ask for `whole_device` together, and each fits beside the others. One GPU or more
    (and 0, a replica Ray gave no GPU, e.g. on CPU) keeps `whole_device`.
    """
    if not 0.0 < whole_device <= 1.0:
        raise ValueError(f"whole_device must be in (0, 1], not {whole_device}")
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, not {num_gpus}")
    if num_gpus == 0 or num_gpus >= 1:
        return whole_device
    # Round down to 1/1000, so rounding never pushes the sum over the device.
    return max(int(num_gpus * whole_device * 1000) / 1000, 0.001)


def vllm_options_from_extra(extra: dict[str, Any]) -> VllmOptions:
    """The typed section from `BackendOptions.extra` (a dict from the config, a VllmOptions, or absent)."""
    section = extra.get("vllm")
    if section is None:
        return VllmOptions()
    if isinstance(section, VllmOptions):
        return section
    return VllmOptions.model_validate(section)
