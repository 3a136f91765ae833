"""Collections, documents and search: the retrieval pipeline's wire types."""

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ._base import StrictRequest, WireModel
from ._checks import MAX_JSON_DEPTH, MAX_METADATA_BYTES, check_json_value, text_problem

__all__ = [
    "COLLECTION_NAME_PATTERN",
    "IndexType",
    "Metadata",
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
    "SearchMode",
    "HybridWeights",
    "SearchRequest",
    "SearchHit",
    "SearchTimings",
    "SearchResult",
]

COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(COLLECTION_NAME_PATTERN)
IndexType = Literal["auto", "exact", "hnsw"]



def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    return check_json_value(value, what="metadata", max_bytes=MAX_METADATA_BYTES)


def _filter(value: dict[str, Any]) -> dict[str, Any]:
    return check_json_value(value, what="filter", stored=False)


Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]
"""A document's metadata: a JSON object of null, booleans, integers within 64 bits, finite floats,
strings of valid Unicode without NUL, lists and objects; at most MAX_JSON_DEPTH (16) levels deep and
MAX_METADATA_BYTES (64 KiB) as JSON. Anything else is refused (422) before it is stored, so a stored
document can always be sent back."""

MetadataFilter = Annotated[dict[str, Any], AfterValidator(_filter)]

SearchMode = Literal["dense", "lexical", "hybrid"]
"""dense: vector search (the query is embedded); lexical: full-text search; hybrid: both, fused by
reciprocal rank fusion. The reranker then reorders the candidates in every mode."""
LEXICAL_LANGUAGE_PATTERN = r"^[a-z_]{1,63}$"
"""`{"key": value}` keeps documents whose metadata[key] equals value; `{"key": {"$in": [a, b]}}` any of
the values; several keys must all match. Values follow the metadata rules."""


class CreateCollectionRequest(StrictRequest):
    """Body of PUT /v1/collections/{name}; every field is optional."""

    model: str | None = Field(default=None, description="Embedding model; the default embedder if omitted.")
    dimensions: int | None = Field(default=None, ge=1, description="Matryoshka width; the model's full width if "
                                                                    "omitted.")
    index: IndexType = Field(
        default="auto", description="auto: exact search while small, HNSW above a size threshold; or force one."
    )
    lexical_language: str = Field(
        default="simple", pattern=LEXICAL_LANGUAGE_PATTERN,
        description="Full-text index language: `simple` (lower-cased words, no stemming) or `english` (Porter "
        "stemming; stop words dropped on PostgreSQL) on every backend; PostgreSQL also takes its other text "
        "search configurations (`german`, `french`, ...). CJK text is indexed as character bigrams in all.",
    )


class Collection(WireModel):
    name: str
    model: str = Field(description="The embedding model the collection is bound to.")
    dimensions: int
    index: IndexType = "auto"
    lexical_language: str = Field(default="simple", description="Language of the full-text index.")
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
    metadata: Metadata | None = Field(
        default=None, description=f"A JSON object, filterable by key: JSON scalars (integers within 64 bits, finite "
        f"numbers, text without NUL), lists and objects, at most {MAX_JSON_DEPTH} levels and {MAX_METADATA_BYTES} "
        "bytes.")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be empty or whitespace only")
        return value

    @field_validator("id", "text")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        problem = None if value is None else text_problem(value, stored=True)
        if problem:
            raise PydanticCustomError("text_invalid", f"text {problem}")
        return value


class UpsertRequest(StrictRequest):
    documents: list[Document] = Field(min_length=1, description="Documents to insert or replace (by id); each id "
                                      "at most once per request.")

    @field_validator("documents")
    @classmethod
    def _ids_once(cls, documents: list[Document]) -> list[Document]:
        # One upload writes each document once: with an id twice, which text wins would be an accident of
        # order (and, over shards, of timing); refused before anything is embedded or stored.
        seen: dict[str, int] = {}
        for position, document in enumerate(documents):
            if document.id is None:
                continue
            first = seen.setdefault(document.id, position)
            if first != position:
                raise PydanticCustomError(
                    "duplicate_id", "document id {id} appears more than once in this upload (documents {first} "
                    "and {position}); send each id once",
                    {"id": repr(document.id), "first": first, "position": position})
        return documents


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


class HybridWeights(StrictRequest):
    """RRF weights of the two retrievers in hybrid mode: fused = sum of weight / (rrf_k + rank)."""

    dense: float = Field(default=1.0, ge=0, le=100, description="Weight of the vector retriever.")
    lexical: float = Field(default=1.0, ge=0, le=100, description="Weight of the full-text retriever.")

    @model_validator(mode="after")
    def _not_both_zero(self) -> "HybridWeights":
        if self.dense == 0 and self.lexical == 0:
            raise ValueError("at least one weight must be above 0")
        return self


class SearchRequest(StrictRequest):
    """Body of POST /v1/collections/{name}/search: retrieve (dense, lexical or hybrid) -> rerank."""

    query: str | list[str] = Field(description="A query, or a list of queries (answered with a list).")
    mode: SearchMode = Field(
        default="dense",
        description="dense: vector search; lexical: full-text search (BM25 on the embedded index, ts_rank on "
        "PostgreSQL), no query embedding; hybrid: both, `top_k` candidates each, fused by reciprocal rank "
        "fusion and cut at `top_k` before reranking.",
    )
    rrf_k: int = Field(default=60, ge=1, le=10000,
                       description="hybrid: the RRF constant k in weight / (k + rank); 60 as in the RRF paper.")
    weights: HybridWeights | None = Field(default=None, description="hybrid: per-retriever RRF weights (1 each).")
    top_k: int | None = Field(
        default=None, ge=1,
        description="Candidates taken from each retriever (and reranked). Omitted: the server's default, 100 (the "
        "Qwen3 evaluation's) when the reranker runs on a GPU or the search does not rerank, 20 when the reranker "
        "runs on CPU (100 candidates through a 0.6B reranker take minutes on a few cores); never below `top_n`.",
    )
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

    @field_validator("rrf_k", "weights")
    @classmethod
    def _fusion_only_in_hybrid_mode(cls, value: object, info: ValidationInfo) -> object:
        mode = info.data.get("mode")
        if mode is not None and mode != "hybrid":
            raise ValueError(f"{info.field_name} applies to mode 'hybrid' only (this request's mode is {mode!r})")
        return value

    @model_validator(mode="after")
    def _top_n_within_top_k(self) -> "SearchRequest":
        if self.rerank and self.top_k is not None and self.top_n > self.top_k:
            raise ValueError(f"top_n ({self.top_n}) must not exceed top_k ({self.top_k})")
        return self

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)


class SearchHit(WireModel):
    id: str
    text: str
    metadata: dict[str, Any] | None = None
    score: float = Field(description="Reranker P(yes); with rerank off the retriever's score: embedding score "
                         "(dense), lexical score (lexical) or fused score (hybrid).")
    embedding_score: float | None = Field(
        default=None, description="Cosine similarity of query and document vectors; null when only the lexical "
        "retriever found the document.")
    lexical_score: float | None = Field(
        default=None, description="Full-text score (BM25 on the embedded index, ts_rank on PostgreSQL), when the "
        "lexical retriever found the document.")
    fused_score: float | None = Field(default=None, description="hybrid: the reciprocal rank fusion score.")
    retrievers: dict[str, int] | None = Field(
        default=None, description="Which retrievers found the document and its 1-based rank in each, e.g. "
        '`{"dense": 3, "lexical": 1}`.')


class SearchTimings(WireModel):
    embed_ms: float = 0.0
    search_ms: float = 0.0
    rerank_ms: float = 0.0
    total_ms: float = 0.0


class SearchResult(WireModel):
    results: list[SearchHit] = Field(description="Best first.")
    top_k: int | None = Field(default=None, description="Candidates taken per retriever: the request's `top_k`, or "
                              "the server's default for it.")
    timings: SearchTimings


def valid_collection_name(name: str) -> bool:
    return bool(_NAME.match(name))
