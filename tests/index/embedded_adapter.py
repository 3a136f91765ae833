"""TEST ADAPTER, not production code: the embedded backend's `ShardedIndex` over in-process `IndexShard`s.

In the app, `ShardedIndex` drives IndexShard deployments through Ray handles; here `LocalHandle`
stands in for Ray's transport only (`handle.method.remote(*args)` awaits the real shard method in
this process), so the contract suite in test_collection_index.py runs the production fan-out and
merging code against the embedded backend and the same behaviour tests against PostgresIndex.
"""

from typing import Any

import numpy as np

from deployments.index.base import CollectionInfo, DocumentWrite, Hit
from deployments.index.shard import IndexShard
from deployments.index.validation import reject_duplicate_ids
from deployments.jobs import unwrap
from deployments.serving.sharded_index import ShardedIndex


class _Remote:
    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)


class LocalHandle:
    """`handle.method.remote(...)` -> `await target.method(...)`, in this process."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> _Remote:
        return _Remote(getattr(self.target, name))


class EmbeddedShardsIndex(ShardedIndex):
    """`shards` IndexShard objects in one folder, behind ShardedIndex."""

    def __init__(self, storage_path: str, shards: int = 2, hnsw_threshold: int = 20000) -> None:
        self.local_shards = [IndexShard(i, shards, storage_path, hnsw_threshold=hnsw_threshold)
                             for i in range(shards)]
        super().__init__([LocalHandle(s) for s in self.local_shards])

    async def upsert(self, collection: CollectionInfo, documents: list[DocumentWrite]) -> int:
        reject_duplicate_ids(d.id for d in documents)  # what ShardedIndex should do before splitting
        return await super().upsert(collection, documents)

    # The pipeline looks the collection up before searching; the contract asks the index itself.
    async def search(self, collection: str, queries: np.ndarray, k: int, filter_: dict[str, Any] | None,
                     exact: bool) -> list[list[Hit]]:
        await self._record(collection)
        return await super().search(collection, queries, k, filter_, exact)

    async def lexical_search(self, collection: str, queries: list[str], k: int, filter_: dict[str, Any] | None
                             ) -> list[list[Hit]]:
        await self._record(collection)
        return await super().lexical_search(collection, queries, k, filter_)

    async def health(self) -> dict[str, str]:
        return {f"shard-{s.shard}": await s.ping() for s in self.local_shards}

    async def close(self) -> None:
        for shard in self.local_shards:
            shard.store.close()


__all__ = ["EmbeddedShardsIndex", "LocalHandle", "unwrap"]
