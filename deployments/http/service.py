"""What the routes need from the layer below: the model service and the search service.

The Serve ingress implements both with deployment handles (`deployments.serving.ingress`);
tests implement them with small test doubles, so every route and error row can be checked
in-process without Ray.
"""

from typing import Protocol

from ..catalog import ModelEntry, ModelKind
from ..config import LimitsConfig
from ..engine.tokenization import TokenSpan
from ..index.base import CollectionInfo
from ..jobs import DecodeJob, EmbedJob, EmbedOutcome, RerankJob, RerankOutcome, SearchJob, SearchOutcome, TokenizeJob
from .metrics import APIMetrics

__all__ = ["ModelService", "SearchService", "DocumentIn"]

DocumentIn = tuple[str | None, str, dict | None]
"""(id or None for a generated one, text, metadata) of one document to upload."""


class ModelService(Protocol):
    """Models, limits, keys and health."""

    entries: list[ModelEntry]
    limits: LimitsConfig
    metrics: APIMetrics

    def resolve(self, kind: ModelKind, name: str | None) -> ModelEntry: ...

    async def embed(self, entry: ModelEntry, job: EmbedJob) -> EmbedOutcome: ...

    async def rerank(self, entry: ModelEntry, job: RerankJob) -> RerankOutcome: ...

    async def tokenize(self, entry: ModelEntry, job: TokenizeJob) -> list[list[TokenSpan]]: ...

    async def decode(self, entry: ModelEntry, job: DecodeJob) -> list[str]: ...

    async def describe(self) -> list[dict]:
        """One description per served model (kind, dimensions, backend, ...), in entry order."""
        ...

    async def health(self) -> dict[str, str]:
        """Component name -> "ok" or what is wrong."""
        ...

    def api_keys(self) -> frozenset[str] | None:
        """The accepted keys; None when authentication is off. A configured source that is
        missing or empty yields an empty set: every request is refused (fail closed)."""
        ...

    @property
    def search(self) -> "SearchService": ...


class SearchService(Protocol):
    """Collections, documents and search; raises the typed error of a refused request."""

    async def create_collection(self, name: str, model: str | None, dimensions: int | None, index: str
                                ) -> tuple[CollectionInfo, bool]: ...

    async def list_collections(self) -> list[CollectionInfo]: ...

    async def get_collection(self, name: str) -> CollectionInfo: ...

    async def delete_collection(self, name: str) -> None: ...

    async def upsert(self, name: str, documents: list[DocumentIn], truncate: bool) -> list[str]:
        """The ids of the stored documents, in request order."""
        ...

    async def get_document(self, name: str, doc_id: str) -> dict: ...

    async def delete_document(self, name: str, doc_id: str) -> None: ...

    async def search(self, name: str, job: SearchJob) -> SearchOutcome: ...
