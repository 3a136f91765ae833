"""The index contract: what the search pipeline needs from a store of collections.

Two backends implement it:
- `embedded` (default): SQLite + in-memory exact/HNSW shards, each an `IndexShard`
  deployment; `ShardedIndex` fans a call out over their handles (one machine).
- `postgres`: PostgreSQL + pgvector, reached directly from every stateless pipeline
  replica (scales with the database).

Two retrievers per collection: `search` (vectors) and `lexical_search` (full text: SQLite FTS5
BM25 on the embedded backend, PostgreSQL full-text search on postgres; see `lexical.py`). Both
take the same filters; the pipeline fuses their ranked lists (`fusion.py`).

Values crossing this boundary are plain dataclasses and numpy arrays: no Ray, no torch.
Errors are the typed ones of `deployments.index.errors`, raised (the pipeline turns a
client's mistake into a `Refusal` for the ingress).
"""

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["CollectionInfo", "DocumentWrite", "Hit", "CollectionIndex"]


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as the API shows it."""

    name: str
    model: str
    dimensions: int
    index: str
    """auto, exact or hnsw."""
    created_at: float
    count: int = 0
    lexical_language: str = "simple"
    """Tokenizer / stemming of the collection's full-text index (lexical.py)."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "dimensions": self.dimensions, "index": self.index,
                "created_at": self.created_at, "count": self.count, "lexical_language": self.lexical_language}


@dataclass(frozen=True)
class DocumentWrite:
    """One document to store, with its embedding (float32, the collection's width, unit length)."""

    id: str
    text: str
    metadata: dict[str, Any] | None
    vector: np.ndarray


@dataclass
class Hit:
    """One search candidate, best first within its query."""

    id: str
    text: str
    metadata: dict[str, Any] | None
    embedding_score: float | None
    """Inner product of the query and document embeddings (cosine: both are unit vectors); None for a
    lexical hit (the lexical retriever compares no vectors)."""
    lexical_score: float | None = None
    """The lexical retriever's score (higher is better: BM25 on embedded, ts_rank on postgres)."""


@runtime_checkable
class CollectionIndex(Protocol):
    """Collections, documents and vector search; every write is durable when the call returns."""

    name: str
    """The backend's name, as /health and /info report it: embedded or postgres."""

    async def create_collection(self, name: str, model: str, dimensions: int, index: str, *,
                                lexical_language: str = "simple") -> tuple[CollectionInfo, bool]:
        """The collection and whether it was created; CollectionConflict when one differs (lexical_language
        included); InvalidIndexRequest for a lexical_language the backend does not have."""
        ...

    async def get_collection(self, name: str) -> CollectionInfo:
        """With its document count; CollectionNotFound when absent."""
        ...

    async def describe(self, name: str) -> CollectionInfo:
        """Its settings as stored now, without counting its documents (`count` is 0); CollectionNotFound
        when absent. What the search and upload paths need (model, width, created_at) at the cost of one
        catalog lookup: counting is a scan of the collection on Postgres."""
        ...

    async def list_collections(self) -> list[CollectionInfo]:
        ...

    async def delete_collection(self, name: str) -> None:
        """CollectionNotFound when absent. A delete is final: no write in flight brings it back."""
        ...

    async def upsert(self, collection: CollectionInfo, documents: list[DocumentWrite]) -> int:
        """Insert or replace by id, in one transaction per storage unit; returns documents stored."""
        ...

    async def get_document(self, collection: str, doc_id: str) -> dict[str, Any]:
        """`{"id", "text", "metadata"}`; DocumentNotFound when absent."""
        ...

    async def delete_document(self, collection: str, doc_id: str) -> None:
        """DocumentNotFound when absent."""
        ...

    async def search(self, collection: str, queries: np.ndarray, k: int, filter_: dict[str, Any] | None,
                     exact: bool) -> list[list[Hit]]:
        """The k best documents per query (rows of `queries`), best first, filters applied before ranking."""
        ...

    async def lexical_search(self, collection: str, queries: list[str], k: int, filter_: dict[str, Any] | None
                             ) -> list[list[Hit]]:
        """The k best full-text matches per query (any of its words), best first, with `lexical_score` set;
        filters applied before ranking. A query without any word finds nothing."""
        ...

    async def health(self) -> dict[str, str]:
        """Component name -> "ok" or what is wrong, for GET /health."""
        ...
