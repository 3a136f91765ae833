"""Results the clients build on top of the wire types (everything else is returned as parsed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .types import EmbeddingUsage

if TYPE_CHECKING:  # numpy is imported when the first vectors are decoded, not with the package
    import numpy as np
    import numpy.typing as npt

__all__ = ["EmbedResult"]


@dataclass(frozen=True, eq=False)
class EmbedResult:
    """The vectors of an `embed` call, one row per input, in input order.

    The wire answer (`EmbeddingResponse`) carries one base64 string per input; the client decodes
    them into one array, and merges the answers of a split call into it.
    """

    embeddings: npt.NDArray[np.float32]
    """Shape (inputs, dimensions), float32, each row L2-normalised by the server."""
    model: str
    """The model that embedded the inputs."""
    usage: EmbeddingUsage
    """Tokens processed, summed over the requests of a split call."""

    @property
    def dimensions(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def tolist(self) -> list[list[float]]:
        """The vectors as Python floats (for JSON, or libraries that want lists)."""
        rows: list[list[float]] = self.embeddings.tolist()
        return rows

