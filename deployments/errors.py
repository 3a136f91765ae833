"""From error type to HTTP status, in one table, and the one error envelope every route sends.

The envelope is OpenAI's: `{"error": {"message", "type", "param", "code"}}`. A status code
is only ever chosen here; routes raise typed errors.
"""

import logging
from dataclasses import dataclass

from clients.types import ErrorDetail, ErrorResponse

from .batcher import QueueFullError
from .engine.errors import EngineError, InputTooLongError, InvalidInputError, ModelLoadError
from .index.errors import CollectionConflict, CollectionNotFound, DocumentNotFound, StorageLayoutError

__all__ = [
    "APIError",
    "InvalidRequest",
    "MalformedRequest",
    "AuthenticationFailed",
    "RequestTooLarge",
    "UnknownModel",
    "ServiceUnavailable",
    "ErrorMapping",
    "map_exception",
    "error_body",
]

logger = logging.getLogger(__name__)


class APIError(Exception):
    """An error raised by the HTTP layer itself."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(APIError):
    """A body that parsed but does not make sense as a whole."""


class MalformedRequest(APIError):
    """A body that is not JSON."""


class AuthenticationFailed(APIError):
    """No API key, or not one of the configured keys."""


class RequestTooLarge(APIError):
    """More inputs or bytes than the configured limits."""


class UnknownModel(APIError):
    """The request names a model this service does not serve."""


class ServiceUnavailable(APIError):
    """A model deployment is starting, failed, or did not answer in time."""


@dataclass(frozen=True)
class ErrorMapping:
    status: int
    type: str
    code: str
    retry_after_s: float | None = None


def _ray_errors() -> list[tuple[type[BaseException], ErrorMapping]]:
    # Errors Ray Serve raises at the ingress when a model deployment cannot take a request.
    try:
        from ray import exceptions as ray_exceptions
        from ray.serve import exceptions as serve_exceptions
    except ImportError:  # pragma: no cover - Ray is a dependency of the server
        return []
    rows: list[tuple[type[BaseException], ErrorMapping]] = [
        (serve_exceptions.BackPressureError, ErrorMapping(429, "rate_limit_error", "queue_full", 1.0)),
        (serve_exceptions.RequestCancelledError, ErrorMapping(499, "request_cancelled", "client_closed_request")),
    ]
    for name in ("DeploymentUnavailableError",):
        if hasattr(serve_exceptions, name):
            rows.append((getattr(serve_exceptions, name),
                         ErrorMapping(503, "service_unavailable_error", "deployment_unavailable", 5.0)))
    rows += [
        (ray_exceptions.RayActorError, ErrorMapping(503, "service_unavailable_error", "replica_failed", 1.0)),
        (ray_exceptions.GetTimeoutError, ErrorMapping(504, "timeout_error", "model_timeout")),
    ]
    return rows


# Most specific first: the first row whose type matches wins.
ERROR_TABLE: list[tuple[type[BaseException], ErrorMapping]] = [
    (MalformedRequest, ErrorMapping(400, "invalid_request_error", "invalid_json")),
    (AuthenticationFailed, ErrorMapping(401, "authentication_error", "invalid_api_key")),
    (UnknownModel, ErrorMapping(404, "not_found_error", "model_not_found")),
    (CollectionNotFound, ErrorMapping(404, "not_found_error", "collection_not_found")),
    (DocumentNotFound, ErrorMapping(404, "not_found_error", "document_not_found")),
    (CollectionConflict, ErrorMapping(409, "conflict_error", "collection_conflict")),
    (RequestTooLarge, ErrorMapping(413, "invalid_request_error", "request_too_large")),
    (InputTooLongError, ErrorMapping(413, "invalid_request_error", "input_too_long")),
    (InvalidInputError, ErrorMapping(422, "invalid_request_error", "invalid_input")),
    (InvalidRequest, ErrorMapping(422, "invalid_request_error", "invalid_request")),
    (QueueFullError, ErrorMapping(429, "rate_limit_error", "queue_full", 1.0)),
    (ServiceUnavailable, ErrorMapping(503, "service_unavailable_error", "unavailable", 5.0)),
    (ModelLoadError, ErrorMapping(503, "service_unavailable_error", "model_not_loaded", 5.0)),
    (StorageLayoutError, ErrorMapping(503, "service_unavailable_error", "storage_layout", 30.0)),
    *_ray_errors(),
]
INTERNAL = ErrorMapping(500, "internal_error", "internal_error")


def map_exception(exc: BaseException) -> ErrorMapping:
    """The status and type for an exception; 500 only for what no row names (a bug, never the client)."""
    for error_type, mapping in ERROR_TABLE:
        if isinstance(exc, error_type):
            if isinstance(exc, QueueFullError):
                return ErrorMapping(mapping.status, mapping.type, mapping.code, exc.retry_after_s)
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
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__, None


def error_body(exc: BaseException, request_id: str | None = None) -> tuple[ErrorMapping, ErrorResponse]:
    """The mapping and envelope for `exc`; a 500 hides internals behind the request id."""
    mapping = map_exception(exc)
    if mapping.status >= 500 and mapping is INTERNAL:
        logger.error("request %s failed", request_id, exc_info=exc)
        message, param = f"internal error; quote request id {request_id} when reporting it", None
    else:
        message, param = _message(exc)
    return mapping, ErrorResponse(error=ErrorDetail(message=message, type=mapping.type, param=param,
                                                    code=mapping.code))
