"""A test double of Ray Serve: the real ingress service, pipeline, index shards and model replicas in
this process, each deployment reached through a `LocalHandle` instead of a `DeploymentHandle`.

Every route runs the production code from the HTTP middleware down to SQLite and the model
engines; only the transport between deployments is replaced. A `LocalHandle` pickles each
argument and each answer, as Ray does between deployments, so an input that cannot cross a
deployment boundary (a `PicklingError` from 500-deep metadata) fails here as it would in Serve.
No Ray cluster starts, so a schema fuzz run over every route fits in a couple of minutes.
"""

import asyncio
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from deployments.catalog import ModelEntry
from deployments.config import EmbeddingModelConfig, LimitsConfig, RerankerModelConfig

__all__ = ["LocalHandle", "LocalStack", "build_local_stack"]


class _Method:
    def __init__(self, target: Any, name: str) -> None:
        self._fn = getattr(target, name)

    def remote(self, *args: Any, **kwargs: Any) -> "asyncio.Future[Any]":
        # Ray pickles arguments on the way in and the answer on the way out.
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))

        async def call() -> Any:
            result = self._fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            return pickle.loads(pickle.dumps(result))

        return asyncio.ensure_future(call())


class LocalHandle:
    """Stands in for a DeploymentHandle: `handle.method.remote(...)` is an awaitable of the answer."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> _Method:
        return _Method(self.target, name)


@dataclass
class LocalStack:
    app: Any
    service: Any
    shards: list[Any]
    """The IndexShard objects (not handles), to look at or write to storage directly."""
    embedder: Any
    reranker: Any
    service_args: dict[str, Any]

    def client(self, *, api_key: str | None = None, app: Any = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app or self.app), base_url="http://local",
                                 headers=headers, timeout=60, **kwargs)

    def another_app(self, **service_args: Any) -> tuple[Any, Any]:
        """A second ingress (service and app) over the same deployments, e.g. with other keys or limits."""
        from deployments.http import create_app
        from deployments.serving.ingress import HandleModelService

        service = HandleModelService(**{**self.service_args, **service_args})
        return service, create_app(lambda: service)


def build_local_stack(*, embedder_dir: Path, reranker_dir: Path, storage: Path, shards: int = 2,
                      limits: LimitsConfig | None = None, hnsw_threshold: int = 40, max_length: int = 8192,
                      api_keys_env: str = "QWEN3_SEARCH_TEST_KEYS",
                      api_keys_file_env: str = "QWEN3_SEARCH_TEST_KEYS_FILE") -> LocalStack:
    """One embedder ("tiny-qwen") and one reranker ("tiny-reranker") behind the real HTTP app."""
    from deployments.http import create_app
    from deployments.index import IndexShard
    from deployments.serving.ingress import HandleModelService
    from deployments.serving.pipeline import SearchPipeline
    from deployments.serving.replicas import Embedder, Reranker

    embedder = Embedder(EmbeddingModelConfig(model=str(embedder_dir), name="tiny-qwen", max_batch_tokens=2048,
                                             max_length=max_length))
    reranker = Reranker(RerankerModelConfig(model=str(reranker_dir), name="tiny-reranker", max_batch_tokens=2048,
                                            max_length=max_length))
    handles = {"Embedder": LocalHandle(embedder), "Reranker": LocalHandle(reranker)}
    models = [ModelEntry(name="tiny-qwen", kind="embedding", source=str(embedder_dir), deployment="Embedder",
                         default=True),
              ModelEntry(name="tiny-reranker", kind="reranker", source=str(reranker_dir), deployment="Reranker",
                         default=True)]
    index_shards = [IndexShard(i, shards, str(storage), hnsw_threshold=hnsw_threshold) for i in range(shards)]
    pipeline = LocalHandle(SearchPipeline(models=models, handles=handles,
                                          shards=[LocalHandle(s) for s in index_shards]))
    service_args = dict(models=models, handles=handles, pipeline=pipeline, components={"SearchPipeline": pipeline},
                        limits=limits or LimitsConfig(), api_keys_env=api_keys_env,
                        api_keys_file_env=api_keys_file_env)
    service = HandleModelService(**service_args)
    return LocalStack(app=create_app(lambda: service), service=service, shards=index_shards, embedder=embedder,
                      reranker=reranker, service_args=service_args)
