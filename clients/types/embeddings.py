"""Embedding wire types: OpenAI `/v1/embeddings`, Text Embeddings Inference `/embed`, `/tokenize`,
`/decode`, and Cohere v2 `/v2/embed`."""

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
    "TEITokenizeRequest",
    "TEIToken",
    "TEIDecodeRequest",
    "CohereEmbedRequest",
    "CohereEmbeddingType",
    "CohereEmbeddings",
    "CohereEmbedMeta",
    "CohereEmbedResponse",
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


class TEITokenizeRequest(StrictRequest):
    """Text Embeddings Inference `/tokenize` request."""

    inputs: str | list[str] = Field(description="Text(s) to tokenize.")
    add_special_tokens: bool = Field(default=True, description="Include the special tokens the model adds.")
    prompt_name: str | None = Field(default=None, description="Tokenize the text after this prompt of the model.")
    model: str | None = Field(default=None, description="Extension: served model name (default: the embedder).")


class TEIToken(WireModel):
    """One token of `/tokenize`'s answer, as TEI gives it."""

    id: int
    text: str = Field(description="The input's bytes the token covers; a special token's own string.")
    special: bool
    start: int | None = Field(default=None, description="Byte offset in the (prompt + text) input; none if special.")
    stop: int | None = None


class TEIDecodeRequest(StrictRequest):
    """Text Embeddings Inference `/decode` request."""

    ids: list[int] | list[list[int]] = Field(description="One sequence of token ids, or several.")
    skip_special_tokens: bool = True
    model: str | None = Field(default=None, description="Extension: served model name (default: the embedder).")


CohereEmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]


class CohereEmbedRequest(StrictRequest):
    """Cohere v2 `/v2/embed` request (texts only)."""

    texts: list[str] = Field(description="Texts to embed.")
    model: str | None = Field(default=None, description="Served model name; the default embedding model if omitted.")
    input_type: Literal["search_document", "search_query", "classification", "clustering"] = Field(
        description="`search_query` embeds with the model's query instruction; the others as documents."
    )
    embedding_types: list[CohereEmbeddingType] = Field(
        default_factory=lambda: list[CohereEmbeddingType](["float"]),
        description="float; int8/uint8: the unit vector scaled by 127 (uint8: shifted by 128); binary/ubinary: "
        "the sign bits packed 8 per byte (binary: minus 128); base64: the float32 little-endian bytes.",
    )
    output_dimension: int | None = Field(default=None, ge=1, description="Matryoshka width (32..full).")
    truncate: Literal["NONE", "START", "END"] = Field(
        default="END", description="Which end of an over-long input is cut; NONE answers 413 instead."
    )
    instruction: str | None = Field(default=None, description="Extension: embed as queries with this instruction.")


class CohereEmbeddings(WireModel):
    """The vectors in each asked type, rows in input order."""

    float_: list[list[float]] | None = Field(default=None, alias="float")
    int8: list[list[int]] | None = None
    uint8: list[list[int]] | None = None
    binary: list[list[int]] | None = None
    ubinary: list[list[int]] | None = None
    base64: list[str] | None = None


class CohereEmbedMeta(WireModel):
    api_version: dict[str, str] = Field(default_factory=lambda: {"version": "2"})
    billed_units: dict[str, int] = Field(default_factory=dict)
    tokens: dict[str, int] = Field(default_factory=dict)


class CohereEmbedResponse(WireModel):
    response_type: Literal["embeddings_by_type"] = "embeddings_by_type"
    id: str
    embeddings: CohereEmbeddings
    texts: list[str]
    meta: CohereEmbedMeta


def decode_base64_embedding(data: str) -> list[float]:
    """The floats of a base64 embedding (little-endian float32), without numpy."""
    import array
    import sys

    values = array.array("f")
    values.frombytes(base64.b64decode(data))
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()
