"""The exceptions the clients raise: one tree, keyed by HTTP status.

    APIError
    ├── APIStatusError                  the server answered with an error status
    │   ├── BadRequestError             400, 422
    │   ├── AuthenticationError         401
    │   ├── NotFoundError               404
    │   ├── ConflictError               409
    │   ├── RequestTooLargeError        413
    │   ├── RateLimitError              429
    │   ├── ServiceUnavailableError     503
    │   └── InternalServerError         500 and every other 5xx
    ├── APIResponseValidationError      a success answer that is not the expected shape
    └── APIConnectionError              no answer: refused, reset, DNS, TLS
        └── APITimeoutError             no answer in time

`status_error_class` is the one place where a status picks a class.
"""

import email.utils
import time

import httpx
from pydantic import ValidationError

from .types import ErrorResponse

__all__ = [
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "ConflictError",
    "RequestTooLargeError",
    "RateLimitError",
    "ServiceUnavailableError",
    "InternalServerError",
    "APIResponseValidationError",
    "APIConnectionError",
    "APITimeoutError",
    "status_error_class",
    "make_status_error",
    "parse_retry_after",
]


class APIError(Exception):
    """Base of every error this library raises about a request."""

    message: str
    """What went wrong, for a person."""
    request: httpx.Request | None
    """The request (of the last attempt)."""
    request_id: str | None
    """The `x-request-id` of the last attempt: the server's answer header, or the id this client sent."""

    def __init__(self, message: str, *, request: httpx.Request | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.request_id = request_id


class APIStatusError(APIError):
    """The server answered with an error status (4xx, 5xx); its error envelope is parsed into fields."""

    response: httpx.Response
    status_code: int
    type: str | None
    """The server's error class, e.g. `invalid_request_error`, `rate_limit_error`."""
    param: str | None
    """The request field at fault, when the server named one (e.g. `input`, `top_n`)."""
    code: str | int | None
    """A stable machine-readable code, e.g. `request_too_large`, `collection_not_found`."""
    retry_after: float | None
    """Seconds the server asked the client to wait (`Retry-After`), when it did."""

    def __init__(self, message: str, *, response: httpx.Response, type: str | None = None, param: str | None = None,
                 code: str | int | None = None) -> None:
        super().__init__(message, request=response.request, request_id=_request_id_of(response))
        self.response = response
        self.status_code = response.status_code
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = parse_retry_after(response.headers)

    def __str__(self) -> str:
        kind = f" {self.type}" if self.type else ""
        param = f" (param: {self.param})" if self.param else ""
        request_id = f" [request id {self.request_id}]" if self.request_id else ""
        return f"{self.status_code}{kind}: {self.message}{param}{request_id}"


class BadRequestError(APIStatusError):
    """400 (the body is not JSON) or 422 (a field is invalid; `param` names it)."""


class AuthenticationError(APIStatusError):
    """401: no API key, or a key the server does not know."""


class NotFoundError(APIStatusError):
    """404: an unknown model, collection, document or route."""


class ConflictError(APIStatusError):
    """409: the collection exists, bound to another model or width."""


class RequestTooLargeError(APIStatusError):
    """413: more inputs, bytes or tokens than the server's limits (`code` says which)."""


class RateLimitError(APIStatusError):
    """429: the server's queues are full; `retry_after` says when to come back."""


class ServiceUnavailableError(APIStatusError):
    """503: a model deployment is starting, failed, or was replaced."""


class InternalServerError(APIStatusError):
    """500 and other 5xx: a server fault; quote `request_id` when reporting it."""


class APIResponseValidationError(APIError):
    """A success status whose body is not what the route answers (a proxy's page, a newer server)."""

    response: httpx.Response
    status_code: int

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message, request=response.request, request_id=_request_id_of(response))
        self.response = response
        self.status_code = response.status_code


class APIConnectionError(APIError):
    """No answer: the connection was refused, dropped, or could not be made."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message, request=request, request_id=request_id)


class APITimeoutError(APIConnectionError):
    """No answer within the timeout."""

    hint: str | None
    """What to change for an answer in time (in the message too), e.g. for a search: fewer candidates."""
    reason: str
    """What happened, without the hint."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None,
                 request_id: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{message} {hint}" if hint else message, request=request, request_id=request_id)
        self.hint = hint
        self.reason = message


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class of an error status: the table above, else InternalServerError for 5xx."""
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return InternalServerError
    return APIStatusError


def make_status_error(response: httpx.Response) -> APIStatusError:
    """The exception for an error answer, with the server's envelope parsed when there is one."""
    cls = status_error_class(response.status_code)
    try:
        detail = ErrorResponse.model_validate_json(response.content).error
    except ValidationError:
        # Not our envelope: a proxy's or load balancer's page. Keep a readable piece of it.
        text = response.text.strip()
        message = text[:500] if text else (response.reason_phrase or "error")
        return cls(message, response=response)
    return cls(detail.message, response=response, type=detail.type, param=detail.param, code=detail.code)


def parse_retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds asked by `Retry-After-Ms`, or `Retry-After` in seconds or as an HTTP date; None if absent."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _request_id_of(response: httpx.Response) -> str | None:
    answered: str | None = response.headers.get("x-request-id")
    if answered:
        return answered
    try:
        sent: str | None = response.request.headers.get("x-request-id")
    except RuntimeError:  # a Response built without a request
        return None
    return sent
