"""The HTTP application: one FastAPI app with a router per API dialect.

Every route parses its body into a wire type from `clients.types`, turns it into a job for
the layer below (a `ModelService`, see `service.py`) and renders the answer in the dialect
it speaks. Errors leave as one envelope through the table in `errors.py`. No torch and no
Ray here: the Serve ingress (`deployments.serving.ingress`) provides the service.
"""

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from clients.types import ErrorResponse, TEIErrorResponse

from ..errors import InvalidRequest, MalformedRequest
from .errors import (
    MethodNotAllowed,
    RouteNotFound,
    describe_status,
    documented_errors,
    error_dialect,
    error_response_bytes,
)
from .middleware import OPEN_PATHS, APIMiddleware, route_path
from .routers import ALL_ROUTERS
from .service import ModelService
from .version import VERSION

__all__ = ["create_app", "validation_error", "DOCS_ASSETS"]

DOCS_ASSETS = "/docs/assets"
"""Where the Swagger UI and ReDoc files are served from (open, like /docs)."""


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
    status, headers, payload = error_response_bytes(exc, getattr(request.state, "request_id", None),
                                                    path=route_path(request.scope))
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


def _docs_assets_dir() -> Path:
    # Swagger UI and ReDoc as the maintained fastapi-offline package ships them, so that /docs
    # renders on a machine without internet (FastAPI's default pages load them from a CDN).
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def _add_docs(app: FastAPI) -> None:
    app.mount(DOCS_ASSETS, StaticFiles(directory=_docs_assets_dir()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
                                   swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png", with_google_fonts=False)


def _true_error_responses(app: FastAPI) -> None:
    """Make the OpenAPI document state the errors really sent: the `{"error"}` envelope (not
    FastAPI's `{"detail"}`) for 422, TEI's body on its routes, and every status of `documented_errors` on
    each operation."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        bodies = {}
        for dialect, model in (("openai", ErrorResponse), ("tei", TEIErrorResponse)):
            schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schemas[model.__name__].pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            bodies[dialect] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)  # FastAPI's HTTPValidationError, never sent
                body = bodies[error_dialect(path)]
                for status in documented_errors(method, path.replace(":path", ""), open_path=path in OPEN_PATHS,
                                                has_body="requestBody" in operation):
                    responses.setdefault(str(status), {"description": describe_status(status), "content": body})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


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
        docs_url=None,
        redoc_url=None,
    )
    _add_docs(app)
    _document_authentication(app)
    app.state.get_service = service or (lambda: app.state.service)
    app.add_middleware(APIMiddleware, service=lambda: app.state.get_service(), echo_request_id=echo_request_id)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for router in ALL_ROUTERS:
        app.include_router(router)
    _true_error_responses(app)
    return app
