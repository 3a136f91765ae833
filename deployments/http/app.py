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
from .middleware import APIMiddleware
from .routers import ALL_ROUTERS
from .service import ModelService
from .version import VERSION

__all__ = ["create_app", "validation_error"]


# Tags of bodies that are a union of dialects (`POST /rerank`): pydantic puts the chosen tag in
# the error location, which names no field of the request.
_UNION_TAGS = frozenset({"tei", "jina"})


def validation_error(errors: list[dict]) -> Exception:
    """FastAPI's validation errors as our typed error: the first three, naming the first field."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedRequest("the request body is not valid JSON")
    parts, param = [], None
    for error in errors[:3]:
        where = list(error.get("loc", ()))
        if where[:1] == ["body"]:
            where = where[1:]
            if where[:1] and where[0] in _UNION_TAGS:
                where = where[1:]
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
    if exc.status_code == 404:
        return _envelope(RouteNotFound(f"no route {request.method} {request.url.path}"), request)
    if exc.status_code == 405:
        return _envelope(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"), request)
    return _envelope(InvalidRequest(str(exc.detail)), request)


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
    app.state.get_service = service or (lambda: app.state.service)
    app.add_middleware(APIMiddleware, service=lambda: app.state.get_service(), echo_request_id=echo_request_id)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for router in ALL_ROUTERS:
        app.include_router(router)
    return app
