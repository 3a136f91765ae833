"""A test double of the layer below the HTTP app: `ModelService` and `SearchService` in memory.

It stands in for the Serve ingress's handle-backed services so that every route, every
dialect's shape and every row of the error table can be checked in-process over
`httpx.ASGITransport`, without Ray or models. Its numbers are deterministic functions of the
inputs (not model outputs); the real-Ray suite in tests/serve checks the model math.
"""

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deployments.catalog import ModelEntry, ModelKind, resolve_entry
from deployments.config import LimitsConfig
from deployments.engine.tokenization import TokenSpan
from deployments.http.metrics import APIMetrics
from deployments.index.base import CollectionInfo
from deployments.index.errors import CollectionNotFound, DocumentNotFound
from deployments.jobs import (
    BatchTimings,
    DecodeJob,
    EmbedJob,
    EmbedOutcome,
    ReplicaReport,
    RerankJob,
    RerankOutcome,
    SearchHitOut,
    SearchJob,
    SearchOutcome,
    TokenizeJob,
)

DIMENSIONS = 8


def text_vector(text: str) -> np.ndarray:
    """A deterministic unnormalised vector for a text."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return np.frombuffer(digest[: DIMENSIONS * 4], dtype=np.uint32).astype(np.float32) / 2**32 - 0.5


def pair_logit(query: str, document: str) -> float:
    """A deterministic logit for a (query, document) pair: shared words raise it."""
    shared = set(query.lower().split()) & set(document.lower().split())
    return float(len(shared)) - 1.0 + len(document) / 1000


def _timings(tokens: int) -> BatchTimings:
    return BatchTimings(queue_s=0.001, inference_s=0.002, tokens=tokens, batches=1)


def _report() -> ReplicaReport:
    return ReplicaReport(replica="fake", queued_tokens=0, queued_requests=0, batch_sizes=[1])


@dataclass
class FakeSearchService:
    collections: dict[str, CollectionInfo] = field(default_factory=dict)
    documents: dict[str, dict[str, tuple[str, dict | None]]] = field(default_factory=dict)
    raise_next: Exception | None = None
    last_job: SearchJob | None = None

    def _take_error(self) -> None:
        if self.raise_next is not None:
            error, self.raise_next = self.raise_next, None
            raise error

    def _get(self, name: str) -> CollectionInfo:
        self._take_error()
        if name not in self.collections:
            raise CollectionNotFound(f"collection {name!r} does not exist", param="name")
        info = self.collections[name]
        return CollectionInfo(info.name, info.model, info.dimensions, info.index, info.created_at,
                              len(self.documents[name]), info.lexical_language)

    async def create_collection(self, name: str, model: str | None, dimensions: int | None, index: str,
                                lexical_language: str = "simple") -> tuple[CollectionInfo, bool]:
        self._take_error()
        if name in self.collections:
            return self._get(name), False
        self.collections[name] = CollectionInfo(name, model or "fake-embed", dimensions or DIMENSIONS, index,
                                                time.time(), lexical_language=lexical_language)
        self.documents[name] = {}
        return self._get(name), True

    async def list_collections(self) -> list[CollectionInfo]:
        self._take_error()
        return [self._get(n) for n in sorted(self.collections)]

    async def get_collection(self, name: str) -> CollectionInfo:
        return self._get(name)

    async def delete_collection(self, name: str) -> None:
        self._get(name)
        del self.collections[name], self.documents[name]

    async def upsert(self, name: str, documents: list[tuple[str | None, str, dict | None]], truncate: bool
                     ) -> list[str]:
        self._get(name)
        ids = [doc_id or f"gen-{i}" for i, (doc_id, _, _) in enumerate(documents)]
        for doc_id, (_, text, metadata) in zip(ids, documents, strict=True):
            self.documents[name][doc_id] = (text, metadata)
        return ids

    async def get_document(self, name: str, doc_id: str) -> dict:
        self._get(name)
        if doc_id not in self.documents[name]:
            raise DocumentNotFound(f"no document {doc_id!r} in collection {name!r}", param="id")
        text, metadata = self.documents[name][doc_id]
        return {"id": doc_id, "text": text, "metadata": metadata}

    async def delete_document(self, name: str, doc_id: str) -> None:
        await self.get_document(name, doc_id)
        del self.documents[name][doc_id]

    async def search(self, name: str, job: SearchJob) -> SearchOutcome:
        self._get(name)
        self.last_job = job
        results = []
        for query in job.queries:
            # what each mode reports about a hit, not how it ranks (tests/serving checks that)
            dense = None if job.mode == "lexical" else 0.5
            lexical = None if job.mode == "dense" else 2.0
            ranks = {"dense": {"dense": 1}, "lexical": {"lexical": 1}, "hybrid": {"dense": 2, "lexical": 1}}[job.mode]
            hits = [SearchHitOut(doc_id, text, metadata if job.return_metadata else None,
                                 pair_logit(query, text), dense, lexical,
                                 1 / 62 + 1 / 61 if job.mode == "hybrid" else None, ranks)
                    for doc_id, (text, metadata) in self.documents[name].items()]
            results.append(sorted(hits, key=lambda h: -h.score)[: job.top_n])
        return SearchOutcome(results=results, timings_ms={"embed_ms": 1.0, "search_ms": 2.0, "rerank_ms": 3.0,
                                                          "total_ms": 6.0}, queue_s=0.0, inference_s=0.0, tokens=5,
                             top_k=job.top_k or 77)  # 77: what this double's "server default" is


@dataclass
class FakeModelService:
    """Two embedding models (the default first) and one reranker; `raise_next` makes the next model
    call fail with a given exception, to drive every row of the error table."""

    limits: LimitsConfig = field(default_factory=lambda: LimitsConfig(max_inputs_per_request=8,
                                                                      max_documents_per_request=6,
                                                                      max_request_bytes=4096))
    keys: frozenset[str] | None = None
    raise_next: Exception | None = None
    entries: list[ModelEntry] = field(default_factory=lambda: [
        ModelEntry("fake-embed", "embedding", "/models/fake-embed", "Embedder", True),
        ModelEntry("fake-embed-2", "embedding", "/models/fake-embed-2", "Embedder-2", False, accept_token_ids=True),
        ModelEntry("fake-rerank", "reranker", "/models/fake-rerank", "Reranker", True),
    ])
    metrics: APIMetrics = field(default_factory=APIMetrics)
    search: FakeSearchService = field(default_factory=FakeSearchService)
    embed_jobs: list[EmbedJob] = field(default_factory=list)
    rerank_jobs: list[RerankJob] = field(default_factory=list)
    health_states: dict[str, str] = field(default_factory=lambda: {"Embedder": "ok", "Reranker": "ok"})

    def api_keys(self) -> frozenset[str] | None:
        return self.keys

    def resolve(self, kind: ModelKind, name: str | None) -> ModelEntry:
        return resolve_entry(self.entries, kind, name)

    def _take_error(self) -> None:
        if self.raise_next is not None:
            error, self.raise_next = self.raise_next, None
            raise error

    async def embed(self, entry: ModelEntry, job: EmbedJob) -> EmbedOutcome:
        self._take_error()
        self.embed_jobs.append(job)
        inputs = job.texts if job.texts is not None else [" ".join(map(str, ids)) for ids in job.token_ids or []]
        vectors = np.stack([text_vector(text) for text in inputs])[:, : job.dimensions or DIMENSIONS]
        if job.normalize:
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        counts = [len(text.split()) + 1 for text in inputs]
        return EmbedOutcome(vectors=vectors.astype(np.float32), token_counts=counts, timings=_timings(sum(counts)),
                            report=_report())

    async def rerank(self, entry: ModelEntry, job: RerankJob) -> RerankOutcome:
        self._take_error()
        self.rerank_jobs.append(job)
        logits = [np.array([pair_logit(q, d) for d in docs], dtype=np.float32) for q, docs in job.groups]
        counts = [[len(q.split()) + len(d.split()) + 20 for d in docs] for q, docs in job.groups]
        return RerankOutcome(logits=logits, token_counts=counts, timings=_timings(sum(map(sum, counts))),
                             report=_report())

    async def tokenize(self, entry: ModelEntry, job: TokenizeJob) -> list[list[TokenSpan]]:
        """Words as tokens (id: the word's length), the end-of-text token last when specials are asked."""
        self._take_error()
        listed = []
        for text in job.texts:
            tokens, start = [], 0
            for word in text.split():
                start = text.index(word, start)
                tokens.append(TokenSpan(len(word), word, False, start, start + len(word)))
                start += len(word)
            listed.append(tokens + ([TokenSpan(0, "<eot>", True, None, None)] if job.add_special_tokens else []))
        return listed

    async def decode(self, entry: ModelEntry, job: DecodeJob) -> list[str]:
        self._take_error()
        return [" ".join("x" * i for i in ids if i or not job.skip_special_tokens) for ids in job.token_ids]

    async def describe(self) -> list[dict[str, Any]]:
        return [{"kind": e.kind, "source": e.source, "max_length": 512, "backend": "torch",
                 **({"dimensions": DIMENSIONS} if e.kind == "embedding" else {})} for e in self.entries]

    async def health(self) -> dict[str, str]:
        return dict(self.health_states)
