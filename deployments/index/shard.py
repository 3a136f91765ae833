"""IndexShard: one shard of every collection, as a Ray Serve deployment body (no model code).

Writes go to the DocumentStore first and are acknowledged only after COMMIT (durable);
the in-memory VectorSet and MetadataIndex are updated before the call returns, so a
search right after an acknowledged upsert or delete sees it. At start the shard rebuilds
its in-memory structures from its SQLite file. All work runs on one worker thread, which
serialises writes and keeps the replica's event loop free.

A shard must run as exactly one replica: it owns its file and its in-memory index.
"""

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..engine.errors import EngineError
from ..jobs import Refusal
from .errors import CollectionConflict, CollectionNotFound, DocumentNotFound
from .filters import MetadataIndex, parse_filter
from .lexical import DEFAULT_LEXICAL_LANGUAGE
from .store import CollectionRecord, DocumentStore
from .validation import reject_duplicate_ids
from .vectors import VectorSet

__all__ = ["IndexShard", "shard_path"]

T = TypeVar("T")
logger = logging.getLogger(__name__)


def shard_path(storage_path: str, shard: int) -> Path:
    """The SQLite file of a shard; $QWEN3_SEARCH_DATA_DIR overrides the configured folder."""
    return Path(os.environ.get("QWEN3_SEARCH_DATA_DIR") or storage_path).expanduser() / f"shard-{shard}.sqlite3"


class _Collection:
    def __init__(self, record: CollectionRecord, vector_options: dict[str, Any]) -> None:
        self.record = record
        self.vectors = VectorSet(record.dimensions, index_type=record.index_type,  # type: ignore[arg-type]
                                 **vector_options)
        self.metadata = MetadataIndex()


class IndexShard:
    """Shard `shard` of `shards`; documents reach it by a hash of their id."""

    def __init__(self, shard: int, shards: int, storage_path: str, hnsw_threshold: int = 20000,
                 expansion_search: int = 128) -> None:
        self.shard, self.shards = shard, shards
        self._vector_options = {"hnsw_threshold": hnsw_threshold, "expansion_search": expansion_search}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"index-shard-{shard}")
        started = time.perf_counter()
        self.store = DocumentStore(shard_path(storage_path, shard), shard=shard, shards=shards)
        self._collections: dict[str, _Collection] = {}
        for record in self.store.collections():
            self._load(record)
        self.load_seconds = time.perf_counter() - started
        for name, count in self.store.lexical_built.items():  # an upgrade, or a changed text preparation
            logger.info("shard %d: built the full-text index of collection %r (%d documents)", shard, name, count)

    def _load(self, record: CollectionRecord) -> _Collection:
        collection = _Collection(record, self._vector_options)
        all_labels, all_vectors = [], []
        for labels, vectors, metadata in self.store.vectors(record.name, record.dimensions):
            all_labels.append(labels)
            all_vectors.append(vectors)
            for label, meta in zip(labels.tolist(), metadata, strict=True):
                collection.metadata.add(label, meta)
        if all_labels:
            collection.vectors.upsert(np.concatenate(all_labels), np.concatenate(all_vectors))
        self._collections[record.name] = collection
        return collection

    async def _run(self, fn: Callable[..., T], *args: Any) -> T | Refusal:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except EngineError as exc:  # a caller's mistake: returned, not raised (see jobs.Refusal)
            return Refusal(exc)

    def _get(self, name: str) -> _Collection:
        collection = self._collections.get(name)
        if collection is None:
            raise CollectionNotFound(f"collection {name!r} does not exist", param="name")
        return collection

    # ----- collections -----
    def _create(self, name: str, model: str, dimensions: int, index_type: str,
                lexical_language: str = DEFAULT_LEXICAL_LANGUAGE) -> dict[str, Any]:
        record, created = self.store.create_collection(name, model, dimensions, index_type,
                                                       lexical_language=lexical_language)
        if name not in self._collections:
            self._collections[name] = _Collection(record, self._vector_options)
        return {**record.as_dict(), "lexical_language": lexical_language, "created": created}

    async def create_collection(self, name: str, model: str, dimensions: int, index_type: str,
                                lexical_language: str = DEFAULT_LEXICAL_LANGUAGE) -> dict[str, Any] | Refusal:
        return await self._run(self._create, name, model, dimensions, index_type, lexical_language)

    def _describe(self, name: str) -> dict[str, Any]:
        collection = self._get(name)
        return {**collection.record.as_dict(), "count": len(collection.vectors),
                "lexical_language": self.store.lexical_language(name) or DEFAULT_LEXICAL_LANGUAGE}

    async def collection(self, name: str) -> dict[str, Any] | Refusal:
        return await self._run(self._describe, name)

    async def collections(self) -> list[dict[str, Any]] | Refusal:
        return await self._run(lambda: [self._describe(name) for name in sorted(self._collections)])

    def _delete_collection(self, name: str) -> bool:
        deleted = self.store.delete_collection(name)
        self._collections.pop(name, None)
        return deleted

    async def delete_collection(self, name: str) -> bool | Refusal:
        return await self._run(self._delete_collection, name)

    # ----- documents -----
    def _upsert(self, record: dict[str, Any], documents: list[tuple[str, str, dict[str, Any] | None, np.ndarray]]
                ) -> int:
        name = record["name"]
        collection = self._collections.get(name)
        if collection is None:
            # Never created here: a collection absent from this shard was deleted (a delete is final, so an
            # upload still in flight must not bring it back), or its creation did not finish on every shard.
            raise CollectionNotFound(
                f"collection {name!r} does not exist: it was deleted while this upload was in flight (if it is "
                "still listed, its creation did not complete on every shard: create it again, then upload)",
                param="name")
        if collection.record.dimensions != record["dimensions"] or collection.record.model != record["model"]:
            raise CollectionConflict(f"collection {name!r} changed while writing; retry", param="name")
        reject_duplicate_ids(d[0] for d in documents)  # one row per id, so one label per vector below
        labels = self.store.upsert(name, documents)  # durable before anything else changes
        try:
            collection.vectors.upsert(np.asarray(labels, dtype=np.int64), np.stack([d[3] for d in documents]))
            for label, document in zip(labels, documents, strict=True):
                collection.metadata.add(label, document[2])
        except Exception:
            # The store committed; memory must not disagree with it (a filter missing rows): rebuild it.
            self._load(collection.record)
            raise
        return len(labels)

    async def upsert(self, record: dict[str, Any], documents: list[tuple[str, str, dict[str, Any] | None, np.ndarray]]
                     ) -> int | Refusal:
        """Store a batch in one transaction; returns how many were written."""
        return await self._run(self._upsert, record, documents)

    def _get_document(self, name: str, doc_id: str) -> dict[str, Any]:
        self._get(name)
        row = self.store.get(name, doc_id)
        if row is None:
            raise DocumentNotFound(f"no document {doc_id!r} in collection {name!r}", param="id")
        return {"id": row.id, "text": row.text, "metadata": row.metadata}

    async def get_document(self, name: str, doc_id: str) -> dict[str, Any] | Refusal:
        return await self._run(self._get_document, name, doc_id)

    def _delete_document(self, name: str, doc_id: str) -> bool:
        collection = self._get(name)
        label = self.store.delete(name, doc_id)
        if label is None:
            raise DocumentNotFound(f"no document {doc_id!r} in collection {name!r}", param="id")
        collection.vectors.remove([label])
        collection.metadata.remove(label)
        return True

    async def delete_document(self, name: str, doc_id: str) -> bool | Refusal:
        return await self._run(self._delete_document, name, doc_id)

    # ----- search -----
    def _search(self, name: str, queries: np.ndarray, k: int, filter_: dict[str, Any] | None, exact: bool
                ) -> list[list[dict[str, Any]]]:
        parsed = parse_filter(filter_)
        collection = self._collections.get(name)
        if collection is None:  # nothing of this collection on this shard yet
            return [[] for _ in range(len(queries))]
        allowed = collection.metadata.matching(parsed) if parsed else None
        found = collection.vectors.search(queries, k, allowed=allowed, exact=exact)
        rows = self.store.rows(sorted({int(label) for labels, _ in found for label in labels}))
        return [[{"id": rows[int(label)].id, "text": rows[int(label)].text, "metadata": rows[int(label)].metadata,
                  "embedding_score": float(score)}
                 for label, score in zip(labels, scores, strict=True) if int(label) in rows]
                for labels, scores in found]

    async def search(self, name: str, queries: np.ndarray, k: int, filter_: dict[str, Any] | None = None,
                     exact: bool = False) -> list[list[dict[str, Any]]] | Refusal:
        """The k best documents per query on this shard, with text and metadata, best first."""
        return await self._run(self._search, name, queries, k, filter_, exact)

    def _lexical_search(self, name: str, queries: list[str], k: int, filter_: dict[str, Any] | None
                        ) -> list[list[dict[str, Any]]]:
        parsed = parse_filter(filter_)
        collection = self._collections.get(name)
        if collection is None:
            return [[] for _ in queries]
        allowed = collection.metadata.matching(parsed) if parsed else None
        found = self.store.lexical_search(name, queries, k, allowed)
        rows = self.store.rows(sorted({label for hits in found for label, _ in hits}))
        return [[{"id": rows[label].id, "text": rows[label].text, "metadata": rows[label].metadata,
                  "lexical_score": score} for label, score in hits if label in rows]
                for hits in found]

    async def lexical_search(self, name: str, queries: list[str], k: int, filter_: dict[str, Any] | None = None
                             ) -> list[list[dict[str, Any]]] | Refusal:
        """The k best full-text (BM25) matches per query on this shard, with text and metadata, best first."""
        return await self._run(self._lexical_search, name, queries, k, filter_)

    async def ping(self) -> str:
        return "ok"

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False)
