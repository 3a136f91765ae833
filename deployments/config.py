"""Typed configuration of the Serve application (the `args` of serve_config.yaml).

Every field has a description, a default, and (for the model sources) an environment
variable. Ray's own option types validate the Ray options, so a typo in an
`autoscaling_config` fails at build time instead of being ignored.
"""

import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .engine.onnx_options import OnnxOptions
from .engine.vllm_options import VllmOptions
from .index.postgres_config import PostgresConfig

__all__ = [
    "DeploymentOptions",
    "EmbeddingModelConfig",
    "RerankerModelConfig",
    "LimitsConfig",
    "IndexConfig",
    "SearchDefaults",
    "AppArgs",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_RERANKER_MODEL",
]

DEFAULT_EMBEDDING_MODEL = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_RERANKER_MODEL = "Qwen/Qwen3-Reranker-0.6B"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DeploymentOptions(_Config):
    """Ray Serve options of one deployment (see REFERENCE.md section 4)."""

    num_replicas: int | None = Field(default=None, ge=0, description="Fixed replica count; excludes autoscaling.")
    autoscaling_config: dict[str, Any] | None = Field(
        default=None,
        description="Ray Serve autoscaling (min_replicas, max_replicas, target_ongoing_requests, delays...). "
        "Validated with ray.serve.config.AutoscalingConfig.",
    )
    max_ongoing_requests: int = Field(default=8, ge=1, description="Requests a replica handles at once.")
    max_queued_requests: int = Field(
        default=64, description="Requests a caller may queue for this deployment before getting 429 (-1: unlimited)."
    )
    ray_actor_options: dict[str, Any] = Field(
        default_factory=lambda: {"num_cpus": 1},
        description="Resources per replica: num_cpus, num_gpus (fractional allowed), memory, resources.",
    )
    health_check_period_s: float = Field(default=10.0, gt=0, description="Seconds between replica health checks.")
    health_check_timeout_s: float = Field(default=30.0, gt=0, description="A health check slower than this fails.")
    graceful_shutdown_timeout_s: float = Field(
        default=20.0, ge=0, description="Seconds a stopping replica gets to finish its requests."
    )
    retry_after_s: float = Field(default=1.0, ge=0, description="Retry-After sent with a 429 from this deployment.")

    @model_validator(mode="after")
    def _check(self) -> "DeploymentOptions":
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        # Ray's own models validate values but silently drop unknown keys: reject those here,
        # so that `min_replica: 1` is an error and not a deployment that never scales.
        from ray.serve.config import AutoscalingConfig
        from ray.serve.schema import RayActorOptionsSchema

        for field, value, schema in (("autoscaling_config", self.autoscaling_config, AutoscalingConfig),
                                     ("ray_actor_options", self.ray_actor_options, RayActorOptionsSchema)):
            if value is None:
                continue
            unknown = sorted(set(value) - set(schema.model_fields))
            if unknown:
                raise ValueError(f"{field}: unknown option(s) {unknown}; known: {sorted(schema.model_fields)}")
            schema.model_validate(value)
        if self.max_queued_requests < -1 or self.max_queued_requests == 0:
            raise ValueError("max_queued_requests must be -1 (unlimited) or positive")
        return self

    def admits(self) -> int | None:
        """Requests one caller can have in flight to this deployment before Ray refuses more (None: no bound):
        `max_ongoing_requests` on each of the most replicas, plus `max_queued_requests` waiting."""
        if self.max_queued_requests < 0:
            return None
        replicas = (int(self.autoscaling_config.get("max_replicas", 1)) if self.autoscaling_config is not None
                    else (1 if self.num_replicas is None else self.num_replicas))
        return self.max_ongoing_requests * max(replicas, 1) + self.max_queued_requests

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for `Deployment.options()`."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": dict(self.ray_actor_options),
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "backpressure_config": {"status_code": 429, "retry_after_s": self.retry_after_s},
        }
        if self.autoscaling_config is not None:
            options["autoscaling_config"] = dict(self.autoscaling_config)
        else:
            options["num_replicas"] = 1 if self.num_replicas is None else self.num_replicas
        return options


_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class _ModelConfig(_Config):
    model: str = Field(description="Local folder or Hugging Face hub id of the weights.")
    name: str | None = Field(
        default=None,
        description="Name requests use in `model`; defaults to the hub id, or a local folder's name.",
    )
    deployment_name: str | None = Field(
        default=None, description="Ray Serve deployment name; defaults to Embedder/Reranker, then -2, -3..."
    )
    backend: Literal["auto", "torch", "vllm", "onnx"] = Field(
        default="auto",
        description="Inference backend: torch (transformers), vllm, or onnx (ONNX Runtime); auto: onnx when the "
        "model folder holds model.onnx, else torch. $EMBEDDER_BACKEND / $RERANKER_BACKEND override the first "
        "model's.",
    )
    vllm: VllmOptions = Field(default_factory=VllmOptions,
                              description="Settings of the vLLM backend (memory share, KV cache, scheduler).")
    onnx: OnnxOptions = Field(default_factory=OnnxOptions,
                              description="Settings of the ONNX Runtime backend (execution providers, threads).")
    device: str = Field(default="auto", description="auto (CUDA when present), cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="auto: bfloat16 on GPU; on CPU, bfloat16 for the torch backend when the CPU has AVX512-BF16 or "
        "AMX (measured 2.8-3.1x embedding, 1.5x reranking throughput, SciFact nDCG@10 -0.07), else float32; "
        "float32 for vLLM on CPU. float32: the exact path, what the model cards' code computes. The onnx backend "
        "computes in its graph's precision (export-onnx --quantize int8 makes an int8 one).",
    )
    max_length: int = Field(default=8192, ge=16, description="Maximum tokens per input (model card: 8192).")
    max_batch_tokens: int | None = Field(
        default=None, ge=64, description="Padded tokens per forward pass; default 32768 on GPU, 4096 on CPU."
    )
    max_batch_size: int = Field(default=256, ge=1, description="Inputs per forward pass at most.")
    batch_wait_ms: float = Field(
        default=0.0, ge=0,
        description="How long an idle replica waits for more requests before a batch; 0: start at once (requests "
        "arriving while a batch computes still share the next one).",
    )
    max_queued_tokens: int = Field(
        default=1 << 20, ge=1, description="Tokens a replica queues before refusing requests with 429."
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="CPU threads for torch in the replica (default: Ray's OMP_NUM_THREADS)."
    )
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions, description="Ray Serve options.")

    @field_validator("deployment_name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None and not _DEPLOYMENT_NAME.match(value):
            raise ValueError("deployment_name must be 1-63 letters, digits, '_', '.' or '-'")
        return value

    def backend_options(self) -> dict[str, Any]:
        """Backend-specific settings, keyed by backend name (each backend reads its own)."""
        return {"vllm": self.vllm.model_dump(), "onnx": self.onnx.model_dump()}

    def served_name(self) -> str:
        if self.name:
            return self.name
        path = os.path.expanduser(self.model)
        return os.path.basename(os.path.normpath(path)) if os.path.isdir(path) else self.model


class EmbeddingModelConfig(_ModelConfig):
    """One embedding model, served by its own deployment."""

    model: str = Field(default=DEFAULT_EMBEDDING_MODEL, description="Local folder or hub id of the weights.")
    accept_token_ids: bool = Field(
        default=False,
        description="Accept lists of token ids as input (OpenAI and TEI token-array inputs). Off by default: ids "
        "from another tokenizer (LangChain's OpenAIEmbeddings sends OpenAI's tiktoken ids unless "
        "check_embedding_ctx_length=False) would embed as the wrong tokens without any error. Turn it on when "
        "clients send this model's own ids (e.g. from POST /tokenize).",
    )


class RerankerModelConfig(_ModelConfig):
    """One Qwen3-Reranker model, served by its own deployment."""

    model: str = Field(default=DEFAULT_RERANKER_MODEL, description="Local folder or hub id of the weights.")
    prefix_cache_min_documents: int = Field(
        default=2, ge=1, description="Share the query prefix's KV cache when a query has at least this many documents."
    )


class LimitsConfig(_Config):
    """What one request may ask; more is answered 413."""

    max_inputs_per_request: int = Field(default=2048, ge=1, description="Texts per embedding request (OpenAI: 2048).")
    max_documents_per_request: int = Field(default=1000, ge=1, description="Documents per rerank/score request.")
    max_request_bytes: int = Field(default=32 << 20, ge=1024, description="Largest request body accepted.")
    max_documents_per_upsert: int = Field(default=1024, ge=1, description="Documents per upsert request.")
    max_top_k: int = Field(default=1000, ge=1, description="Largest `top_k` (ANN candidates) per search.")
    max_top_n: int = Field(default=1000, ge=1, description="Largest `top_n` (results) per search.")
    max_queries_per_search: int = Field(default=64, ge=1, description="Queries in one search request.")
    auto_truncate: bool = Field(
        default=True, description="Truncate over-long inputs when a request does not say; false answers 413."
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0,
        description="Seconds the ingress waits for a request's whole body before answering 408 (the proxy edge, "
        "deployments/http/edge.py, enforces its own, shorter deadline before a request reaches the ingress).",
    )


class SearchDefaults(_Config):
    """What a search gets for the settings its request leaves out."""

    top_k: int = Field(
        default=100, ge=1,
        description="Candidates per retriever when a search gives no `top_k` and its reranker runs on a GPU, or it "
        "does not rerank (the Qwen3 evaluation reranks the top 100).",
    )
    top_k_cpu: int = Field(
        default=20, ge=1,
        description="Candidates per retriever when a search gives no `top_k` and its reranker runs on CPU: the "
        "reranker's cost grows with the candidates, and 100 through a 0.6B reranker take minutes on a few cores "
        "(20 answer within a client's default timeout; see the README's CPU figures).",
    )


class IndexConfig(_Config):
    """Durable document collections and their search index."""

    backend: Literal["embedded", "postgres"] = Field(
        default="embedded",
        description="embedded: SQLite + in-memory vector index shards (IndexShard deployments); postgres: "
        "PostgreSQL + pgvector, reached by every pipeline replica (settings under `postgres`).",
    )
    postgres: PostgresConfig = Field(default_factory=PostgresConfig,
                                     description="The PostgreSQL backend's settings (backend: postgres).")

    storage_path: str = Field(
        default="~/.local/share/qwen3-search/index",
        description="Folder of the durable store (a PersistentVolume on Kubernetes); "
        "$QWEN3_SEARCH_DATA_DIR overrides it.",
    )
    shards: int = Field(default=1, ge=1, le=64, description="Index shard deployments; documents go by id hash.")
    hnsw_threshold: int = Field(
        default=20000, ge=0,
        description="Per shard, an `auto` collection switches from exact search to HNSW at this many documents.",
    )
    expansion_search: int = Field(default=128, ge=1, description="HNSW search breadth (higher: better recall).")
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64,
                                                  max_queued_requests=256),
        description="Ray Serve options of each index shard deployment (always one replica: a shard owns its file).",
    )

    @model_validator(mode="after")
    def _one_replica_per_shard(self) -> "IndexConfig":
        if self.deployment.autoscaling_config is not None or (self.deployment.num_replicas or 1) != 1:
            raise ValueError("an index shard runs exactly one replica; scale the index with `shards`")
        return self


class AppArgs(_Config):
    """Arguments of `deployments.app:build_app`."""

    embedding_models: list[EmbeddingModelConfig] = Field(
        default_factory=lambda: [EmbeddingModelConfig()],
        description="Embedding models, each its own deployment; the first is the default. "
        "$EMBEDDER_MODEL and $EMBEDDER_BACKEND replace the first one's `model` and `backend`.",
    )
    reranker_models: list[RerankerModelConfig] = Field(
        default_factory=lambda: [RerankerModelConfig()],
        description="Reranker models, each its own deployment; the first is the default. "
        "$RERANKER_MODEL and $RERANKER_BACKEND replace the first one's `model` and `backend`.",
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Per-request limits.")
    index: IndexConfig = Field(default_factory=IndexConfig, description="Document collections and search index.")
    search: SearchDefaults = Field(default_factory=SearchDefaults,
                                   description="Defaults of POST /v1/collections/{name}/search.")
    pipeline: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64,
                                                  max_queued_requests=-1),
        description="Ray Serve options of the search pipeline deployment (stateless; may autoscale).",
    )
    ingress: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256,
                                                  max_queued_requests=64),
        description="Ray Serve options of the HTTP ingress deployment. Keep max_queued_requests bounded: it is "
        "what each proxy lets wait for an ingress slot before it answers 429 at once.",
    )
    health_timeout_s: float = Field(
        default=5.0, gt=0,
        description="How long GET /health waits for each deployment to answer; one that is starting, restarting "
        "or too busy to answer within it is reported unavailable (503).",
    )
    check_model_sources: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Check at build time, before any replica starts, that each model's folder exists or its hub id "
        "is in the cache or on a reachable hub; a model that cannot load fails the build with one line naming it. "
        "auto: only on a one-node Ray cluster (`serve run` on one machine), where the building node is the "
        "replicas' node; on a larger cluster the replicas' nodes may hold folders and caches the building node "
        "lacks. never: leave it to the replicas.",
    )
    api_keys_env: str = Field(
        default="QWEN3_SEARCH_API_KEYS",
        description="Environment variable with comma-separated API keys; unset or empty: no authentication.",
    )
    api_keys_file_env: str = Field(
        default="QWEN3_SEARCH_API_KEYS_FILE",
        description="Environment variable naming a file (e.g. a mounted Secret) with one API key per line.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> "AppArgs":
        if not self.embedding_models or not self.reranker_models:
            raise ValueError("configure at least one embedding model and one reranker model")
        for kind, models in (("embedding", self.embedding_models), ("reranker", self.reranker_models)):
            names = [m.served_name() for m in models]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} model names must be unique, got {names}; set `name` to tell them apart")
        return self

    def with_environment(self, environ: dict[str, str] | None = None) -> "AppArgs":
        """A copy with $EMBEDDER_MODEL / $EMBEDDER_BACKEND / $RERANKER_MODEL / $RERANKER_BACKEND applied to the
        default (first) models; a bad value fails validation like one in the file."""
        env = os.environ if environ is None else environ
        updated = self.model_copy(deep=True)
        groups: list[tuple[list[Any], str]] = [(updated.embedding_models, "EMBEDDER"),
                                               (updated.reranker_models, "RERANKER")]
        for models, prefix in groups:
            changes = {field: env[f"{prefix}_{field.upper()}"] for field in ("model", "backend")
                       if env.get(f"{prefix}_{field.upper()}")}
            if changes:
                models[0] = models[0].model_copy(update=changes)
        if env.get("QWEN3_SEARCH_INDEX_BACKEND"):  # $QWEN3_SEARCH_POSTGRES_DSN is read by PostgresIndex itself
            updated.index = updated.index.model_copy(update={"backend": env["QWEN3_SEARCH_INDEX_BACKEND"]})
        return AppArgs.model_validate(updated.model_dump())
