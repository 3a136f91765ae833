"""Typed errors of the document index (mapped to status codes in deployments/errors.py)."""

from ..engine.errors import EngineError, InvalidInputError

__all__ = ["IndexError_", "CollectionNotFound", "DocumentNotFound", "CollectionConflict", "InvalidIndexRequest",
           "StorageLayoutError", "StorageUnavailable", "StorageSetupError"]


class IndexError_(EngineError):
    """Base class of index errors (the trailing underscore avoids shadowing the builtin)."""


class CollectionNotFound(IndexError_):
    """No collection of that name."""


class DocumentNotFound(IndexError_):
    """No document with that id in the collection."""


class CollectionConflict(IndexError_):
    """The collection exists, bound to another model, width or index type."""


class InvalidIndexRequest(IndexError_, InvalidInputError):
    """A malformed name, filter, id or vector."""


class StorageLayoutError(IndexError_):
    """The storage folder was written with another shard count; the index refuses to mix layouts."""


class StorageUnavailable(IndexError_):
    """The storage cannot answer now (database down, failing over, read-only, timed out); retrying later works.

    Maps to 503 with Retry-After: the service recovers by itself when the storage returns.
    """

    def __init__(self, message: str, *, retry_after_s: float = 2.0, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after_s = retry_after_s


class StorageSetupError(StorageUnavailable):
    """The storage answers but is not usable as configured: a missing extension or privilege, a bad schema.

    Says exactly what is missing and who can fix it; retrying helps only after an operator did.
    """

    def __init__(self, message: str, *, retry_after_s: float = 30.0, param: str | None = None) -> None:
        super().__init__(message, retry_after_s=retry_after_s, param=param)
