"""TEST ADAPTER, not production code: a `CollectionIndex` over in-process `IndexShard` objects.

The lead's `ShardedIndex` drives IndexShard deployments through Ray handles; this adapter calls
the same shard methods directly (no Ray), fanning out and merging the way `SearchPipeline` does
today (documents by `shard_of(id)`, the catalog on shard 0, counts summed, hits merged by score),
so the contract suite in test_collection_index.py can run the same behaviour tests against the
embedded backend and against PostgresIndex.
"""

import asyncio
from typing import Any

import numpy as np

from deployments.index.base import CollectionInfo, DocumentWrite, Hit
from deployments.index.shard import IndexShard
from deployments.index.validation import reject_duplicate_ids
from deployments.jobs import Refusal
from deployments.serving.sharded_index import shard_of


def _unwrap(value: Any) -> Any:
    if isinstance(value, Refusal):
        raise value.error
    return value


class EmbeddedShardsIndex:
    """`shards` IndexShard objects in one folder, behind the CollectionIndex methods."""

    name = "embedded"

    def __init__(self, storage_path: str, shards: int = 2, hnsw_threshold: int = 20000) -> None:
        self.shards = [IndexShard(i, shards, storage_path, hnsw_threshold=hnsw_threshold) for i in range(shards)]

    @staticmethod
    def _info(record: dict[str, Any], count: int = 0) -> CollectionInfo:
        return CollectionInfo(name=record["name"], model=record["model"], dimensions=record["dimensions"],
                              index=record["index"], created_at=record["created_at"], count=count)

    async def create_collection(self, name: str, model: str, dimensions: int, index: str
                                ) -> tuple[CollectionInfo, bool]:
        first = _unwrap(await self.shards[0].create_collection(name, model, dimensions, index))
        for result in await asyncio.gather(*(s.create_collection(name, model, dimensions, index)
                                             for s in self.shards[1:])):
            _unwrap(result)
        created = bool(first.pop("created"))
        return (self._info(first) if created else await self.get_collection(name)), created

    async def _count(self, name: str) -> int:
        counts = await asyncio.gather(*(s.collection(name) for s in self.shards))
        return sum(c["count"] for c in counts if not isinstance(c, Refusal))

    async def get_collection(self, name: str) -> CollectionInfo:
        record = _unwrap(await self.shards[0].collection(name))
        return self._info(record, await self._count(name))

    async def list_collections(self) -> list[CollectionInfo]:
        return [await self.get_collection(c["name"]) for c in _unwrap(await self.shards[0].collections())]

    async def delete_collection(self, name: str) -> None:
        _unwrap(await self.shards[0].collection(name))
        await asyncio.gather(*(s.delete_collection(name) for s in self.shards[1:]))
        _unwrap(await self.shards[0].delete_collection(name))

    async def upsert(self, collection: CollectionInfo, documents: list[DocumentWrite]) -> int:
        reject_duplicate_ids(d.id for d in documents)  # what ShardedIndex should do before splitting
        record = {"name": collection.name, "model": collection.model, "dimensions": collection.dimensions,
                  "index": collection.index}
        by_shard: dict[int, list[tuple[str, str, Any, np.ndarray]]] = {}
        for d in documents:
            by_shard.setdefault(shard_of(d.id, len(self.shards)), []).append((d.id, d.text, d.metadata, d.vector))
        results = await asyncio.gather(*(self.shards[i].upsert(record, docs) for i, docs in by_shard.items()))
        return sum(_unwrap(r) for r in results)

    async def get_document(self, collection: str, doc_id: str) -> dict[str, Any]:
        _unwrap(await self.shards[0].collection(collection))
        return _unwrap(await self.shards[shard_of(doc_id, len(self.shards))].get_document(collection, doc_id))

    async def delete_document(self, collection: str, doc_id: str) -> None:
        _unwrap(await self.shards[0].collection(collection))
        _unwrap(await self.shards[shard_of(doc_id, len(self.shards))].delete_document(collection, doc_id))

    async def search(self, collection: str, queries: np.ndarray, k: int, filter_: dict[str, Any] | None,
                     exact: bool) -> list[list[Hit]]:
        _unwrap(await self.shards[0].collection(collection))
        per_shard = await asyncio.gather(*(s.search(collection, queries, k, filter_, exact) for s in self.shards))
        merged: list[list[dict[str, Any]]] = [[] for _ in range(len(queries))]
        for shard_hits in per_shard:
            for q, hits in enumerate(_unwrap(shard_hits)):
                merged[q].extend(hits)
        return [[Hit(**h) for h in sorted(hits, key=lambda h: -h["embedding_score"])[:k]] for hits in merged]

    async def health(self) -> dict[str, str]:
        return {f"shard-{s.shard}": await s.ping() for s in self.shards}

    async def close(self) -> None:
        for shard in self.shards:
            shard.store.close()
