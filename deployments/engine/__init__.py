"""The model engine: exact Qwen3 embedding and reranking math, with no Ray inside.

Everything here runs in one process and can be tested, benchmarked and profiled alone.
The Ray Serve deployments wrap these classes; the HTTP layer maps `EngineError`
subclasses to status codes.
"""

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
from .reranking import RerankEngine, RerankInputs, RerankModelInfo, sigmoid
from .vectors import MIN_DIMENSIONS, truncate_and_normalize

__all__ = [
    "DEFAULT_INSTRUCTION",
    "MIN_DIMENSIONS",
    "EmbeddingEngine",
    "EmbeddingModelInfo",
    "EngineError",
    "InputTooLongError",
    "InvalidInputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "RerankEngine",
    "RerankInputs",
    "RerankModelInfo",
    "UnsupportedModelError",
    "sigmoid",
    "truncate_and_normalize",
]
