"""Typed errors that any layer may raise about a request (the engine's and the index's have
their own modules). No status codes here: `deployments.http.errors` maps every error type
to one, in one table."""

__all__ = [
    "APIError",
    "InvalidRequest",
    "MalformedRequest",
    "MalformedHTTP",
    "AuthenticationFailed",
    "RequestTooLarge",
    "RequestTimeout",
    "ReservedHeader",
    "UnknownModel",
    "ServiceUnavailable",
    "ModelFailed",
    "TokenIdsRefused",
]


class APIError(Exception):
    """An error about a request as a whole (not about one model input)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __reduce__(self) -> tuple[object, ...]:  # keep `param` across Ray's pickling
        return (_rebuild, (type(self), self.message, self.param))


def _rebuild(cls: type[APIError], message: str, param: str | None) -> APIError:
    return cls(message, param=param)


class InvalidRequest(APIError):
    """A body that parsed but does not make sense as a whole."""


class TokenIdsRefused(InvalidRequest):
    """Token-id input to a model that takes text only (its `accept_token_ids` is off)."""


class MalformedRequest(APIError):
    """A body that is not JSON."""


class MalformedHTTP(MalformedRequest):
    """Bytes that are not an HTTP/1.1 request (answered by the edge, before any route)."""


class AuthenticationFailed(APIError):
    """No API key, or not one of the configured keys."""


class RequestTooLarge(APIError):
    """More inputs or bytes than the configured limits."""


class RequestTimeout(APIError):
    """The request (its head or its body) did not arrive in time."""


class ReservedHeader(APIError):
    """The request carries a header the serving system reads as an instruction (Ray Serve's control headers)."""


class UnknownModel(APIError):
    """The request names a model this service does not serve."""


class ServiceUnavailable(APIError):
    """A model deployment is starting, failed, or did not answer in time."""


class ModelFailed(APIError):
    """A model (or the application) failed to start, and will not recover until its configuration
    changes: no retry helps (503 without Retry-After, code `model_failed`)."""
