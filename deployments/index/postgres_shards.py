"""PostgresShards: one CollectionIndex over several PostgreSQL clusters, documents split by id hash.

Past what one primary can hold or build (docs/scale.md: 100M x 1024 is about a terabyte with its
HNSW graphs), documents go to shard `blake2b(id) % shards`, as the embedded shards do, and every
search asks every shard for its k best and merges them by score (exact scores, so the merge is
exact). Each shard is an ordinary PostgresIndex (its own primary, replicas and pools) holding
every collection's catalog row and its share of the documents.

Shard 0's catalog is authoritative. A create goes to shard 0 first and then to the others with
shard 0's created_at; a delete goes to shard 0 first, so the collection is gone at once for every
caller, then to the others. Every shard's upload checks that its own catalog row carries that
created_at, in its write transaction, so an upload racing a delete is refused or deleted with the
rest, never brought back; a shard that missed a delete (it was down) keeps a stale row with an
older created_at, which the next create of that name replaces.

The shard count is fixed for the data's life (like `index.shards` of the embedded index): a
document's shard is a function of its id and the count.
"""

import asyncio
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import CollectionInfo, DocumentWrite, Hit
from .errors import CollectionConflict, CollectionNotFound, DocumentNotFound
from .postgres import PostgresIndex
from .postgres_config import DSN_ENV, READ_DSN_ENV, PostgresConfig
from .validation import reject_duplicate_ids

__all__ = ["PostgresShards", "shard_of", "postgres_index"]


def postgres_index(config: PostgresConfig, *, environ: Mapping[str, str] | None = None
                   ) -> "PostgresIndex | PostgresShards":
    """The index `index.postgres` describes: one cluster, or PostgresShards over `config.shards`."""
    if not config.shards:
        return PostgresIndex(config, environ=environ)
    return PostgresShards.from_dsns(config.model_copy(update={"shards": []}), [s.dsn for s in config.shards],
                                    [s.read_dsn for s in config.shards], environ=environ)


def shard_of(doc_id: str, shards: int) -> int:
    """The shard of a document id (the same function as deployments.pipeline.shard_of)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big") % shards


class PostgresShards:
    """A `CollectionIndex` over `PostgresIndex` shards (see the module docstring)."""

    name = "postgres"

    def __init__(self, shards: Sequence[PostgresIndex]) -> None:
        if not shards:
            raise ValueError("at least one shard")
        self.shards = list(shards)

    @classmethod
    def from_dsns(cls, config: PostgresConfig, dsns: Sequence[str], read_dsns: Sequence[str | None] | None = None,
                  *, environ: Mapping[str, str] | None = None) -> "PostgresShards":
        """One shard per primary DSN (and read endpoint), every other setting from `config`.

        `environ` (os.environ when None) supplies the password variable to each shard; the DSN
        overrides ($QWEN3_SEARCH_POSTGRES_DSN / _READ_DSN) are left out of it, since they would point
        every shard at one cluster."""
        reads = list(read_dsns) if read_dsns is not None else [None] * len(dsns)
        if len(reads) != len(dsns):
            raise ValueError(f"{len(dsns)} shard DSNs but {len(reads)} read DSNs")
        source = os.environ if environ is None else environ
        env = {k: v for k, v in source.items() if k not in (DSN_ENV, READ_DSN_ENV)}
        return cls([PostgresIndex(config.model_copy(update={"dsn": dsn, "read_dsn": read}), environ=env)
                    for dsn, read in zip(dsns, reads, strict=True)])

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.shards))

    # ----- collections -----
    async def create_collection(self, name: str, model: str, dimensions: int, index: str, *,
                                lexical_language: str = "simple") -> tuple[CollectionInfo, bool]:
        first, created = await self.shards[0].create_collection(name, model, dimensions, index,
                                                                lexical_language=lexical_language)
        await asyncio.gather(*(self._create_on(shard, first) for shard in self.shards[1:]))
        if created:
            return first, True
        return await self.get_collection(name), False

    @staticmethod
    async def _create_on(shard: PostgresIndex, first: CollectionInfo) -> None:
        for _ in range(3):
            try:
                info, _ = await shard.create_collection(first.name, first.model, first.dimensions, first.index,
                                                        created_at=first.created_at,
                                                        lexical_language=first.lexical_language)
            except CollectionConflict:
                info = (await shard.get_collection(first.name))
                if info.created_at == first.created_at:
                    raise
            if info.created_at == first.created_at:
                return
            # a row left by a delete this shard missed: it belongs to an older collection
            try:
                await shard.delete_collection(first.name)
            except CollectionNotFound:
                pass
        raise CollectionConflict(f"collection {first.name!r} keeps changing on a shard; retry", param="name")

    async def get_collection(self, name: str) -> CollectionInfo:
        first = await self.shards[0].get_collection(name)
        counts = await asyncio.gather(*(self._count(shard, first) for shard in self.shards[1:]))
        return CollectionInfo(**{**first.as_dict(), "count": first.count + sum(counts)})

    async def describe(self, name: str) -> CollectionInfo:
        return await self.shards[0].describe(name)  # shard 0's catalog is authoritative

    @staticmethod
    async def _count(shard: PostgresIndex, first: CollectionInfo) -> int:
        try:
            info = await shard.get_collection(first.name)
        except CollectionNotFound:
            return 0
        return info.count if info.created_at == first.created_at else 0  # a stale row counts nothing

    async def list_collections(self) -> list[CollectionInfo]:
        listings = await asyncio.gather(*(shard.list_collections() for shard in self.shards))
        result = []
        for first in listings[0]:
            count = first.count
            for listing in listings[1:]:
                count += sum(c.count for c in listing if c.name == first.name and c.created_at == first.created_at)
            result.append(CollectionInfo(**{**first.as_dict(), "count": count}))
        return result

    async def delete_collection(self, name: str) -> None:
        await self.shards[0].delete_collection(name)  # CollectionNotFound when absent; gone for every caller

        async def rest(shard: PostgresIndex) -> None:
            try:
                await shard.delete_collection(name)
            except CollectionNotFound:
                pass

        await asyncio.gather(*(rest(shard) for shard in self.shards[1:]))

    # ----- documents -----
    async def upsert(self, collection: CollectionInfo, documents: list[DocumentWrite]) -> int:
        reject_duplicate_ids(d.id for d in documents)
        by_shard: dict[int, list[DocumentWrite]] = {}
        for document in documents:
            by_shard.setdefault(shard_of(document.id, len(self.shards)), []).append(document)
        # Each shard's share is one transaction; a retry (idempotent by id) completes a partial upload.
        stored = await asyncio.gather(*(self.shards[i].upsert(collection, docs) for i, docs in by_shard.items()))
        return sum(stored)

    def _shard(self, doc_id: str) -> PostgresIndex:
        return self.shards[shard_of(doc_id, len(self.shards))]

    async def _current(self, shard: PostgresIndex, name: str) -> bool:
        """Whether `shard` holds the collection that shard 0 holds under `name` (CollectionNotFound when
        shard 0 has none); a shard's stale row of a deleted one does not count."""
        first = await self.shards[0].describe(name, refresh=False)
        if shard is self.shards[0]:
            return True
        for refresh in (False, True):  # caches may lag a delete and re-create elsewhere
            try:
                if (await shard.describe(name, refresh=refresh)).created_at == first.created_at:
                    return True
            except CollectionNotFound:
                pass
            if not refresh:
                first = await self.shards[0].describe(name, refresh=True)
        return False

    async def get_document(self, collection: str, doc_id: str) -> dict[str, Any]:
        shard = self._shard(doc_id)
        if not await self._current(shard, collection):
            raise DocumentNotFound(f"no document {doc_id!r} in collection {collection!r}", param="id")
        return await shard.get_document(collection, doc_id)

    async def delete_document(self, collection: str, doc_id: str) -> None:
        shard = self._shard(doc_id)
        if not await self._current(shard, collection):
            raise DocumentNotFound(f"no document {doc_id!r} in collection {collection!r}", param="id")
        await shard.delete_document(collection, doc_id)

    async def search(self, collection: str, queries: np.ndarray, k: int, filter_: dict[str, Any] | None,
                     exact: bool) -> list[list[Hit]]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        current = await asyncio.gather(*(self._current(shard, collection) for shard in self.shards))
        per_shard = await asyncio.gather(*(self._search_on(shard, collection, queries, k, filter_, exact)
                                           for shard, ok in zip(self.shards, current, strict=True) if ok))
        merged: list[list[Hit]] = [[] for _ in range(len(queries))]
        for hits_per_query in per_shard:
            for q, hits in enumerate(hits_per_query):
                merged[q].extend(hits)
        return [sorted(hits, key=lambda h: -(h.embedding_score or 0.0))[:k] for hits in merged]

    async def lexical_search(self, collection: str, queries: list[str], k: int, filter_: dict[str, Any] | None
                             ) -> list[list[Hit]]:
        """Every shard's k best full-text matches, merged by score: ts_rank uses no corpus statistics, so
        a document scores the same on whichever shard it lives and the merge is exact."""
        current = await asyncio.gather(*(self._current(shard, collection) for shard in self.shards))

        async def on(shard: PostgresIndex) -> list[list[Hit]]:
            try:
                return await shard.lexical_search(collection, queries, k, filter_)
            except CollectionNotFound:
                if shard is self.shards[0]:
                    raise
                return [[] for _ in queries]

        per_shard = await asyncio.gather(*(on(s) for s, ok in zip(self.shards, current, strict=True) if ok))
        merged: list[list[Hit]] = [[] for _ in queries]
        for hits_per_query in per_shard:
            for q, hits in enumerate(hits_per_query):
                merged[q].extend(hits)
        return [sorted(hits, key=lambda h: (-(h.lexical_score or 0.0), h.id))[:k] for hits in merged]

    async def _search_on(self, shard: PostgresIndex, collection: str, queries: np.ndarray, k: int,
                         filter_: dict[str, Any] | None, exact: bool) -> list[list[Hit]]:
        try:
            return await shard.search(collection, queries, k, filter_, exact)
        except CollectionNotFound:
            if shard is self.shards[0]:
                raise
            return [[] for _ in range(len(queries))]  # deleted there meanwhile

    async def health(self) -> dict[str, str]:
        reports = await asyncio.gather(*(shard.health() for shard in self.shards))
        return {f"{key}-shard-{i}": value for i, report in enumerate(reports) for key, value in report.items()}
