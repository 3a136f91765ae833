"""SearchPipeline: collections and search composed from the other deployments' handles.

embed (Embedder) -> ANN search on every shard (IndexShard) -> merge -> rerank (Reranker).
Each stage stays its own deployment, so embedders, index shards and rerankers scale on
their own; the pipeline itself is stateless and may have any number of replicas.

Writes: an upload is embedded in chunks (spread over embedder replicas), then each shard
stores its share of the batch in one transaction. With one shard an upload is all or
nothing; with several, each shard's share is, and a retry (idempotent by id) completes an
interrupted upload. Documents go to shard `blake2b(id) % shards`.
"""

import asyncio
import hashlib
import time
import uuid
from typing import Any

import numpy as np

from .catalog import ModelEntry, resolve_entry
from .engine.errors import EngineError
from .engine.reranking import sigmoid
from .engine.vectors import MIN_DIMENSIONS
from .errors import APIError
from .index.errors import InvalidIndexRequest
from .index.filters import parse_filter
from .jobs import EmbedJob, EmbedOutcome, Refusal, RerankJob, RerankOutcome

__all__ = ["SearchPipeline", "shard_of"]

COLLECTION_NAME_CHARS = "letters, digits, '_', '.' or '-' (1-64, starting with a letter or digit)"


def shard_of(doc_id: str, shards: int) -> int:
    """The shard a document id lives on: stable across processes and restarts."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big") % shards


def _unwrap(value: Any) -> Any:
    if isinstance(value, Refusal):
        raise value.error
    return value


class SearchPipeline:
    """Stateless orchestration of collections, uploads and searches."""

    def __init__(self, catalog: list[dict[str, Any]], handles: dict[str, Any], shards: list[Any],
                 embed_chunk: int = 64) -> None:
        self.entries = [ModelEntry(handle=handles[item["deployment"]], **item) for item in catalog]
        self.shards = shards
        self.embed_chunk = embed_chunk
        self._described: dict[str, dict[str, Any]] = {}

    async def _guard(self, coroutine: Any) -> Any:
        # Errors a client caused are returned (Refusal), so Ray does not log them as failures.
        try:
            return await coroutine
        except (EngineError, APIError) as exc:
            return Refusal(exc)

    # ----- helpers -----
    async def _describe(self, entry: ModelEntry) -> dict[str, Any]:
        if entry.name not in self._described:
            self._described[entry.name] = await entry.handle.describe.remote()
        return self._described[entry.name]

    async def _record(self, name: str) -> dict[str, Any]:
        return _unwrap(await self.shards[0].collection.remote(name))

    async def _embed(self, model: str, texts: list[str], *, dimensions: int, query: bool,
                     instruction: str | None = None) -> tuple[np.ndarray, float, float, int]:
        """Vectors, inference and queue seconds, and tokens, embedding in parallel chunks."""
        entry = resolve_entry(self.entries, "embedding", model)
        if instruction is not None and (await self._describe(entry))["default_instruction"] is None:
            instruction = None  # the model takes no instructions; the reranker still gets it
        chunks = [texts[i : i + self.embed_chunk] for i in range(0, len(texts), self.embed_chunk)]
        outcomes: list[EmbedOutcome] = [_unwrap(o) for o in await asyncio.gather(*(
            entry.handle.embed.remote(EmbedJob(texts=chunk, dimensions=dimensions, instruction=instruction,
                                               input_type="query" if query else "document"))
            for chunk in chunks))]
        vectors = np.concatenate([o.vectors for o in outcomes])
        return (vectors, max(o.timings.inference_s for o in outcomes), max(o.timings.queue_s for o in outcomes),
                sum(o.timings.tokens for o in outcomes))

    # ----- collections -----
    async def create_collection(self, name: str, model: str | None, dimensions: int | None, index: str) -> Any:
        return await self._guard(self._create_collection(name, model, dimensions, index))

    async def _create_collection(self, name: str, model: str | None, dimensions: int | None, index: str
                                 ) -> tuple[dict[str, Any], bool]:
        from clients.types.collections import valid_collection_name

        if not valid_collection_name(name):
            raise InvalidIndexRequest(f"collection name {name!r} must be {COLLECTION_NAME_CHARS}", param="name")
        entry = resolve_entry(self.entries, "embedding", model)
        full = int((await self._describe(entry))["dimensions"])
        width = full if dimensions is None else dimensions
        if not min(MIN_DIMENSIONS, full) <= width <= full:
            raise InvalidIndexRequest(
                f"dimensions must be from {min(MIN_DIMENSIONS, full)} to {full} for model {entry.name!r}, not {width}",
                param="dimensions")
        first = _unwrap(await self.shards[0].create_collection.remote(name, entry.name, width, index))
        for result in await asyncio.gather(*(s.create_collection.remote(name, entry.name, width, index)
                                             for s in self.shards[1:])):
            _unwrap(result)
        created = bool(first.pop("created"))
        return {**first, "count": 0 if created else await self._count(name)}, created

    async def _count(self, name: str) -> int:
        counts = await asyncio.gather(*(s.collection.remote(name) for s in self.shards))
        return sum(c["count"] for c in counts if not isinstance(c, Refusal))

    async def get_collection(self, name: str) -> Any:
        async def get() -> dict[str, Any]:
            record = await self._record(name)
            return {**record, "count": await self._count(name)}
        return await self._guard(get())

    async def list_collections(self) -> Any:
        async def listing() -> list[dict[str, Any]]:
            per_shard = await asyncio.gather(*(s.collections.remote() for s in self.shards))
            merged: dict[str, dict[str, Any]] = {c["name"]: dict(c) for c in _unwrap(per_shard[0])}
            for shard_list in per_shard[1:]:
                for c in _unwrap(shard_list):
                    if c["name"] in merged:
                        merged[c["name"]]["count"] += c["count"]
            return [merged[n] for n in sorted(merged)]
        return await self._guard(listing())

    async def delete_collection(self, name: str) -> Any:
        async def delete() -> dict[str, Any]:
            await self._record(name)  # 404 when absent
            await asyncio.gather(*(s.delete_collection.remote(name) for s in self.shards[1:]))
            _unwrap(await self.shards[0].delete_collection.remote(name))  # the catalog entry goes last
            return {"name": name, "deleted": True}
        return await self._guard(delete())

    async def count(self, name: str) -> Any:
        async def count() -> dict[str, Any]:
            await self._record(name)
            return {"collection": name, "count": await self._count(name)}
        return await self._guard(count())

    # ----- documents -----
    async def upsert(self, name: str, documents: list[dict[str, Any]]) -> Any:
        return await self._guard(self._upsert(name, documents))

    async def _upsert(self, name: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
        record = await self._record(name)
        ids = [doc.get("id") or uuid.uuid4().hex for doc in documents]
        vectors, _, _, _ = await self._embed(record["model"], [doc["text"] for doc in documents],
                                          dimensions=record["dimensions"], query=False)
        by_shard: dict[int, list[tuple[str, str, Any, np.ndarray]]] = {}
        for doc_id, doc, vector in zip(ids, documents, vectors, strict=True):
            by_shard.setdefault(shard_of(doc_id, len(self.shards)), []).append(
                (doc_id, doc["text"], doc.get("metadata"), vector))
        shard_record = {k: record[k] for k in ("name", "model", "dimensions", "index")}
        results = await asyncio.gather(*(self.shards[i].upsert.remote(shard_record, docs)
                                         for i, docs in by_shard.items()))
        for result in results:
            _unwrap(result)
        return {"ids": ids, "count": len(ids)}

    async def get_document(self, name: str, doc_id: str) -> Any:
        return await self._guard(self._on_shard("get_document", name, doc_id))

    async def delete_document(self, name: str, doc_id: str) -> Any:
        async def delete() -> dict[str, Any]:
            await self._on_shard("delete_document", name, doc_id)
            return {"id": doc_id, "deleted": True}
        return await self._guard(delete())

    async def _on_shard(self, method: str, name: str, doc_id: str) -> Any:
        await self._record(name)
        shard = self.shards[shard_of(doc_id, len(self.shards))]
        return _unwrap(await getattr(shard, method).remote(name, doc_id))

    # ----- search -----
    async def search(self, name: str, request: dict[str, Any]) -> Any:
        return await self._guard(self._search(name, request))

    async def _search(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        queries: list[str] = request["queries"]
        top_k, top_n = int(request["top_k"]), int(request["top_n"])
        instruction = request.get("instruction")
        parse_filter(request.get("filter"))  # a bad filter fails before any model runs
        record = await self._record(name)
        vectors, embed_inference, queue, tokens = await self._embed(
            record["model"], queries, dimensions=record["dimensions"], query=True, instruction=instruction)
        embedded = time.perf_counter()
        per_shard = await asyncio.gather(*(s.search.remote(name, vectors, top_k, request.get("filter"),
                                                           bool(request.get("exact"))) for s in self.shards))
        candidates: list[list[dict[str, Any]]] = [[] for _ in queries]
        for shard_hits in per_shard:
            for q, hits in enumerate(_unwrap(shard_hits)):
                candidates[q].extend(hits)
        candidates = [sorted(hits, key=lambda h: -h["embedding_score"])[:top_k] for hits in candidates]
        searched = time.perf_counter()
        rerank_inference = 0.0
        if request.get("rerank", True) and any(candidates):
            entry = resolve_entry(self.entries, "reranker", request.get("reranker"))
            groups = [(q, [h["text"] for h in hits]) for q, hits in zip(queries, candidates, strict=True) if hits]
            outcome: RerankOutcome = _unwrap(await entry.handle.rerank.remote(
                RerankJob(groups=groups, instruction=instruction)))
            scored = iter(outcome.logits)
            for hits in candidates:
                if hits:
                    for hit, score in zip(hits, sigmoid(next(scored)), strict=True):
                        hit["score"] = float(score)
            rerank_inference = outcome.timings.inference_s
            queue += outcome.timings.queue_s
            tokens += outcome.timings.tokens
        else:
            for hits in candidates:
                for hit in hits:
                    hit["score"] = hit["embedding_score"]
        finished = time.perf_counter()
        keep_metadata = request.get("return_metadata", True)
        results = []
        for hits in candidates:
            best = sorted(hits, key=lambda h: -h["score"])[:top_n]
            results.append([{"id": h["id"], "text": h["text"], "metadata": h["metadata"] if keep_metadata else None,
                             "score": h["score"], "embedding_score": h["embedding_score"]} for h in best])
        timings = {"embed_ms": (embedded - started) * 1000, "search_ms": (searched - embedded) * 1000,
                   "rerank_ms": (finished - searched) * 1000, "total_ms": (finished - started) * 1000}
        return {"results": results, "timings": timings, "inference_s": embed_inference + rerank_inference,
                "queue_s": queue, "tokens": tokens}

    async def ping(self) -> str:
        return "ok"

