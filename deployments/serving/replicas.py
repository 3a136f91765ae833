"""The model deployments: `Embedder` and `Reranker`, one engine per replica.

These are plain classes; `deployments.app` turns them into Ray Serve deployments with the
options from the config, so they can also be built and called directly in a test. Model
work never runs on the replica's event loop: tokenisation goes to a worker thread, and
compute either to the token-budget batcher's thread (torch, ONNX Runtime) or, for a
backend that batches by itself (vLLM), straight to its async engine behind admission by
tokens in flight. Health checks, pings and new arrivals are answered while a batch computes.
"""

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from ..config import EmbeddingModelConfig, RerankerModelConfig
from ..engine.backend import RerankInputs
from ..engine.embedding import EmbeddingEngine
from ..engine.errors import EngineError, InvalidInputError, ModelLoadError
from ..engine.reranking import RerankEngine
from ..engine.tokenization import TokenSpan, check_token_ids, list_tokens
from ..engine.vectors import check_dimensions, truncate_and_normalize
from ..jobs import (
    BatchTimings,
    DecodeJob,
    EmbedJob,
    EmbedOutcome,
    QueueFullError,
    Refusal,
    ReplicaReport,
    RerankJob,
    RerankOutcome,
    TokenizeJob,
)
from .batcher import TokenAdmission, TokenBudgetBatcher

__all__ = ["Embedder", "Reranker"]


def _replica_name(fallback: str) -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside Serve (tests, benchmarks)
        return f"{fallback}-{os.getpid()}"


def _engine_options(config: EmbeddingModelConfig | RerankerModelConfig) -> dict[str, Any]:
    """Keyword arguments of `EmbeddingEngine.load` / `RerankEngine.load` from a model entry."""
    return {
        "backend": config.backend, "device": config.device, "dtype": config.dtype, "max_length": config.max_length,
        "max_batch_tokens": config.max_batch_tokens, "max_batch_size": config.max_batch_size,
        "threads": config.torch_threads, "num_gpus": float(config.deployment.ray_actor_options.get("num_gpus", 0)),
        "backend_options": config.backend_options(),
    }


def _load_engine(kind: str, config: EmbeddingModelConfig | RerankerModelConfig, load: Callable[[], Any]) -> Any:
    """`load()`; a model that cannot load fails the replica with one typed line naming it, not a chain
    of tracebacks: the Serve controller logs it, and reports its last line as the deployment's cause."""
    try:
        return load()
    except ModelLoadError as exc:
        raise type(exc)(f"{kind} model {config.served_name()!r} cannot load: {exc.message}", param=exc.param) from None


class _ModelReplica:
    """What both model replicas share: the way work reaches the engine, reports, health."""

    engine: Any  # EmbeddingEngine or RerankEngine, narrowed by each subclass

    def __init__(self, kind: str, config: EmbeddingModelConfig | RerankerModelConfig,
                 run_batch: Callable[[list[Any]], Sequence[Any]]) -> None:
        self.replica = _replica_name(kind)
        self.config = config
        name = f"{kind}[{config.served_name()}]"
        self.batcher: TokenBudgetBatcher | None = None
        self.admission: TokenAdmission | None = None
        if self.engine.backend.schedules_batches:  # do not batch twice
            self.admission = TokenAdmission(max_queued_tokens=config.max_queued_tokens,
                                            retry_after_s=config.deployment.retry_after_s, name=name)
        else:
            self.batcher = TokenBudgetBatcher(
                run_batch, max_batch_tokens=self.engine.max_batch_tokens, max_batch_size=config.max_batch_size,
                max_queued_tokens=config.max_queued_tokens, batch_wait_s=config.batch_wait_ms / 1000,
                retry_after_s=config.deployment.retry_after_s, name=name,
            )

    async def _compute(self, items: Sequence[Any], lengths: Sequence[int],
                       direct: Callable[[], Awaitable[list[Any]]]) -> tuple[list[Any], BatchTimings]:
        if self.batcher is not None:
            return await self.batcher.submit(items, lengths)
        assert self.admission is not None
        return await self.admission.run(int(sum(lengths)), direct)

    def _report(self) -> ReplicaReport:
        if self.batcher is not None:
            return ReplicaReport(replica=self.replica, queued_tokens=self.batcher.queued_tokens,
                                 queued_requests=self.batcher.queued_requests,
                                 batch_sizes=self.batcher.drain_batch_sizes())
        assert self.admission is not None
        return ReplicaReport(replica=self.replica, queued_tokens=self.admission.queued_tokens,
                             queued_requests=self.admission.queued_requests)

    def _list_tokens(self, job: TokenizeJob) -> list[list[TokenSpan]]:
        if isinstance(self.engine, EmbeddingEngine):
            return self.engine.list_tokens(job.texts, add_special_tokens=job.add_special_tokens,
                                           prompt_name=job.prompt_name)
        if job.prompt_name is not None:
            raise InvalidInputError("a reranker has no prompts", param="prompt_name")
        return list_tokens(self.engine.tokenizer, job.texts, add_special_tokens=job.add_special_tokens)

    async def tokenize(self, job: TokenizeJob) -> list[list[TokenSpan]] | Refusal:
        """The tokens of texts (TEI's `/tokenize`), in a worker thread."""
        try:
            return await asyncio.to_thread(self._list_tokens, job)
        except EngineError as exc:
            return Refusal(exc)

    def _decode(self, job: DecodeJob) -> list[str]:
        tokenizer = self.engine.tokenizer
        checked = check_token_ids(job.token_ids, tokenizer.vocab_size, param="ids")
        return [tokenizer.decode(ids, skip_special_tokens=job.skip_special_tokens) for ids in checked]

    async def decode(self, job: DecodeJob) -> list[str] | Refusal:
        """Token ids back to text (TEI's `/decode`), in a worker thread."""
        try:
            return await asyncio.to_thread(self._decode, job)
        except EngineError as exc:
            return Refusal(exc)

    async def ping(self) -> str:
        """Answered from the event loop, even while a batch computes."""
        return "ok"

    async def check_health(self) -> None:
        await self.engine.check_health()

    def __del__(self) -> None:
        batcher = getattr(self, "batcher", None)
        if batcher is not None:
            batcher.close()
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()


class Embedder(_ModelReplica):
    """Serves one embedding model."""

    engine: EmbeddingEngine

    def __init__(self, config: EmbeddingModelConfig) -> None:
        self.engine = _load_engine("embedding", config, lambda: EmbeddingEngine.load(config.model,
                                                                                      **_engine_options(config)))
        super().__init__("embedder", config, lambda rows: list(self.engine.pool(rows)))

    def _tokenize(self, job: EmbedJob) -> list[list[int]]:
        options: dict[str, Any] = {"truncate": job.truncate, "truncation_direction": job.truncation_direction}
        if job.token_ids is not None:
            return self.engine.prepare_token_ids(job.token_ids, **options)
        prompt_name = job.prompt_name
        if job.instruction is None and prompt_name is None and job.input_type == "query":
            prompt_name = "query" if "query" in self.engine.files.prompts else None
        return self.engine.tokenize(job.texts or [], instruction=job.instruction, prompt_name=prompt_name, **options)

    async def embed(self, job: EmbedJob) -> EmbedOutcome | Refusal:
        try:
            return await self._embed(job)
        except (EngineError, QueueFullError) as exc:
            return Refusal(exc)

    async def _embed(self, job: EmbedJob) -> EmbedOutcome:
        check_dimensions(job.dimensions, self.engine.dimensions)
        token_ids = await asyncio.to_thread(self._tokenize, job)

        async def direct() -> list[Any]:
            return list(await self.engine.backend.pool_async(token_ids))

        pooled, timings = await self._compute(token_ids, [len(ids) for ids in token_ids], direct)
        vectors = truncate_and_normalize(np.stack(pooled), job.dimensions, job.normalize)
        return EmbedOutcome(vectors=vectors, token_counts=[len(ids) for ids in token_ids], timings=timings,
                            report=self._report())

    async def describe(self) -> dict[str, Any]:
        info = self.engine.info
        return {"kind": "embedding", "source": self.config.model, "dimensions": info.dimensions,
                "max_length": info.max_length, "pooling": info.pooling,
                "max_batch_tokens": self.engine.max_batch_tokens, "max_batch_size": self.config.max_batch_size,
                "default_instruction": info.default_instruction, "prompts": info.prompts, "device": info.device,
                "dtype": info.dtype, "backend": info.backend}


class Reranker(_ModelReplica):
    """Serves one Qwen3-Reranker model."""

    engine: RerankEngine

    def __init__(self, config: RerankerModelConfig) -> None:
        self.engine = _load_engine("reranker", config, lambda: RerankEngine.load(
            config.model, prefix_cache_min_documents=config.prefix_cache_min_documents, **_engine_options(config)))
        super().__init__("reranker", config, self._run_batch)

    def _run_batch(self, items: list[tuple[RerankInputs, int]]) -> list[float]:
        # Items of one query stay together so its shared prefix is computed once per batch.
        groups: dict[int, tuple[RerankInputs, list[int]]] = {}
        for position, (inputs, _) in enumerate(items):
            groups.setdefault(id(inputs), (inputs, []))[1].append(position)
        batch_groups = [RerankInputs(inputs.shared, [inputs.documents[items[p][1]] for p in positions])
                        for inputs, positions in groups.values()]
        out = [0.0] * len(items)
        for (_, positions), logits in zip(groups.values(), self.engine.logits(batch_groups), strict=True):
            for position, value in zip(positions, logits, strict=True):
                out[position] = float(value)
        return out

    def _prepare(self, job: RerankJob) -> list[RerankInputs]:
        return [self.engine.prepare(query, documents, instruction=job.instruction, truncate=job.truncate,
                                    max_tokens_per_document=job.max_tokens_per_document)
                for query, documents in job.groups]

    async def rerank(self, job: RerankJob) -> RerankOutcome | Refusal:
        try:
            return await self._rerank(job)
        except (EngineError, QueueFullError) as exc:
            return Refusal(exc)

    async def _rerank(self, job: RerankJob) -> RerankOutcome:
        prepared = await asyncio.to_thread(self._prepare, job)
        items = [(inputs, d) for inputs in prepared for d in range(len(inputs.documents))]
        lengths = [len(inputs.shared) + len(inputs.documents[d]) for inputs, d in items]

        async def direct() -> list[Any]:
            per_group = await self.engine.backend.logits_async(prepared)
            return [float(v) for logits in per_group for v in logits]

        flat, timings = await self._compute(items, lengths, direct)
        logits, start = [], 0
        for inputs in prepared:
            logits.append(np.asarray(flat[start : start + len(inputs.documents)], dtype=np.float32))
            start += len(inputs.documents)
        return RerankOutcome(logits=logits, token_counts=[inputs.token_counts for inputs in prepared],
                             timings=timings, report=self._report())

    async def describe(self) -> dict[str, Any]:
        info = self.engine.info
        return {"kind": "reranker", "source": self.config.model, "max_length": info.max_length,
                "default_instruction": info.default_instruction, "device": info.device, "dtype": info.dtype,
                "backend": info.backend}
