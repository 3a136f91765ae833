"""The document index: durable SQLite shards with in-memory exact and HNSW vector search.

No model code here and no Ray: `IndexShard` becomes a Serve deployment in `deployments.app`.
"""

from .errors import (
    CollectionConflict,
    CollectionNotFound,
    DocumentNotFound,
    InvalidIndexRequest,
    StorageLayoutError,
)
from .filters import MetadataIndex, parse_filter
from .shard import IndexShard, shard_path
from .store import DocumentStore
from .vectors import VectorSet

__all__ = [
    "CollectionConflict",
    "CollectionNotFound",
    "DocumentNotFound",
    "DocumentStore",
    "IndexShard",
    "InvalidIndexRequest",
    "MetadataIndex",
    "StorageLayoutError",
    "VectorSet",
    "parse_filter",
    "shard_path",
]
