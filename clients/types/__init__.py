"""Request and response models of every route, shared by the server and the client.

Importing this package needs pydantic alone: no Ray, no torch, nothing from `deployments`.
"""

from .collections import (
    COLLECTION_NAME_PATTERN,
    Collection,
    CollectionDeleted,
    CollectionList,
    CountResponse,
    CreateCollectionRequest,
    DeleteResponse,
    Document,
    HybridWeights,
    IndexType,
    MetadataFilter,
    SearchHit,
    SearchMode,
    SearchRequest,
    SearchResult,
    SearchTimings,
    StoredDocument,
    UpsertRequest,
    UpsertResponse,
)
from .common import (
    ErrorDetail,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    Limits,
    ModelCard,
    ModelList,
    ServedModel,
)
from .embeddings import (
    Embedding,
    EmbeddingInput,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    TEIEmbedRequest,
    decode_base64_embedding,
)
from .rerank import (
    CohereRerankMeta,
    CohereRerankRequest,
    CohereRerankResponse,
    CohereRerankResult,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
    ScoreData,
    ScoreRequest,
    ScoreResponse,
    ScoreUsage,
    TEIRerankRequest,
    TEIRerankResult,
)

__all__ = [
    "COLLECTION_NAME_PATTERN", "Collection", "CollectionDeleted", "CollectionList", "CountResponse",
    "CreateCollectionRequest",
    "DeleteResponse", "Document", "HybridWeights", "IndexType", "MetadataFilter", "SearchHit", "SearchMode",
    "SearchRequest", "SearchResult",
    "SearchTimings", "StoredDocument", "UpsertRequest", "UpsertResponse",
    "CohereRerankMeta", "CohereRerankRequest", "CohereRerankResponse", "CohereRerankResult", "Embedding",
    "EmbeddingInput", "EmbeddingRequest", "EmbeddingResponse", "EmbeddingUsage", "ErrorDetail", "ErrorResponse",
    "HealthResponse", "InfoResponse", "Limits", "ModelCard", "ModelList", "RerankDocument", "RerankRequest",
    "RerankResponse", "RerankResult", "RerankUsage", "ScoreData", "ScoreRequest", "ScoreResponse", "ScoreUsage",
    "ServedModel", "TEIEmbedRequest", "TEIRerankRequest", "TEIRerankResult", "decode_base64_embedding",
]
