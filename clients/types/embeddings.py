"""Embedding wire types: OpenAI `/v1/embeddings` and Text Embeddings Inference `/embed`."""

import base64
from typing import Literal

from pydantic import Field

from ._base import StrictRequest, WireModel

__all__ = [
    "EmbeddingInput",
    "EmbeddingRequest",
    "Embedding",
    "EmbeddingUsage",
    "EmbeddingResponse",
    "TEIEmbedRequest",
    "decode_base64_embedding",
]

EmbeddingInput = str | list[str] | list[int] | list[list[int]]
"""A text, a list of texts, one list of token ids, or a list of token-id lists (OpenAI's four forms)."""


class EmbeddingRequest(StrictRequest):
    """OpenAI-compatible embeddings request, with two extensions for Qwen3's query instructions."""

    input: EmbeddingInput = Field(description="Text(s) or token id list(s) to embed.")
    model: str | None = Field(default=None, description="Served model name; the default embedding model if omitted.")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="`float` lists, or `base64` of the little-endian float32 bytes."
    )
    dimensions: int | None = Field(
        default=None, ge=1, description="Matryoshka width: the first N components, re-normalised (32..full)."
    )
    user: str | None = Field(default=None, description="Accepted for OpenAI compatibility; not used.")
    instruction: str | None = Field(
        default=None,
        description="Extension: embed the inputs as queries with this instruction (`Instruct: ...\\nQuery:`).",
    )
    input_type: Literal["query", "document"] | None = Field(
        default=None,
        description="Extension: `query` uses the model's default query instruction, `document` (default) none.",
    )


class Embedding(WireModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(description="Position of the input this vector belongs to.")
    embedding: list[float] | str = Field(description="The vector, or its base64 float32 bytes.")


class EmbeddingUsage(WireModel):
    prompt_tokens: int = Field(description="Tokens the model processed, after prompts and truncation.")
    total_tokens: int


class EmbeddingResponse(WireModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class TEIEmbedRequest(StrictRequest):
    """Text Embeddings Inference `/embed` request."""

    inputs: EmbeddingInput = Field(description="Text(s) or token id list(s) to embed.")
    normalize: bool = Field(default=True, description="L2-normalise the vectors.")
    truncate: bool | None = Field(
        default=None, description="Truncate inputs longer than the model's limit; the server's default if omitted."
    )
    truncation_direction: Literal["left", "right", "Left", "Right"] = Field(
        default="right", description="Which end of an over-long input is cut."
    )
    prompt_name: str | None = Field(default=None, description="Name of a prompt from the model's configuration.")
    dimensions: int | None = Field(default=None, ge=1, description="Matryoshka width (32..full).")
    model: str | None = Field(default=None, description="Extension: served model name.")


def decode_base64_embedding(data: str) -> list[float]:
    """The floats of a base64 embedding (little-endian float32), without numpy."""
    import array
    import sys

    values = array.array("f")
    values.frombytes(base64.b64decode(data))
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()
