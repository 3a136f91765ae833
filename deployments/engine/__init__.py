"""The model engine: exact Qwen3 embedding and reranking math, with no Ray and no HTTP inside.

Everything here runs in one process and can be tested, benchmarked and profiled alone.
`EmbeddingEngine` / `RerankEngine` own the text side (prompts, tokenisation, truncation);
a backend behind the contract in `backend.py` (torch, vLLM, ONNX Runtime) does the compute.
Names are imported on first use, so `import deployments.engine` (or its errors and prompts)
costs no torch until an engine is built.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import BackendOptions, EmbeddingBackend, RerankBackend, RerankInputs
    from .embedding import EmbeddingEngine, EmbeddingModelInfo
    from .errors import (
        EngineError,
        InputTooLongError,
        InvalidInputError,
        ModelLoadError,
        ModelNotFoundError,
        UnsupportedModelError,
    )
    from .prompts import DEFAULT_INSTRUCTION
    from .reranking import RerankEngine, RerankModelInfo, sigmoid
    from .vectors import MIN_DIMENSIONS, truncate_and_normalize

_WHERE = {
    "BackendOptions": "backend", "EmbeddingBackend": "backend", "RerankBackend": "backend", "RerankInputs": "backend",
    "EmbeddingEngine": "embedding", "EmbeddingModelInfo": "embedding",
    "EngineError": "errors", "InputTooLongError": "errors", "InvalidInputError": "errors",
    "ModelLoadError": "errors", "ModelNotFoundError": "errors", "UnsupportedModelError": "errors",
    "DEFAULT_INSTRUCTION": "prompts",
    "RerankEngine": "reranking", "RerankModelInfo": "reranking", "sigmoid": "reranking",
    "MIN_DIMENSIONS": "vectors", "truncate_and_normalize": "vectors",
}
__all__ = [
    "BackendOptions",
    "DEFAULT_INSTRUCTION",
    "EmbeddingBackend",
    "EmbeddingEngine",
    "EmbeddingModelInfo",
    "EngineError",
    "InputTooLongError",
    "InvalidInputError",
    "MIN_DIMENSIONS",
    "ModelLoadError",
    "ModelNotFoundError",
    "RerankBackend",
    "RerankEngine",
    "RerankInputs",
    "RerankModelInfo",
    "UnsupportedModelError",
    "sigmoid",
    "truncate_and_normalize",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
