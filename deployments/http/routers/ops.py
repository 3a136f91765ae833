"""Operations: `GET /info`, `GET /health`, `GET /metrics`."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import HealthResponse, InfoResponse, Limits, ServedModel

from ...catalog import ModelEntry
from ...config import LimitsConfig
from ..metrics import CONTENT_TYPE
from ..version import VERSION
from ..wire import model_service, respond

router = APIRouter(tags=["service"])


# TEI's pooling names for the sentence-transformers ones the engine reports.
_TEI_POOLING = {"lasttoken": "last_token", "mean": "mean", "cls": "cls"}


def tei_info(entry: ModelEntry, described: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
    """TEI's `/info` fields for one model: an embedder with its pooling, or a reranker (TEI's classifier
    metadata, one label: the relevance score)."""
    if entry.kind == "embedding":
        pooling = described.get("pooling") or "mean"
        model_type: dict[str, Any] = {"embedding": {"pooling": _TEI_POOLING.get(pooling, pooling)}}
        max_batch_tokens, max_batch_size = described.get("max_batch_tokens"), described.get("max_batch_size")
        client_batch = limits.max_inputs_per_request
    else:
        model_type = {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
        max_batch_tokens, max_batch_size = None, None
        client_batch = limits.max_documents_per_request
    return {"model_id": entry.name, "model_sha": None, "model_dtype": described.get("dtype") or "float32",
            "model_type": model_type, "max_concurrent_requests": None,
            "max_input_length": described.get("max_length"), "max_batch_tokens": max_batch_tokens,
            "max_batch_requests": max_batch_size, "max_client_batch_size": client_batch,
            "auto_truncate": limits.auto_truncate, "tokenization_workers": None, "sha": None, "docker_label": None}


@router.get("/info", response_model=InfoResponse,
            summary="Models, dimensions, backends, limits, version; and TEI's fields for the default embedder")
async def info(request: Request) -> Response:
    service = model_service(request)
    described = await service.describe()
    models = [ServedModel(id=e.name, deployment=e.deployment, default=e.default,
                          **{**d, "accept_token_ids": e.accept_token_ids if e.kind == "embedding" else None})
              for e, d in zip(service.entries, described, strict=True)]
    tei: dict[str, Any] = {}
    default = next(((e, d) for e, d in zip(service.entries, described, strict=True)
                    if e.kind == "embedding" and e.default), None)
    if default is not None:  # TEI describes its one model; its clients read model_type first
        tei = tei_info(*default, service.limits)
    return respond(InfoResponse(version=VERSION, models=models, limits=Limits(**service.limits.model_dump()), **tei))


@router.get("/health", response_model=HealthResponse, summary="200 when every deployment answers, else 503",
            responses={503: {"model": HealthResponse}})
async def health(request: Request) -> Response:
    states = await model_service(request).health()
    ok = all(v == "ok" for v in states.values())
    return respond(HealthResponse(status="ok" if ok else "unavailable", deployments=states),
                   status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(model_service(request).metrics.render(), media_type=CONTENT_TYPE)
