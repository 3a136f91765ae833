"""The application builder named by serve_config.yaml: `deployments.app:build_app`.

No `from __future__ import annotations` here: Ray Serve reads the builder's annotation to
validate `args` into `AppArgs`, and a string annotation would silently hand it a dict.
"""

from typing import Any

from ray import serve
from ray.serve import Application

from .catalog import ModelEntry
from .config import AppArgs, EmbeddingModelConfig, RerankerModelConfig
from .index import IndexShard
from .serving.ingress import APIIngress
from .serving.pipeline import SearchPipeline
from .serving.replicas import Embedder, Reranker

__all__ = ["build_app", "AppArgs"]


def _deployment(cls: type) -> Any:
    """`serve.deployment` as a plain call (its decorator overloads confuse type checkers)."""
    return serve.deployment(cls)


def _deployment_name(config: EmbeddingModelConfig | RerankerModelConfig, base: str, position: int) -> str:
    return config.deployment_name or (base if position == 0 else f"{base}-{position + 1}")


def build_app(args: AppArgs) -> Application:
    """Embedder and Reranker deployments (one per configured model), index shards and the search
    pipeline, behind one HTTP ingress.

    $EMBEDDER_MODEL / $RERANKER_MODEL (and $EMBEDDER_BACKEND / $RERANKER_BACKEND) replace the
    default models' weights (and backends), so `serve run serve_config.yaml` serves local
    folders without editing the file.
    """
    if not isinstance(args, AppArgs):  # called from Python with a dict
        args = AppArgs.model_validate(args or {})
    args = args.with_environment()

    models: list[ModelEntry] = []
    handles: dict[str, Application] = {}
    groups: list[tuple[str, str, type, list[Any]]] = [
        ("embedding", "Embedder", Embedder, list(args.embedding_models)),
        ("reranker", "Reranker", Reranker, list(args.reranker_models)),
    ]
    for kind, base, cls, configs in groups:
        for position, config in enumerate(configs):
            name = _deployment_name(config, base, position)
            if name in handles:
                raise ValueError(f"two models share the deployment name {name!r}; set deployment_name")
            deployment = _deployment(cls).options(name=name, **config.deployment.serve_options())
            handles[name] = deployment.bind(config)
            models.append(ModelEntry(name=config.served_name(), kind=kind, source=config.model,  # type: ignore[arg-type]
                                     deployment=name, default=position == 0, backend=config.backend,
                                     accept_token_ids=getattr(config, "accept_token_ids", False),
                                     admits=config.deployment.admits(),
                                     retry_after_s=config.deployment.retry_after_s))

    index = args.index
    shards = [
        _deployment(IndexShard).options(name=f"IndexShard-{i}", **index.deployment.serve_options())
        .bind(i, index.shards, index.storage_path, index.hnsw_threshold, index.expansion_search)
        for i in range(index.shards)
    ] if index.backend == "embedded" else []
    pipeline = _deployment(SearchPipeline).options(name="SearchPipeline", **args.pipeline.serve_options()).bind(
        models=models, handles=handles, shards=shards,
        postgres=index.postgres if index.backend == "postgres" else None)
    components = {"SearchPipeline": pipeline} | {f"IndexShard-{i}": shard for i, shard in enumerate(shards)}
    ingress = _deployment(APIIngress).options(name="APIIngress", **args.ingress.serve_options())
    return ingress.bind(models=models, handles=handles, pipeline=pipeline, components=components, limits=args.limits,
                        api_keys_env=args.api_keys_env, api_keys_file_env=args.api_keys_file_env,
                        health_timeout_s=args.health_timeout_s)
