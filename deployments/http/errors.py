"""From error type to HTTP status, in one table, and the one error envelope every route sends.

The envelope is OpenAI's: `{"error": {"message", "type", "param", "code"}}`; on the Text
Embeddings Inference routes (`TEI_ERROR_PATHS`, and everything under `/tei/{model}/`) it is
TEI's own, `{"error": message, "error_type": ...}`, which TEI clients parse (tei-client reads a
model's prompt names from it), with the envelope's `type`, `param` and `code` beside. The status
and headers are the same either way. A status code is only ever chosen here: routes, middleware
and the serving layer raise typed errors; FastAPI's own validation
and routing errors are turned into typed errors first.
Ray's exception types are looked up only when Ray is already loaded (the ingress), so the
HTTP layer never imports Ray itself.
"""

import logging
import sys
from dataclasses import dataclass, replace

from clients.types import ErrorDetail, ErrorResponse, TEIErrorResponse

from ..engine.errors import EngineError, InputTooLongError, InvalidInputError, ModelLoadError
from ..errors import (
    APIError,
    AuthenticationFailed,
    InvalidRequest,
    MalformedHTTP,
    MalformedRequest,
    ModelFailed,
    RequestTimeout,
    RequestTooLarge,
    ReservedHeader,
    ServiceUnavailable,
    TokenIdsRefused,
    UnknownModel,
)
from ..index.errors import (
    CollectionConflict,
    CollectionNotFound,
    DocumentNotFound,
    StorageLayoutError,
    StorageSetupError,
    StorageUnavailable,
)
from ..jobs import QueueFullError

__all__ = [
    "RouteNotFound",
    "MethodNotAllowed",
    "ErrorMapping",
    "ERROR_TABLE",
    "map_exception",
    "error_body",
    "error_response_bytes",
    "TEI_ERROR_PATHS",
    "error_dialect",
    "documented_errors",
    "describe_status",
]

logger = logging.getLogger(__name__)


class RouteNotFound(APIError):
    """No route at this path."""


class MethodNotAllowed(APIError):
    """The path exists, not with this method."""


@dataclass(frozen=True)
class ErrorMapping:
    status: int
    type: str
    code: str
    retry_after_s: float | None = None
    close: bool = False
    """Close the connection after the answer: the rest of the request body was not read."""


# Most specific first: the first row whose type matches wins.
ERROR_TABLE: list[tuple[type[BaseException], ErrorMapping]] = [
    (MalformedHTTP, ErrorMapping(400, "invalid_request_error", "invalid_http", close=True)),
    (MalformedRequest, ErrorMapping(400, "invalid_request_error", "invalid_json")),
    (ReservedHeader, ErrorMapping(400, "invalid_request_error", "reserved_header")),
    (AuthenticationFailed, ErrorMapping(401, "authentication_error", "invalid_api_key")),
    (RouteNotFound, ErrorMapping(404, "not_found_error", "route_not_found")),
    (UnknownModel, ErrorMapping(404, "not_found_error", "model_not_found")),
    (CollectionNotFound, ErrorMapping(404, "not_found_error", "collection_not_found")),
    (DocumentNotFound, ErrorMapping(404, "not_found_error", "document_not_found")),
    (MethodNotAllowed, ErrorMapping(405, "invalid_request_error", "method_not_allowed")),
    (RequestTimeout, ErrorMapping(408, "timeout_error", "request_timeout", close=True)),
    (CollectionConflict, ErrorMapping(409, "conflict_error", "collection_conflict")),
    (RequestTooLarge, ErrorMapping(413, "invalid_request_error", "request_too_large", close=True)),
    (InputTooLongError, ErrorMapping(413, "invalid_request_error", "input_too_long")),
    (InvalidInputError, ErrorMapping(422, "invalid_request_error", "invalid_input")),
    (TokenIdsRefused, ErrorMapping(422, "invalid_request_error", "token_ids_not_accepted")),
    (InvalidRequest, ErrorMapping(422, "invalid_request_error", "invalid_request")),
    (QueueFullError, ErrorMapping(429, "rate_limit_error", "queue_full", 1.0)),
    (ModelFailed, ErrorMapping(503, "service_unavailable_error", "model_failed")),  # no Retry-After: permanent
    (ServiceUnavailable, ErrorMapping(503, "service_unavailable_error", "unavailable", 5.0)),
    (ModelLoadError, ErrorMapping(503, "service_unavailable_error", "model_not_loaded", 5.0)),
    (StorageLayoutError, ErrorMapping(503, "service_unavailable_error", "storage_layout", 30.0)),
    (StorageSetupError, ErrorMapping(503, "service_unavailable_error", "storage_setup", 30.0)),
    (StorageUnavailable, ErrorMapping(503, "service_unavailable_error", "storage_unavailable", 2.0)),
]
INTERNAL = ErrorMapping(500, "internal_error", "internal_error")


def _ray_rows() -> list[tuple[type[BaseException], ErrorMapping]]:
    """Rows for the errors Ray Serve raises at the ingress when a deployment cannot take a request."""
    if "ray" not in sys.modules:  # no Ray loaded: no Ray exception can exist in this process
        return []
    from ray import exceptions as ray_exceptions
    from ray.serve import exceptions as serve_exceptions

    rows: list[tuple[type[BaseException], ErrorMapping]] = [
        (serve_exceptions.BackPressureError, ErrorMapping(429, "rate_limit_error", "queue_full", 1.0)),
        (serve_exceptions.RequestCancelledError, ErrorMapping(499, "request_cancelled", "client_closed_request")),
    ]
    if hasattr(serve_exceptions, "DeploymentUnavailableError"):
        # Ray raises it for a deployment that failed to deploy: as permanent as ModelFailed (the
        # ingress turns it into one with the cause; this row is the fallback).
        rows.append((serve_exceptions.DeploymentUnavailableError,
                     ErrorMapping(503, "service_unavailable_error", "model_failed")))
    rows += [
        (ray_exceptions.RayActorError, ErrorMapping(503, "service_unavailable_error", "replica_failed", 1.0)),
        (ray_exceptions.GetTimeoutError, ErrorMapping(504, "timeout_error", "model_timeout")),
    ]
    return rows


def map_exception(exc: BaseException) -> ErrorMapping:
    """The status and type for an exception; 500 only for what no row names (a bug, never the client)."""
    for error_type, mapping in ERROR_TABLE + _ray_rows():
        if isinstance(exc, error_type):
            retry_after = getattr(exc, "retry_after_s", None)
            if mapping.retry_after_s is not None and isinstance(retry_after, int | float) and retry_after > 0:
                return replace(mapping, retry_after_s=float(retry_after))
            return mapping
    cause = getattr(exc, "cause", None)  # Ray wraps a replica's exception; look inside
    if isinstance(cause, BaseException) and cause is not exc:
        return map_exception(cause)
    return INTERNAL


def _message(exc: BaseException) -> tuple[str, str | None]:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(exc, EngineError | APIError | QueueFullError):
        exc = cause
    if isinstance(exc, EngineError | APIError):
        return exc.message, exc.param
    text = str(exc).strip() or str(getattr(exc, "message", "") or "").strip()  # Ray's keep it in .message
    return (text.splitlines()[-1] if text else type(exc).__name__), None


def error_body(exc: BaseException, request_id: str | None = None) -> tuple[ErrorMapping, ErrorResponse]:
    """The mapping and envelope for `exc`; a 500 hides internals behind the request id."""
    mapping = map_exception(exc)
    if mapping is INTERNAL:
        logger.error("request %s failed", request_id, exc_info=exc)
        message, param = f"internal error; quote request id {request_id} when reporting it", None
    else:
        message, param = _message(exc)
    return mapping, ErrorResponse(error=ErrorDetail(message=_printable(message), type=mapping.type,
                                                    param=None if param is None else _printable(param),
                                                    code=mapping.code))


def _printable(text: str) -> str:
    """Text any JSON encoder writes: a lone surrogate (from a client's input) is spelled as an escape."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


TEI_ERROR_PATHS = frozenset({"/", "/embed", "/tokenize", "/decode"})
"""The TEI-only routes of routers/tei.py (POST /rerank is shared with Jina and vLLM clients: it keeps the
envelope, as its `/tei/{model}/rerank` twin does not)."""
TEI_ROOT_PREFIX = "/tei/"

# TEI's error types by status (text-embeddings-inference's ErrorType).
_TEI_ERROR_TYPES = {400: "Validation", 401: "Validation", 404: "Validation", 405: "Validation", 408: "Validation",
                    409: "Validation", 413: "Validation", 422: "Validation", 429: "Overloaded", 503: "Unhealthy"}


def error_dialect(path: str | None) -> str:
    """`tei` for the TEI routes, else `openai` (the envelope)."""
    if path is not None and (path in TEI_ERROR_PATHS or path.startswith(TEI_ROOT_PREFIX)):
        return "tei"
    return "openai"


def error_response_bytes(exc: BaseException, request_id: str | None = None, *, path: str | None = None
                         ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of the envelope for `exc` (TEI's error body on TEI's routes, see
    `error_dialect`): the one builder every error answer uses."""
    import orjson

    mapping, body = error_body(exc, request_id)
    if error_dialect(path) == "tei":
        payload = orjson.dumps(TEIErrorResponse(
            error=body.error.message, error_type=_TEI_ERROR_TYPES.get(mapping.status, "Backend"),
            type=body.error.type, param=body.error.param, code=body.error.code).model_dump())
    else:
        payload = orjson.dumps(body.model_dump())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if mapping.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, round(mapping.retry_after_s))).encode()))
    if mapping.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="qwen3-search"'))
    if mapping.close:
        headers.append((b"connection", b"close"))
    return mapping.status, headers, payload


# ---------------------------------------------------------------- what the OpenAPI document states
_STATUS_TITLES = {
    400: "The body is not JSON",
    401: "Missing or invalid API key (when keys are configured)",
    404: "Unknown model, collection or document",
    409: "The collection exists with other settings",
    413: "More inputs, documents, tokens or bytes than the limits",
    422: "A field is missing or invalid",
    429: "A queue is full: retry after `Retry-After` seconds",
    503: "A deployment is starting or restarting: retry after `Retry-After` seconds; or a model failed to start "
         "(`model_failed`, no `Retry-After`: the message says what to change in the configuration)",
}


def describe_status(status: int) -> str:
    """An error status's description for OpenAPI, with the `code`s the table sends with it."""
    codes = sorted({m.code for _, m in ERROR_TABLE if m.status == status})
    if status == 429:
        codes = sorted({*codes, "queue_full"})
    if status == 503:
        codes = sorted({*codes, "replica_failed"})
    listed = ", ".join(f"`{c}`" for c in codes)
    return f"{_STATUS_TITLES[status]}; `error.code`: {listed}" if codes else _STATUS_TITLES[status]


def documented_errors(method: str, path: str, *, has_body: bool, open_path: bool) -> tuple[int, ...]:
    """The error statuses an operation really answers with, as the routes and the table produce them."""
    if open_path:
        return ()
    statuses = {401}
    if has_body:
        statuses |= {400, 413, 422}
    if "{" in path:
        statuses |= {404, 422}
    if path in ("/metrics", "/v1/models", "/v1/models/{model_id}"):
        return tuple(sorted(statuses))
    statuses |= {429, 503}  # every other route waits on a deployment, which may be full or down
    if path != "/info" and path != "/v1/collections":
        statuses.add(404)  # an unknown model, collection or document
    if method == "put" and path == "/v1/collections/{name}":
        statuses.add(409)
    return tuple(sorted(statuses))
