"""Typed errors of the document index (mapped to status codes in deployments/errors.py)."""

from ..engine.errors import EngineError, InvalidInputError

__all__ = ["IndexError_", "CollectionNotFound", "DocumentNotFound", "CollectionConflict", "InvalidIndexRequest",
           "StorageLayoutError"]


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
