"""SearchPipeline: collections and search composed from the other deployments' handles.

embed (Embedder) -> ANN search (a `CollectionIndex`) -> rerank (Reranker); or full-text search in
place of (mode lexical) or beside (mode hybrid, reciprocal rank fusion) the vector search. Each stage stays
its own deployment or service, so embedders, the index and rerankers scale on their own; the
pipeline itself is stateless and may have any number of replicas.

Writes: an upload is embedded in chunks (spread over embedder replicas), then stored by the
index, acknowledged only when durable. Every public method returns its value or a `Refusal`
(a client's mistake or a full queue), so Ray never logs a client's error as a failure.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import numpy as np
from ray.serve.exceptions import BackPressureError

from ..catalog import ModelEntry, resolve_entry
from ..config import SearchDefaults
from ..engine.errors import EngineError
from ..engine.reranking import sigmoid
from ..engine.vectors import MIN_DIMENSIONS
from ..errors import APIError
from ..index.base import CollectionIndex, CollectionInfo, DocumentWrite
from ..index.errors import InvalidIndexRequest
from ..index.filters import parse_filter
from ..index.fusion import FusedHit, ranked, reciprocal_rank_fusion
from ..index.lexical import DEFAULT_LEXICAL_LANGUAGE
from ..index.validation import reject_duplicate_ids
from ..jobs import (
    EmbedJob,
    EmbedOutcome,
    QueueFullError,
    Refusal,
    RerankJob,
    RerankOutcome,
    SearchHitOut,
    SearchJob,
    SearchOutcome,
    UpsertOutcome,
    unwrap,
)
from .sharded_index import ShardedIndex
from .status import DeploymentStatuses, is_deployment_unavailable

__all__ = ["SearchPipeline"]

COLLECTION_NAME_CHARS = "letters, digits, '_', '.' or '-' (1-64, starting with a letter or digit)"
T = TypeVar("T")


class SearchPipeline:
    """Stateless orchestration of collections, uploads and searches over one `CollectionIndex`."""

    def __init__(self, *, models: list[ModelEntry], handles: dict[str, Any], shards: list[Any] | None = None,
                 index: CollectionIndex | None = None, postgres: Any = None, embed_chunk: int = 64,
                 defaults: SearchDefaults | None = None) -> None:
        self.entries = [entry.bound(handles) for entry in models]
        if index is None and postgres is not None:  # a PostgresConfig: this replica's own pools
            from ..index.postgres_shards import postgres_index

            index = postgres_index(postgres)
        if index is None:
            if not shards:
                raise ValueError("give the index shards' handles or a CollectionIndex")
            index = ShardedIndex(shards)
        self.index: CollectionIndex = index
        self.embed_chunk = embed_chunk
        self.defaults = defaults or SearchDefaults()
        self._described: dict[str, dict[str, Any]] = {}
        self._statuses = DeploymentStatuses()

    async def _guard(self, work: Awaitable[T]) -> T | Refusal:
        # Errors a client caused (or a full queue, or a model that failed to start) are returned, so
        # Ray does not log them as failures of this deployment.
        try:
            return await work
        except (EngineError, APIError, QueueFullError) as exc:
            return Refusal(exc)
        except BackPressureError as exc:  # this replica's handle to a model deployment is full
            return Refusal(QueueFullError(f"the search pipeline's models are at capacity ({exc.message}); "
                                          "retry later", retry_after_s=exc.retry_after_s or 1.0))
        except Exception as exc:
            if is_deployment_unavailable(exc):
                return Refusal(await self._statuses.failed_error(exc))
            raise

    # ----- helpers -----
    async def _describe(self, entry: ModelEntry) -> dict[str, Any]:
        if entry.name not in self._described:
            self._described[entry.name] = await entry.handle.describe.remote()
        return self._described[entry.name]

    async def _embed(self, model: str, texts: list[str], *, dimensions: int, query: bool, truncate: bool,
                     instruction: str | None = None) -> tuple[np.ndarray, float, float, int, list[tuple[str, Any]]]:
        """Vectors, inference and queue seconds, tokens, and the replicas' reports, embedding in parallel chunks."""
        entry = resolve_entry(self.entries, "embedding", model)
        if instruction is not None and (await self._describe(entry))["default_instruction"] is None:
            instruction = None  # the model takes no instructions; the reranker still gets it
        chunks = [texts[i : i + self.embed_chunk] for i in range(0, len(texts), self.embed_chunk)]
        outcomes: list[EmbedOutcome] = [unwrap(o) for o in await asyncio.gather(*(
            entry.handle.embed.remote(EmbedJob(texts=chunk, dimensions=dimensions, instruction=instruction,
                                               input_type="query" if query else "document", truncate=truncate))
            for chunk in chunks))]
        vectors = np.concatenate([o.vectors for o in outcomes])
        return (vectors, max(o.timings.inference_s for o in outcomes), max(o.timings.queue_s for o in outcomes),
                sum(o.timings.tokens for o in outcomes), [(entry.name, o.report) for o in outcomes])

    # ----- collections -----
    async def create_collection(self, name: str, model: str | None, dimensions: int | None, index: str,
                                lexical_language: str = DEFAULT_LEXICAL_LANGUAGE
                                ) -> tuple[CollectionInfo, bool] | Refusal:
        return await self._guard(self._create_collection(name, model, dimensions, index, lexical_language))

    async def _create_collection(self, name: str, model: str | None, dimensions: int | None, index: str,
                                 lexical_language: str) -> tuple[CollectionInfo, bool]:
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
        return await self.index.create_collection(name, entry.name, width, index,
                                                  lexical_language=lexical_language)

    async def get_collection(self, name: str) -> CollectionInfo | Refusal:
        return await self._guard(self.index.get_collection(name))

    async def list_collections(self) -> list[CollectionInfo] | Refusal:
        return await self._guard(self.index.list_collections())

    async def delete_collection(self, name: str) -> None | Refusal:
        return await self._guard(self.index.delete_collection(name))

    # ----- documents -----
    async def upsert(self, name: str, documents: list[tuple[str | None, str, dict | None]], truncate: bool = True
                     ) -> UpsertOutcome | Refusal:
        return await self._guard(self._upsert(name, documents, truncate))

    async def _upsert(self, name: str, documents: list[tuple[str | None, str, dict | None]], truncate: bool
                      ) -> UpsertOutcome:
        ids = [doc_id or uuid.uuid4().hex for doc_id, _, _ in documents]
        reject_duplicate_ids(ids)  # on every backend, before anything is embedded or stored
        record = await self.index.describe(name)  # no count: that is a scan on Postgres
        vectors, _, _, _, reports = await self._embed(record.model, [text for _, text, _ in documents],
                                                      dimensions=record.dimensions, query=False, truncate=truncate)
        await self.index.upsert(record, [DocumentWrite(doc_id, text, metadata, vector) for doc_id, (_, text, metadata),
                                         vector in zip(ids, documents, vectors, strict=True)])
        return UpsertOutcome(ids, reports)

    async def get_document(self, name: str, doc_id: str) -> dict[str, Any] | Refusal:
        return await self._guard(self.index.get_document(name, doc_id))

    async def delete_document(self, name: str, doc_id: str) -> None | Refusal:
        return await self._guard(self.index.delete_document(name, doc_id))

    # ----- search -----
    async def search(self, name: str, job: SearchJob) -> SearchOutcome | Refusal:
        return await self._guard(self._search(name, job))

    async def _top_k(self, job: SearchJob) -> int:
        """The job's `top_k`, or the default for where its reranker runs (never below `top_n`)."""
        if job.top_k is not None:
            return job.top_k
        top_k = self.defaults.top_k
        if job.rerank:
            entry = resolve_entry(self.entries, "reranker", job.reranker)
            if str((await self._describe(entry))["device"]).startswith("cpu"):
                top_k = self.defaults.top_k_cpu
        return max(top_k, job.top_n)

    async def _search(self, name: str, job: SearchJob) -> SearchOutcome:
        started = time.perf_counter()
        parse_filter(job.filter)  # a bad filter fails before any model runs
        top_k = await self._top_k(job)
        record = await self.index.describe(name)  # no count: that is a scan on Postgres
        embed_inference, queue, tokens = 0.0, 0.0, 0
        vectors = None
        reports: list[tuple[str, Any]] = []
        if job.mode != "lexical":  # a lexical search needs no query embedding
            vectors, embed_inference, queue, tokens, reports = await self._embed(
                record.model, job.queries, dimensions=record.dimensions, query=True, truncate=job.truncate,
                instruction=job.instruction)
        embedded = time.perf_counter()
        candidates = await self._candidates(name, job, top_k, vectors)
        searched = time.perf_counter()
        scores: list[list[float]] = [[h.retriever_score for h in hits] for hits in candidates]
        rerank_inference = 0.0
        if job.rerank and any(candidates):
            entry = resolve_entry(self.entries, "reranker", job.reranker)
            groups = [(q, [h.text for h in hits]) for q, hits in zip(job.queries, candidates, strict=True) if hits]
            outcome: RerankOutcome = unwrap(await entry.handle.rerank.remote(
                RerankJob(groups=groups, instruction=job.instruction, truncate=job.truncate)))
            reranked = iter(outcome.logits)
            scores = [sigmoid(next(reranked)).tolist() if hits else [] for hits in candidates]
            rerank_inference = outcome.timings.inference_s
            reports.append((entry.name, outcome.report))
            queue += outcome.timings.queue_s
            tokens += outcome.timings.tokens
        finished = time.perf_counter()
        results = []
        for hits, hit_scores in zip(candidates, scores, strict=True):
            order = sorted(range(len(hits)), key=lambda i: -hit_scores[i])[: job.top_n]
            results.append([SearchHitOut(id=hits[i].id, text=hits[i].text,
                                         metadata=hits[i].metadata if job.return_metadata else None,
                                         score=float(hit_scores[i]), embedding_score=hits[i].embedding_score,
                                         lexical_score=hits[i].lexical_score, fused_score=hits[i].fused_score,
                                         retrievers=hits[i].retrievers)
                            for i in order])
        timings = {"embed_ms": (embedded - started) * 1000, "search_ms": (searched - embedded) * 1000,
                   "rerank_ms": (finished - searched) * 1000, "total_ms": (finished - started) * 1000}
        return SearchOutcome(results=results, timings_ms=timings, inference_s=embed_inference + rerank_inference,
                             queue_s=queue, tokens=tokens, top_k=top_k, reports=reports)

    async def _candidates(self, name: str, job: SearchJob, top_k: int,
                          vectors: np.ndarray | None) -> list[list[FusedHit]]:
        """Per query, the candidates for the reranker: one retriever's `top_k`, or in hybrid mode each
        retriever's `top_k` fused by RRF and cut at `top_k` (so the reranker's work does not grow)."""
        if job.mode == "lexical":
            lexical = await self.index.lexical_search(name, job.queries, top_k, job.filter)
            return [ranked(hits, "lexical") for hits in lexical]
        assert vectors is not None
        if job.mode == "dense":
            dense = await self.index.search(name, vectors, top_k, job.filter, job.exact)
            return [ranked(hits, "dense") for hits in dense]
        dense, lexical = await asyncio.gather(
            self.index.search(name, vectors, top_k, job.filter, job.exact),
            self.index.lexical_search(name, job.queries, top_k, job.filter))
        return [reciprocal_rank_fusion({"dense": d, "lexical": lex}, rrf_k=job.rrf_k, weights=job.weights,
                                       limit=top_k)
                for d, lex in zip(dense, lexical, strict=True)]

    async def ping(self) -> str:
        return "ok"

    async def index_health(self) -> dict[str, str]:
        return await self.index.health()
