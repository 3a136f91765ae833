"""The HTTP layer: routes, wire types and status codes, and nothing about Ray or models.

Every route parses its body into a wire type from `clients.types`, turns it into a job for
a model deployment through a `ModelService`, and renders the answer in the dialect it
speaks (OpenAI, TEI, Jina/vLLM, Cohere). Errors become one envelope through the table in
`deployments.errors`. The Serve ingress (`deployments.ingress`) provides the service.
"""

import base64
import os
import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clients.types import (
    CohereRerankRequest,
    CohereRerankResponse,
    Collection,
    CollectionDeleted,
    CollectionList,
    CountResponse,
    CreateCollectionRequest,
    DeleteResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorDetail,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    Limits,
    ModelList,
    RerankRequest,
    RerankResponse,
    ScoreRequest,
    ScoreResponse,
    SearchRequest,
    SearchResult,
    ServedModel,
    StoredDocument,
    TEIEmbedRequest,
    TEIRerankRequest,
    TEIRerankResult,
    UpsertRequest,
    UpsertResponse,
)

from .catalog import ModelEntry, ModelKind, resolve_entry
from .config import LimitsConfig
from .engine.reranking import sigmoid
from .errors import (
    AuthenticationFailed,
    InvalidRequest,
    MalformedRequest,
    RequestTooLarge,
    error_body,
)
from .jobs import EmbedJob, EmbedOutcome, RerankJob, RerankOutcome
from .metrics import CONTENT_TYPE, APIMetrics

__all__ = ["VERSION", "ModelEntry", "ModelService", "create_app", "JSONBody", "resolve_entry"]

VERSION = "0.1.0"
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class JSONBody(Response):
    """JSON rendered by orjson; numpy arrays are written directly (float32 stays short and exact)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class ModelService(Protocol):
    """What the routes need from the layer below (the Serve ingress implements it with handles)."""

    entries: list[ModelEntry]
    limits: LimitsConfig
    metrics: APIMetrics

    def resolve(self, kind: ModelKind, name: str | None) -> ModelEntry: ...

    async def embed(self, entry: ModelEntry, job: EmbedJob) -> EmbedOutcome: ...

    async def rerank(self, entry: ModelEntry, job: RerankJob) -> RerankOutcome: ...

    async def describe(self) -> list[ServedModel]: ...

    async def health(self) -> dict[str, str]: ...

    def api_keys(self) -> frozenset[str]: ...

    async def pipeline(self, method: str, *args: Any) -> Any:
        """Call a SearchPipeline method; raises the typed error of a refused request."""
        ...


# ---------------------------------------------------------------- middleware
class APIMiddleware:
    """Request ids, authentication, body-size limit, timing headers, metrics and the error envelope.

    A pure ASGI middleware (no per-request task or body copy, unlike BaseHTTPMiddleware).
    """

    def __init__(self, app: Any, service: Callable[[], "ModelService"], echo_request_id: bool = True) -> None:
        self.app = app
        self.service = service
        self.echo_request_id = echo_request_id

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given_id = headers.get("x-request-id", "")
        if self.echo_request_id:
            request_id = given_id if _REQUEST_ID.match(given_id) else uuid.uuid4().hex
        else:  # behind Ray Serve's proxy, which set the header and will echo it
            request_id = given_id or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status_holder = {"status": 500, "started": False}

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"], status_holder["started"] = message["status"], True
                queue_s, inference_s, tokens = state.get("timings", (0.0, 0.0, 0))
                extra = [(b"x-request-id", request_id.encode())] if self.echo_request_id else []
                extra += [
                    (b"x-compute-time", f"{(time.perf_counter() - started) * 1000:.3f}".encode()),
                    (b"x-queue-time", f"{queue_s * 1000:.3f}".encode()),
                    (b"x-inference-time", f"{inference_s * 1000:.3f}".encode()),
                    (b"x-compute-tokens", str(tokens).encode()),
                ]
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            service = self.service()
            path = scope.get("path", "")
            keys = service.api_keys()
            if keys and path not in OPEN_PATHS:
                auth = headers.get("authorization", "")
                token = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")
                if token not in keys:
                    raise AuthenticationFailed("missing or invalid API key; send 'Authorization: Bearer <key>'")
            limit = service.limits.max_request_bytes
            if int(headers.get("content-length") or 0) > limit:
                raise RequestTooLarge(f"request body is larger than the limit of {limit} bytes")
            received = 0

            async def limited_receive() -> MutableMapping[str, Any]:
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(f"request body is larger than the limit of {limit} bytes")
                return message

            await self.app(scope, limited_receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - every error leaves as the envelope
            if status_holder["started"]:
                raise
            await _send_error(exc, request_id, send_with_headers)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            try:
                metrics = self.service().metrics
                metrics.requests.labels(label, str(status_holder["status"])).inc()
                metrics.latency.labels(label).observe(time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - metrics never fail a request
                pass


async def _send_error(exc: BaseException, request_id: str, send: Callable) -> None:
    mapping, body = error_body(exc, request_id)
    headers = [(b"content-type", b"application/json")]
    if mapping.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, round(mapping.retry_after_s))).encode()))
    payload = orjson.dumps(body.model_dump())
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": mapping.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _error_json(status: int, type_: str, message: str, param: str | None, code: str) -> JSONBody:
    body = ErrorResponse(error=ErrorDetail(message=message, type=type_, param=param, code=code))
    return JSONBody(body.model_dump(), status_code=status)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error_json(400, "invalid_request_error", "the request body is not valid JSON", None, "invalid_json")
    parts, param = [], None
    for error in errors[:3]:
        loc = ".".join(str(x) for x in error.get("loc", ()) if x != "body")
        param = param or loc or None
        parts.append(f"{loc}: {error.get('msg')}" if loc else str(error.get("msg")))
    return _error_json(422, "invalid_request_error", "; ".join(parts), param, "invalid_request")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    kinds = {404: "not_found_error", 405: "invalid_request_error"}
    message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    return _error_json(exc.status_code, kinds.get(exc.status_code, "invalid_request_error"), message, None,
                       str(exc.status_code))


# ---------------------------------------------------------------- request helpers
def _split_input(value: Any, limits: LimitsConfig) -> tuple[list[str] | None, list[list[int]] | None]:
    """OpenAI's four input forms -> texts or token-id lists, within the per-request limit."""
    if isinstance(value, str):
        texts, ids = [value], None
    elif value and all(isinstance(v, int) for v in value):
        texts, ids = None, [list(value)]
    elif value and all(isinstance(v, list) for v in value):
        texts, ids = None, [list(v) for v in value]
    else:
        texts, ids = list(value), None
    count = len(texts if texts is not None else ids or [])
    if count > limits.max_inputs_per_request:
        raise RequestTooLarge(f"{count} inputs in one request; the limit is {limits.max_inputs_per_request}",
                              param="input")
    return texts, ids


def _check_documents(count: int, limits: LimitsConfig, param: str = "documents") -> None:
    if count > limits.max_documents_per_request:
        raise RequestTooLarge(
            f"{count} documents in one request; the limit is {limits.max_documents_per_request}", param=param
        )


def _note_timings(request: Request, outcome: EmbedOutcome | RerankOutcome) -> None:
    request.state.timings = (outcome.timings.queue_s, outcome.timings.inference_s, outcome.timings.tokens)


def _ranked(scores: np.ndarray, top_n: int | None) -> list[int]:
    order = np.argsort(-scores, kind="stable").tolist()
    return order[:top_n] if top_n is not None else order


# ---------------------------------------------------------------- the app
def create_app(service: Callable[[], ModelService] | None = None, *, echo_request_id: bool = True) -> FastAPI:
    """The FastAPI app; `service()` returns the ModelService (default: `app.state.service`).

    `echo_request_id=False` when a proxy in front (Ray Serve's) already answers with x-request-id.
    """
    app = FastAPI(
        title="qwen3-search",
        version=VERSION,
        description="Qwen3-Embedding and Qwen3-Reranker behind the APIs clients already speak: OpenAI embeddings, "
        "Text Embeddings Inference, Jina/vLLM and Cohere rerank, vLLM score. Errors are "
        '`{"error": {"message", "type", "param", "code"}}`.',
    )
    get_service: Callable[[], ModelService] = service or (lambda: app.state.service)
    app.add_middleware(APIMiddleware, service=lambda: get_service(), echo_request_id=echo_request_id)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    async def embed(request: Request, model: str | None, job: EmbedJob) -> tuple[ModelEntry, EmbedOutcome]:
        svc = get_service()
        entry = svc.resolve("embedding", model)
        outcome = await svc.embed(entry, job)
        _note_timings(request, outcome)
        return entry, outcome

    async def rerank(request: Request, model: str | None, job: RerankJob) -> tuple[ModelEntry, RerankOutcome]:
        svc = get_service()
        entry = svc.resolve("reranker", model)
        outcome = await svc.rerank(entry, job)
        _note_timings(request, outcome)
        return entry, outcome

    @app.post("/v1/embeddings", response_model=EmbeddingResponse, tags=["embeddings"],
              summary="OpenAI-compatible embeddings")
    async def openai_embeddings(body: EmbeddingRequest, request: Request) -> Response:
        limits = get_service().limits
        texts, ids = _split_input(body.input, limits)
        if body.instruction is not None and body.input_type == "document":
            raise InvalidRequest("an instruction embeds queries; drop input_type=document", param="input_type")
        entry, outcome = await embed(request, body.model, EmbedJob(
            texts=texts, token_ids=ids, instruction=body.instruction, input_type=body.input_type,
            dimensions=body.dimensions, truncate=limits.auto_truncate,
        ))
        vectors = outcome.vectors
        if body.encoding_format == "base64":
            little = vectors.astype("<f4", copy=False)
            encoded: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
        else:
            encoded = list(vectors)
        tokens = int(sum(outcome.token_counts))
        return JSONBody({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
            "model": entry.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    @app.post("/embed", response_model=list[list[float]], tags=["embeddings"], summary="TEI-compatible embeddings")
    async def tei_embed(body: TEIEmbedRequest, request: Request) -> Response:
        limits = get_service().limits
        texts, ids = _split_input(body.inputs, limits)
        _, outcome = await embed(request, body.model, EmbedJob(
            texts=texts, token_ids=ids, prompt_name=body.prompt_name, dimensions=body.dimensions,
            normalize=body.normalize, truncate=limits.auto_truncate if body.truncate is None else body.truncate,
            truncation_direction="left" if body.truncation_direction.lower() == "left" else "right",
        ))
        return JSONBody(outcome.vectors)

    async def jina_rerank(body: RerankRequest, request: Request) -> Response:
        limits = get_service().limits
        documents = body.document_texts()
        _check_documents(len(documents), limits)
        entry, outcome = await rerank(request, body.model, RerankJob(
            groups=[(body.query, documents)], instruction=body.instruction,
            truncate=limits.auto_truncate if body.truncate is None else body.truncate,
            max_tokens_per_document=body.max_tokens_per_doc,
        ))
        scores = sigmoid(outcome.logits[0])
        tokens = int(sum(outcome.token_counts[0]))
        results = [{"index": i, "relevance_score": float(scores[i]),
                    **({"document": {"text": documents[i]}} if body.return_documents else {})}
                   for i in _ranked(scores, body.top_n)]
        return JSONBody({"id": request.state.request_id, "model": entry.name,
                         "usage": {"total_tokens": tokens, "prompt_tokens": tokens}, "results": results})

    @app.post("/v1/rerank", response_model=RerankResponse, tags=["rerank"], summary="Jina / vLLM rerank")
    async def v1_rerank(body: RerankRequest, request: Request) -> Response:
        return await jina_rerank(body, request)

    @app.post("/v2/rerank", response_model=CohereRerankResponse, tags=["rerank"], summary="Cohere v2 rerank")
    async def cohere_rerank(body: CohereRerankRequest, request: Request) -> Response:
        limits = get_service().limits
        documents = body.document_texts()
        _check_documents(len(documents), limits)
        _, outcome = await rerank(request, body.model, RerankJob(
            groups=[(body.query, documents)], instruction=body.instruction, truncate=True,
            max_tokens_per_document=body.max_tokens_per_doc,
        ))
        scores = sigmoid(outcome.logits[0])
        results = [{"index": i, "relevance_score": float(scores[i]),
                    **({"document": {"text": documents[i]}} if body.return_documents else {})}
                   for i in _ranked(scores, body.top_n)]
        tokens = int(sum(outcome.token_counts[0]))
        return JSONBody({"id": request.state.request_id, "results": results,
                         "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1},
                                  "tokens": {"input_tokens": tokens, "output_tokens": 0}}})

    @app.post("/rerank", tags=["rerank"], summary="TEI rerank (body with `texts`) or Jina rerank (with `documents`)",
              response_model=list[TEIRerankResult] | RerankResponse)
    async def rerank_either(request: Request) -> Response:
        try:
            payload = await request.json()
        except ValueError as exc:
            raise MalformedRequest("the request body is not valid JSON") from exc
        if isinstance(payload, dict) and "texts" in payload:
            return await tei_rerank(_parse(TEIRerankRequest, payload), request)
        if isinstance(payload, dict) and "documents" in payload:
            return await jina_rerank(_parse(RerankRequest, payload), request)
        raise InvalidRequest("give `texts` (TEI rerank) or `documents` (Jina rerank)", param="texts")

    async def tei_rerank(body: TEIRerankRequest, request: Request) -> Response:
        limits = get_service().limits
        _check_documents(len(body.texts), limits, param="texts")
        _, outcome = await rerank(request, body.model, RerankJob(
            groups=[(body.query, body.texts)], instruction=body.instruction,
            truncate=limits.auto_truncate if body.truncate is None else body.truncate,
        ))
        logits = outcome.logits[0]
        scores = logits if body.raw_scores else sigmoid(logits)
        return JSONBody([{"index": i, "score": float(scores[i]),
                          **({"text": body.texts[i]} if body.return_text else {})} for i in _ranked(scores, None)])

    async def vllm_score(body: ScoreRequest, request: Request) -> Response:
        limits = get_service().limits
        queries, documents = body.pairs()
        _check_documents(len(documents), limits)
        grouped: dict[str, list[int]] = {}
        for index, query in enumerate(queries):
            grouped.setdefault(query, []).append(index)
        entry, outcome = await rerank(request, body.model, RerankJob(
            groups=[(query, [documents[i] for i in positions]) for query, positions in grouped.items()],
            instruction=body.instruction, truncate=limits.auto_truncate,
            max_tokens_per_document=body.truncate_prompt_tokens,
        ))
        scores = np.empty(len(documents), dtype=np.float32)
        for positions, logits in zip(grouped.values(), outcome.logits, strict=True):
            scores[positions] = sigmoid(logits)
        tokens = int(sum(sum(c) for c in outcome.token_counts))
        return JSONBody({"id": request.state.request_id, "object": "list", "created": int(time.time()),
                         "model": entry.name,
                         "data": [{"index": i, "object": "score", "score": float(s)} for i, s in enumerate(scores)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/score", response_model=ScoreResponse, tags=["rerank"], summary="vLLM score")
    async def score(body: ScoreRequest, request: Request) -> Response:
        return await vllm_score(body, request)

    @app.post("/v1/score", response_model=ScoreResponse, tags=["rerank"], summary="vLLM score (v1 path)")
    async def v1_score(body: ScoreRequest, request: Request) -> Response:
        return await vllm_score(body, request)

    # ------------------------------------------------------------ collections and search
    @app.put("/v1/collections/{name}", response_model=Collection, status_code=201, tags=["collections"],
             summary="Create a collection (201), or confirm an identical one (200); 409 if it differs",
             responses={200: {"model": Collection}})
    async def create_collection(name: str, body: CreateCollectionRequest | None = None) -> Response:
        body = body or CreateCollectionRequest()
        record, created = await get_service().pipeline("create_collection", name, body.model, body.dimensions,
                                                       body.index)
        return JSONBody(record, status_code=201 if created else 200)

    @app.get("/v1/collections", response_model=CollectionList, tags=["collections"], summary="List collections")
    async def list_collections() -> Response:
        return JSONBody({"collections": await get_service().pipeline("list_collections")})

    @app.get("/v1/collections/{name}", response_model=Collection, tags=["collections"], summary="A collection")
    async def get_collection(name: str) -> Response:
        return JSONBody(await get_service().pipeline("get_collection", name))

    @app.delete("/v1/collections/{name}", response_model=CollectionDeleted, tags=["collections"],
                summary="Delete a collection and its documents")
    async def delete_collection(name: str) -> Response:
        return JSONBody(await get_service().pipeline("delete_collection", name))

    @app.get("/v1/collections/{name}/count", response_model=CountResponse, tags=["collections"],
             summary="Documents in a collection")
    async def count_documents(name: str) -> Response:
        return JSONBody(await get_service().pipeline("count", name))

    @app.post("/v1/collections/{name}/documents", response_model=UpsertResponse, tags=["collections"],
              summary="Insert or replace documents (idempotent by id)")
    async def upsert_documents(name: str, body: UpsertRequest) -> Response:
        svc = get_service()
        limit = svc.limits.max_documents_per_upsert
        if len(body.documents) > limit:
            raise RequestTooLarge(f"{len(body.documents)} documents in one upload; the limit is {limit}",
                                  param="documents")
        documents = [d.model_dump() for d in body.documents]
        return JSONBody(await svc.pipeline("upsert", name, documents))

    @app.get("/v1/collections/{name}/documents/{doc_id:path}", response_model=StoredDocument,
             tags=["collections"], summary="A stored document")
    async def get_document(name: str, doc_id: str) -> Response:
        return JSONBody(await get_service().pipeline("get_document", name, doc_id))

    @app.delete("/v1/collections/{name}/documents/{doc_id:path}", response_model=DeleteResponse,
                tags=["collections"], summary="Delete a document")
    async def delete_document(name: str, doc_id: str) -> Response:
        return JSONBody(await get_service().pipeline("delete_document", name, doc_id))

    @app.post("/v1/collections/{name}/search", response_model=SearchResult | list[SearchResult],
              tags=["collections"], summary="Embed the query, search the index, rerank the candidates")
    async def search(name: str, body: SearchRequest, request: Request) -> Response:
        limits = get_service().limits
        queries = body.queries()
        for value, limit, param in ((body.top_k, limits.max_top_k, "top_k"), (body.top_n, limits.max_top_n, "top_n"),
                                    (len(queries), limits.max_queries_per_search, "query")):
            if value > limit:
                raise RequestTooLarge(f"{param} is {value}; the limit is {limit}", param=param)
        outcome = await get_service().pipeline("search", name, {
            "queries": queries, "top_k": body.top_k, "top_n": body.top_n, "instruction": body.instruction,
            "filter": body.filter, "rerank": body.rerank, "reranker": body.reranker,
            "return_metadata": body.return_metadata, "exact": body.exact,
        })
        request.state.timings = (outcome["queue_s"], outcome["inference_s"], outcome["tokens"])
        answers = [{"results": results, "timings": outcome["timings"]} for results in outcome["results"]]
        return JSONBody(answers[0] if isinstance(body.query, str) else answers)

    @app.get("/v1/models", response_model=ModelList, tags=["service"], summary="OpenAI model list")
    async def models() -> Response:
        return JSONBody({"object": "list", "data": [
            {"id": e.name, "object": "model", "created": 0, "owned_by": "qwen3-search"}
            for e in get_service().entries]})

    @app.get("/info", response_model=InfoResponse, tags=["service"], summary="Models, dimensions, limits, version")
    async def info() -> Response:
        svc = get_service()
        limits = Limits(**svc.limits.model_dump())
        described = await svc.describe()
        return JSONBody(InfoResponse(version=VERSION, models=described, limits=limits).model_dump(mode="json"))

    @app.get("/health", response_model=HealthResponse, tags=["service"],
             summary="200 when every model deployment answers, else 503",
             responses={503: {"model": HealthResponse}})
    async def health() -> Response:
        states = await get_service().health()
        ok = all(v == "ok" for v in states.values())
        return JSONBody({"status": "ok" if ok else "unavailable", "deployments": states},
                        status_code=200 if ok else 503)

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(get_service().metrics.render(), media_type=CONTENT_TYPE)

    return app


def _parse(model: Any, payload: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def read_api_keys(env_name: str, file_env_name: str) -> frozenset[str]:
    """Keys from $env_name (comma-separated) and from the file named by $file_env_name (one per line)."""
    keys = {k.strip() for k in os.environ.get(env_name, "").split(",") if k.strip()}
    path = os.environ.get(file_env_name)
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            keys |= {line.strip() for line in f if line.strip() and not line.startswith("#")}
    return frozenset(keys)
