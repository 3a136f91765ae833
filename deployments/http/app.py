"""The HTTP application: one FastAPI app with a router per API dialect.

Every route parses its body into a wire type from `clients.types`, turns it into a job for
the layer below (a `ModelService`, see `service.py`) and renders the answer in the dialect
it speaks. Errors leave as one envelope through the table in `errors.py`. No torch and no
Ray here: the Serve ingress (`deployments.serving.ingress`) provides the service.
"""

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidRequest, MalformedRequest
from .errors import MethodNotAllowed, RouteNotFound, error_response_bytes
from .middleware import OPEN_PATHS, APIMiddleware
from .routers import ALL_ROUTERS
from .service import ModelService
from .version import VERSION

__all__ = ["create_app", "validation_error"]


# Tags of bodies that are a union of dialects (`POST /rerank`): pydantic puts the chosen tag in
# the error location, which names no field of the request.
_UNION_TAGS = frozenset({"tei", "jina"})
# Error types of the wire types' own checks (clients/types/_checks.py): more telling than the
# "not a string" of the other members of a union, so they are reported first.
_OWN_CHECKS = frozenset({"text_invalid", "json_value_invalid", "duplicate_id"})


def _field_path(where: list) -> list:
    """The location without the members of unions pydantic names in it (`str`, `list[int]`, `RerankDocument`)."""
    def member(i: int, part: object) -> bool:
        if not isinstance(part, str) or not part:
            return False
        # A capitalised last part is more likely a client's unknown field ("Dimension") than a model name.
        return part in ("str", "int", "float", "bool", "none") or "[" in part or (
            part[0].isupper() and i < len(where) - 1)
    return [part for i, part in enumerate(where) if not member(i, part)]


def validation_error(errors: list[dict]) -> Exception:
    """FastAPI's validation errors as our typed error: the first three, naming the first field."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedRequest("the request body is not valid JSON")
    errors = sorted(errors, key=lambda e: e.get("type") not in _OWN_CHECKS)  # stable: order kept otherwise
    parts, param = [], None
    for error in errors[:3]:
        where = list(error.get("loc", ()))
        if where[:1] == ["body"]:
            where = where[1:]
            if where[:1] and where[0] in _UNION_TAGS:
                where = where[1:]
        where = _field_path(where)
        loc = ".".join(str(x) for x in where)
        param = param or loc or None
        parts.append(f"{loc}: {error.get('msg')}" if loc else str(error.get("msg")))
    return InvalidRequest("; ".join(parts), param=param)


def _envelope(exc: Exception, request: Request) -> Response:
    status, headers, payload = error_response_bytes(exc, getattr(request.state, "request_id", None))
    return Response(payload, status_code=status, headers={k.decode(): v.decode() for k, v in headers
                                                          if k != b"content-length"})


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _envelope(validation_error(list(exc.errors())), request)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI could not parse the body (its cause is kept)
        if isinstance(exc.__cause__, RecursionError):
            return _envelope(MalformedRequest("the request body is JSON nested too deeply to parse"), request)
        return _envelope(MalformedRequest(f"the request body could not be parsed: {exc.detail}"), request)
    if exc.status_code == 404:
        return _envelope(RouteNotFound(f"no route {request.method} {request.url.path}"), request)
    if exc.status_code == 405:
        return _envelope(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"), request)
    return _envelope(InvalidRequest(str(exc.detail)), request)


def _document_authentication(app: FastAPI) -> None:
    """The API keys in OpenAPI: `Authorization: Bearer <key>` or `x-api-key: <key>` on every route but the
    open ones (health, docs), as the middleware checks them when keys are configured."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "One of the server's API keys (when it has any): 401 otherwise."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                           "description": "The same key in the `x-api-key` header (Anthropic / Cohere style)."},
            }
            schema["security"] = [{"bearer": []}, {"apiKey": []}]
            for path, operations in schema.get("paths", {}).items():
                if path in OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(service: Callable[[], ModelService] | None = None, *, echo_request_id: bool = True) -> FastAPI:
    """The FastAPI app; `service()` returns the ModelService (default: `app.state.service`).

    `echo_request_id=False` when a proxy in front (Ray Serve's) already answers with x-request-id.
    """
    app = FastAPI(
        title="qwen3-search",
        version=VERSION,
        description="Qwen3-Embedding and Qwen3-Reranker behind the APIs clients already speak: OpenAI embeddings, "
        "Text Embeddings Inference, Jina/vLLM and Cohere rerank, vLLM score; plus collections and search. "
        'Errors are `{"error": {"message", "type", "param", "code"}}`.',
    )
    _document_authentication(app)
    app.state.get_service = service or (lambda: app.state.service)
    app.add_middleware(APIMiddleware, service=lambda: app.state.get_service(), echo_request_id=echo_request_id)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for router in ALL_ROUTERS:
        app.include_router(router)
    return app
