"""Post-processing of pooled vectors: Matryoshka truncation and L2 normalisation (numpy only)."""

import numpy as np

from .errors import InvalidInputError

__all__ = ["MIN_DIMENSIONS", "check_dimensions", "truncate_and_normalize", "quantize"]

MIN_DIMENSIONS = 32
"""Smallest Matryoshka width Qwen3-Embedding is trained for."""


def check_dimensions(dimensions: int | None, full: int) -> int:
    """The requested width, or the full width when None; InvalidInputError when out of range."""
    if dimensions is None:
        return full
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not MIN_DIMENSIONS <= dimensions <= full:
        raise InvalidInputError(
            f"dimensions must be an integer from {MIN_DIMENSIONS} to {full} for this model, not {dimensions!r}",
            param="dimensions",
        )
    return dimensions


def truncate_and_normalize(pooled: np.ndarray, dimensions: int | None = None, normalize: bool = True) -> np.ndarray:
    """First `dimensions` components of un-normalised pooled vectors, then L2-normalised.

    Slicing before normalising is what makes a Matryoshka vector a unit vector; slicing a
    normalised vector (as some servers do) is not.
    """
    width = check_dimensions(dimensions, pooled.shape[1])
    vectors = np.ascontiguousarray(pooled[:, :width], dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return vectors


def quantize(vectors: np.ndarray, kind: str) -> np.ndarray:
    """Unit vectors as Cohere's integer embedding types (the sentence-transformers conventions).

    int8: each component times 127, rounded; uint8: the same shifted by 128; ubinary: the sign
    bits (component > 0) packed eight per byte, first component in the high bit; binary: those
    bytes minus 128, as signed int8. Widths not a multiple of 8 are padded with zero bits.
    """
    if kind == "int8":
        return np.clip(np.rint(vectors * 127.0), -128, 127).astype(np.int8)
    if kind == "uint8":
        return np.clip(np.rint(vectors * 127.0) + 128, 0, 255).astype(np.uint8)
    if kind in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=1)
        return packed if kind == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)
    raise ValueError(f"no integer embedding type {kind!r}")
