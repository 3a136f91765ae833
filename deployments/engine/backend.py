"""The backend contract: what an inference engine does to serve embeddings and rerank scores.

Text handling is ours and the same for every backend: prompts and instructions, the
reranker template, tokenisation, truncation, exactly one trailing `<|endoftext|>`,
Matryoshka truncation and normalisation (`EmbeddingEngine`, `RerankEngine`). A backend
only turns prepared token ids into numbers:

- an `EmbeddingBackend` pools each token sequence into one un-normalised, full-width
  float32 vector (the engine truncates and normalises);
- a `RerankBackend` gives `logit(yes) - logit(no)` at the last position of each
  `shared + document` sequence (the engine applies the sigmoid where a dialect wants it).

A backend that batches concurrent calls itself (vLLM's continuous batching) says so with
`schedules_batches = True`: the replica then sends each request straight to `*_async`
instead of through its own token-budget batcher, so requests are never batched twice.

Backends live in their own modules and are imported only when one is built, so
`import deployments.engine` costs neither torch, vLLM nor ONNX Runtime:
`torch` (torch_backend.py), `vllm` (vllm_backend.py), `onnx` (onnx_backend.py).
"""

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

    from .model_files import EmbeddingModelFiles

__all__ = [
    "BackendName",
    "BackendChoice",
    "BackendOptions",
    "RerankInputs",
    "EmbeddingBackend",
    "RerankBackend",
    "BACKEND_MODULES",
    "resolve_backend",
    "load_embedding_backend",
    "load_rerank_backend",
]

BackendName = Literal["torch", "vllm", "onnx"]
BackendChoice = Literal["auto", "torch", "vllm", "onnx"]

BACKEND_MODULES: dict[str, str] = {
    "torch": "deployments.engine.torch_backend",
    "vllm": "deployments.engine.vllm_backend",
    "onnx": "deployments.engine.onnx_backend",
}
"""Each module exposes `load_embedding(...) -> EmbeddingBackend` and `load_reranker(...) -> RerankBackend`."""


@dataclass(frozen=True)
class BackendOptions:
    """How to run a model, whatever the backend; a backend ignores what does not apply to it."""

    device: str = "auto"
    """auto (CUDA when present), cpu, cuda, cuda:N."""
    dtype: str = "auto"
    """auto: bfloat16 on GPU; on CPU bfloat16 for torch when the CPU has bfloat16 units, else float32
    (each backend resolves it); or float32 (the exact path), bfloat16, float16."""
    max_length: int = 8192
    """Longest token sequence the engine will send (the engine truncates before)."""
    max_batch_tokens: int | None = None
    """Padded tokens per forward pass; None: the backend's default for its device."""
    max_batch_size: int = 256
    """Sequences per forward pass at most."""
    threads: int | None = None
    """CPU threads for the backend's kernels; None: the process default."""
    num_gpus: float = 0.0
    """The fraction of one GPU this replica was given (Ray's `num_gpus`); vLLM sizes its memory by it."""
    pad_id: int = 0
    """The tokenizer's padding id (pads are masked or, in causal models, never attended to)."""
    prefix_cache_min_documents: int = 2
    """Reranker: share a query prefix's KV cache when it has at least this many documents (torch)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Backend-specific settings from the model entry (e.g. ONNX execution providers)."""


@dataclass(frozen=True)
class RerankInputs:
    """One query's documents as token ids: `shared + documents[i]` is the i-th full prompt."""

    shared: list[int]
    """System prefix, instruction and query: identical for every document of the query."""
    documents: list[list[int]]
    """Each document's tokens followed by the assistant suffix."""

    @property
    def token_counts(self) -> list[int]:
        return [len(self.shared) + len(doc) for doc in self.documents]


@runtime_checkable
class EmbeddingBackend(Protocol):
    """Token ids -> pooled vectors."""

    name: BackendName
    dimensions: int
    """Width of a pooled vector."""
    max_length: int | None
    """The model's own position limit, or None when it has none the engine must respect."""
    max_batch_tokens: int
    device: str
    dtype: str
    schedules_batches: bool
    """True: concurrent `pool_async` calls are batched inside the backend; the replica skips its batcher."""

    def pool(self, token_ids: Sequence[Sequence[int]]) -> "np.ndarray":
        """Blocking: un-normalised float32 vectors (rows in input order, full width). Thread-safe."""
        ...

    async def pool_async(self, token_ids: Sequence[Sequence[int]]) -> "np.ndarray":
        """The same from the event loop, for backends that schedule their own batches."""
        ...

    async def check_health(self) -> None:
        """Raises when the backend can no longer compute; never blocks the event loop."""
        ...

    def shutdown(self) -> None:
        """Free devices, threads and processes; the backend is unusable after."""
        ...


@runtime_checkable
class RerankBackend(Protocol):
    """Token ids of reranker prompts -> logit(yes) - logit(no) at each last position."""

    name: BackendName
    max_length: int | None
    max_batch_tokens: int
    device: str
    dtype: str
    schedules_batches: bool

    def logits(self, groups: Sequence[RerankInputs]) -> list["np.ndarray"]:
        """Blocking: one float32 array per group, in document order. Thread-safe."""
        ...

    async def logits_async(self, groups: Sequence[RerankInputs]) -> list["np.ndarray"]:
        """The same from the event loop, for backends that schedule their own batches."""
        ...

    async def check_health(self) -> None:
        ...

    def shutdown(self) -> None:
        ...


def resolve_backend(choice: str, model_dir: Path) -> BackendName:
    """`auto`: ONNX Runtime when the folder holds `model.onnx`, else torch."""
    if choice == "auto":
        return "onnx" if (model_dir / "model.onnx").is_file() else "torch"
    if choice not in BACKEND_MODULES:
        raise InvalidInputError(f"backend must be auto, torch, vllm or onnx, not {choice!r}", param="backend")
    return choice  # type: ignore[return-value]


def _module(name: BackendName) -> Any:
    return importlib.import_module(BACKEND_MODULES[name])


def load_embedding_backend(name: BackendName, model_dir: Path, files: "EmbeddingModelFiles",
                           options: BackendOptions) -> EmbeddingBackend:
    """Build the named backend for an embedding model folder (its files already read)."""
    backend: EmbeddingBackend = _module(name).load_embedding(model_dir, files, options)
    return backend


def load_rerank_backend(name: BackendName, model_dir: Path, *, yes_id: int, no_id: int,
                        options: BackendOptions) -> RerankBackend:
    """Build the named backend for a Qwen3-Reranker folder; `yes_id`/`no_id` from its tokenizer."""
    backend: RerankBackend = _module(name).load_reranker(model_dir, yes_id=yes_id, no_id=no_id, options=options)
    return backend
