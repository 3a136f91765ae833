"""The document index: durable SQLite shards with in-memory exact and HNSW vector search.

No model code here and no Ray: `IndexShard` becomes a Serve deployment in `deployments.app`.
The PostgreSQL backend (`deployments.index.postgres`, `postgres_shards`) needs the `postgres`
extra and is imported only where it is used; its settings (`postgres_config`) need pydantic only.
"""

from .errors import (
    CollectionConflict,
    CollectionNotFound,
    DocumentNotFound,
    InvalidIndexRequest,
    StorageLayoutError,
    StorageSetupError,
    StorageUnavailable,
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
    "StorageSetupError",
    "StorageUnavailable",
    "VectorSet",
    "parse_filter",
    "shard_path",
]
