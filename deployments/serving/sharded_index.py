"""ShardedIndex: the embedded backend of `CollectionIndex`, fanned out over IndexShard handles.

Documents go to shard `blake2b(id) % shards`; shard 0 holds the authoritative collection
record (created first, deleted last). With one shard an upload is all or nothing; with
several, each shard's share is, and a retry (idempotent by id) completes an interrupted one.
A collection exists on every shard from its creation; a shard never creates one during an
upload, so a delete that lands while an upload is in flight stays final (the upload gets 404).

Lexical search asks every shard for its k best BM25 matches and keeps the k best by score. Each
shard's BM25 statistics (document frequencies, average length) are its own; documents are spread
by a hash of their id, so the shards' statistics agree closely on any collection big enough to
shard, and the merged ranking is that of one index up to that sampling noise.
"""

import asyncio
import hashlib
from typing import Any

from ..index.base import CollectionInfo, DocumentWrite, Hit
from ..index.lexical import DEFAULT_LEXICAL_LANGUAGE
from ..index.validation import reject_duplicate_ids
from ..jobs import Refusal, unwrap

__all__ = ["ShardedIndex", "shard_of"]


def shard_of(doc_id: str, shards: int) -> int:
    """The shard a document id lives on: stable across processes and restarts."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big") % shards


def _info(record: dict[str, Any], count: int) -> CollectionInfo:
    return CollectionInfo(name=record["name"], model=record["model"], dimensions=int(record["dimensions"]),
                          index=record["index"], created_at=float(record["created_at"]), count=count,
                          lexical_language=record.get("lexical_language", DEFAULT_LEXICAL_LANGUAGE))


class ShardedIndex:
    """A `CollectionIndex` over `IndexShard` deployment handles (or any objects with the same
    methods whose calls are `.remote(...)` awaitables)."""

    name = "embedded"

    def __init__(self, shards: list[Any]) -> None:
        self.shards = shards

    async def _record(self, name: str) -> dict[str, Any]:
        return unwrap(await self.shards[0].collection.remote(name))

    async def _count(self, name: str) -> int:
        answers = await asyncio.gather(*(s.collection.remote(name) for s in self.shards))
        total = 0
        for answer in answers:
            if isinstance(answer, Refusal):  # a shard that never saw this collection holds none of it
                from ..index.errors import CollectionNotFound

                if isinstance(answer.error, CollectionNotFound):
                    continue
                raise answer.error
            total += int(answer["count"])
        return total

    async def create_collection(self, name: str, model: str, dimensions: int, index: str, *,
                                lexical_language: str = DEFAULT_LEXICAL_LANGUAGE) -> tuple[CollectionInfo, bool]:
        first = unwrap(await self.shards[0].create_collection.remote(name, model, dimensions, index,
                                                                     lexical_language))
        for result in await asyncio.gather(*(s.create_collection.remote(name, model, dimensions, index,
                                                                        lexical_language)
                                             for s in self.shards[1:])):
            unwrap(result)
        created = bool(first.pop("created"))
        return _info(first, 0 if created else await self._count(name)), created

    async def get_collection(self, name: str) -> CollectionInfo:
        record = await self._record(name)
        return _info(record, await self._count(name))

    async def describe(self, name: str) -> CollectionInfo:
        return _info(await self._record(name), 0)  # shard 0's catalog entry: one call, no fan-out

    async def list_collections(self) -> list[CollectionInfo]:
        per_shard = [unwrap(answer) for answer in
                     await asyncio.gather(*(s.collections.remote() for s in self.shards))]
        counts: dict[str, int] = {}
        for shard_list in per_shard:
            for c in shard_list:
                counts[c["name"]] = counts.get(c["name"], 0) + int(c["count"])
        return [_info(c, counts[c["name"]]) for c in sorted(per_shard[0], key=lambda c: c["name"])]

    async def delete_collection(self, name: str) -> None:
        await self._record(name)  # 404 when absent
        await asyncio.gather(*(s.delete_collection.remote(name) for s in self.shards[1:]))
        unwrap(await self.shards[0].delete_collection.remote(name))  # the catalog entry goes last

    async def upsert(self, collection: CollectionInfo, documents: list[DocumentWrite]) -> int:
        reject_duplicate_ids(d.id for d in documents)  # before any shard writes
        by_shard: dict[int, list[tuple[str, str, Any, Any]]] = {}
        for doc in documents:
            by_shard.setdefault(shard_of(doc.id, len(self.shards)), []).append(
                (doc.id, doc.text, doc.metadata, doc.vector))
        record = {"name": collection.name, "model": collection.model, "dimensions": collection.dimensions,
                  "index": collection.index, "lexical_language": collection.lexical_language}
        results = await asyncio.gather(*(self.shards[i].upsert.remote(record, docs) for i, docs in by_shard.items()))
        return sum(int(unwrap(result)) for result in results)

    async def get_document(self, collection: str, doc_id: str) -> dict[str, Any]:
        await self._record(collection)
        shard = self.shards[shard_of(doc_id, len(self.shards))]
        document: dict[str, Any] = unwrap(await shard.get_document.remote(collection, doc_id))
        return document

    async def delete_document(self, collection: str, doc_id: str) -> None:
        await self._record(collection)
        shard = self.shards[shard_of(doc_id, len(self.shards))]
        unwrap(await shard.delete_document.remote(collection, doc_id))

    async def search(self, collection: str, queries: Any, k: int, filter_: dict[str, Any] | None, exact: bool
                     ) -> list[list[Hit]]:
        per_shard = await asyncio.gather(*(s.search.remote(collection, queries, k, filter_, exact)
                                           for s in self.shards))
        candidates: list[list[Hit]] = [[] for _ in range(len(queries))]
        for shard_hits in per_shard:
            for q, hits in enumerate(unwrap(shard_hits)):
                candidates[q].extend(Hit(h["id"], h["text"], h["metadata"], h["embedding_score"]) for h in hits)
        return [sorted(hits, key=lambda h: -(h.embedding_score or 0.0))[:k] for hits in candidates]

    async def lexical_search(self, collection: str, queries: list[str], k: int, filter_: dict[str, Any] | None
                             ) -> list[list[Hit]]:
        per_shard = await asyncio.gather(*(s.lexical_search.remote(collection, queries, k, filter_)
                                           for s in self.shards))
        candidates: list[list[Hit]] = [[] for _ in range(len(queries))]
        for shard_hits in per_shard:
            for q, hits in enumerate(unwrap(shard_hits)):
                candidates[q].extend(Hit(h["id"], h["text"], h["metadata"], None, h["lexical_score"]) for h in hits)
        return [sorted(hits, key=lambda h: (-(h.lexical_score or 0.0), h.id))[:k] for hits in candidates]

    async def health(self) -> dict[str, str]:
        return {}  # each shard is its own deployment, pinged by the ingress
