"""Wire types shared by every route: the error envelope, service information, health, models."""

from typing import Any, Literal

from pydantic import Field

from ._base import WireModel

__all__ = ["ErrorDetail", "ErrorResponse", "ModelCard", "ModelList", "ServedModel", "Limits", "InfoResponse",
           "HealthResponse"]


class ErrorDetail(WireModel):
    message: str = Field(description="What went wrong, for a person.")
    type: str = Field(description="Error class, e.g. invalid_request_error, rate_limit_error.")
    param: str | None = Field(default=None, description="The request field at fault, when one is.")
    code: str | int | None = Field(default=None, description="A stable machine-readable code.")


class ErrorResponse(WireModel):
    """Every error answer: `{"error": {"message", "type", "param", "code"}}` (what OpenAI clients parse),
    but on the TEI routes (`TEIErrorResponse`)."""

    error: ErrorDetail


class TEIErrorResponse(WireModel):
    """Error answers of the Text Embeddings Inference routes (`/embed`, `/tokenize`, `/decode`, `POST /`,
    `/tei/{model}/...`): TEI's own body, which TEI clients parse, with the envelope's other fields beside."""

    error: str = Field(description="What went wrong.")
    error_type: str = Field(description="TEI's kind of error: Validation, Overloaded, Unhealthy or Backend.")
    type: str = Field(description="This service's error type, as in the envelope's `error.type`.")
    param: str | None = Field(default=None, description="The request field at fault, when one is.")
    code: str | int | None = Field(default=None, description="This service's error code, as in `error.code`.")


class ModelCard(WireModel):
    """OpenAI `/v1/models` entry."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "qwen3-search"


class ModelList(WireModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ServedModel(WireModel):
    """One model the service serves."""

    id: str = Field(description="The name requests use in their `model` field.")
    kind: Literal["embedding", "reranker"]
    source: str = Field(description="Folder or hub id the weights were loaded from.")
    deployment: str = Field(description="The Ray Serve deployment that serves it.")
    default: bool = Field(description="Used when a request names no model.")
    max_length: int = Field(description="Maximum tokens per input (per query+document prompt for rerankers).")
    dimensions: int | None = Field(default=None, description="Full embedding width (embedding models).")
    pooling: str | None = None
    default_instruction: str | None = None
    prompts: dict[str, str] | None = None
    device: str | None = None
    dtype: str | None = None
    backend: str | None = Field(default=None, description="Inference backend: torch, vllm or onnx.")
    accept_token_ids: bool | None = Field(default=None, description="Embedding models: token-id inputs taken.")


class Limits(WireModel):
    """Per-request limits; larger requests are answered 413."""

    max_inputs_per_request: int
    max_documents_per_request: int
    max_request_bytes: int
    max_documents_per_upsert: int = 1024
    max_top_k: int = 1000
    max_top_n: int = 1000
    max_queries_per_search: int = 64
    auto_truncate: bool = Field(description="Whether over-long inputs are truncated when a request does not say.")
    body_timeout_s: float = Field(default=60.0, description="Seconds a request body may take to arrive (then 408).")


class TEIInfoFields(WireModel):
    """Text Embeddings Inference's `/info` fields, describing one model."""

    model_id: str | None = Field(default=None, description="TEI: the model's name.")
    model_sha: str | None = None
    model_dtype: str | None = Field(default=None, description="TEI: its weight dtype.")
    model_type: dict[str, dict[str, Any]] | None = Field(
        default=None, description='TEI: `{"embedding": {"pooling": "last_token" | "mean" | "cls"}}`, or for a '
        'reranker `{"reranker": {"id2label": ..., "label2id": ...}}`.'
    )
    max_concurrent_requests: int | None = None
    max_input_length: int | None = Field(default=None, description="TEI: tokens per input at most.")
    max_batch_tokens: int | None = Field(default=None, description="TEI: tokens per forward pass at most.")
    max_batch_requests: int | None = Field(default=None, description="TEI: inputs per forward pass at most.")
    max_client_batch_size: int | None = Field(default=None, description="TEI: inputs (or a reranker's texts) "
                                              "per request at most.")
    auto_truncate: bool | None = None
    tokenization_workers: int | None = None
    sha: str | None = None
    docker_label: str | None = None


class TEIInfo(TEIInfoFields):
    """`GET /tei/{model}/info`: TEI's `/info` of one served model, for TEI clients given that root."""

    version: str


class InfoResponse(TEIInfoFields):
    """This service's models and limits, plus Text Embeddings Inference's `/info` fields.

    TEI serves one model per server and its clients (tei-client, LangChain's TEI classes) read
    `model_type` before they call anything; here the `model_*` and `max_*` fields describe the
    default embedding model (`/tei/{model}/info` describes any one model).
    """

    version: str
    models: list[ServedModel]
    limits: Limits


class HealthResponse(WireModel):
    status: Literal["ok", "unavailable"]
    deployments: dict[str, str] = Field(description="Each model deployment: `ok` or why it is not.")
