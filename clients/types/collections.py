"""Collections, documents and search: the retrieval pipeline's wire types."""

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ._base import StrictRequest, WireModel

__all__ = [
    "COLLECTION_NAME_PATTERN",
    "IndexType",
    "MetadataFilter",
    "CreateCollectionRequest",
    "Collection",
    "CollectionDeleted",
    "CollectionList",
    "Document",
    "UpsertRequest",
    "UpsertResponse",
    "StoredDocument",
    "DeleteResponse",
    "CountResponse",
    "SearchRequest",
    "SearchHit",
    "SearchTimings",
    "SearchResult",
]

COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(COLLECTION_NAME_PATTERN)
IndexType = Literal["auto", "exact", "hnsw"]
MetadataFilter = dict[str, Any]
"""`{"key": value}` keeps documents whose metadata[key] equals value; `{"key": {"$in": [a, b]}}` any of
the values; several keys must all match."""


class CreateCollectionRequest(StrictRequest):
    """Body of PUT /v1/collections/{name}; every field is optional."""

    model: str | None = Field(default=None, description="Embedding model; the default embedder if omitted.")
    dimensions: int | None = Field(default=None, ge=1, description="Matryoshka width; the model's full width if "
                                                                    "omitted.")
    index: IndexType = Field(
        default="auto", description="auto: exact search while small, HNSW above a size threshold; or force one."
    )


class Collection(WireModel):
    name: str
    model: str = Field(description="The embedding model the collection is bound to.")
    dimensions: int
    index: IndexType = "auto"
    count: int = Field(default=0, description="Documents stored.")
    created_at: float = Field(default=0.0, description="Unix time of creation.")


class CollectionDeleted(WireModel):
    """Answer of DELETE /v1/collections/{name}."""

    name: str = Field(description="The collection that was deleted.")
    deleted: bool = True


class CollectionList(WireModel):
    collections: list[Collection]


class Document(StrictRequest):
    """A document to store: `id` makes an upload idempotent (assigned when omitted)."""

    id: str | None = Field(default=None, min_length=1, max_length=256, description="Your id; a UUID if omitted.")
    text: str = Field(description="The text that is embedded, searched and returned.")
    metadata: dict[str, Any] | None = Field(default=None, description="Any JSON object; filterable by key.")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be empty or whitespace only")
        return value


class UpsertRequest(StrictRequest):
    documents: list[Document] = Field(min_length=1, description="Documents to insert or replace (by id).")


class UpsertResponse(WireModel):
    ids: list[str] = Field(description="The id of each document, in request order.")
    count: int = Field(description="Documents written by this request.")


class StoredDocument(WireModel):
    id: str
    text: str
    metadata: dict[str, Any] | None = None


class DeleteResponse(WireModel):
    id: str
    deleted: bool = True


class CountResponse(WireModel):
    collection: str
    count: int


class SearchRequest(StrictRequest):
    """Body of POST /v1/collections/{name}/search: embed -> ANN -> rerank."""

    query: str | list[str] = Field(description="A query, or a list of queries (answered with a list).")
    top_k: int = Field(default=100, ge=1, description="Candidates taken from the vector index (Qwen3 eval: 100).")
    top_n: int = Field(default=10, ge=1, description="Results returned after reranking.")
    instruction: str | None = Field(
        default=None,
        description="Task instruction for the reranker, and for the query embedding when its model takes "
        "instructions (Qwen3); each model's default when omitted.",
    )
    filter: MetadataFilter | None = Field(default=None, description="Metadata equality filter.")
    rerank: bool = Field(default=True, description="Rerank the candidates with the reranker.")
    reranker: str | None = Field(default=None, description="Reranker model; the default one if omitted.")
    return_metadata: bool = Field(default=True, description="Include each document's metadata.")
    exact: bool = Field(default=False, description="Exact vector search even where an HNSW index exists.")

    @field_validator("query")
    @classmethod
    def _queries_not_blank(cls, value: str | list[str]) -> str | list[str]:
        queries = [value] if isinstance(value, str) else value
        if not queries:
            raise ValueError("give at least one query")
        for query in queries:
            if not query.strip():
                raise ValueError("a query must not be empty or whitespace only")
        return value

    @model_validator(mode="after")
    def _top_n_within_top_k(self) -> "SearchRequest":
        if self.rerank and self.top_n > self.top_k:
            raise ValueError(f"top_n ({self.top_n}) must not exceed top_k ({self.top_k})")
        return self

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)


class SearchHit(WireModel):
    id: str
    text: str
    metadata: dict[str, Any] | None = None
    score: float = Field(description="Reranker P(yes), or the embedding score when rerank is off.")
    embedding_score: float = Field(description="Cosine similarity of query and document vectors.")


class SearchTimings(WireModel):
    embed_ms: float = 0.0
    search_ms: float = 0.0
    rerank_ms: float = 0.0
    total_ms: float = 0.0


class SearchResult(WireModel):
    results: list[SearchHit] = Field(description="Best first.")
    timings: SearchTimings


def valid_collection_name(name: str) -> bool:
    return bool(_NAME.match(name))
