"""What crosses the boundary between the HTTP layer and the serving layer (inside the cluster).

Plain dataclasses and numpy arrays: no Ray, no torch, no HTTP. The ingress turns a wire
request into one of these jobs, a Serve deployment answers with an outcome, or with a
`Refusal` when the request was the caller's mistake or the replica is full.
"""

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

__all__ = [
    "BatchTimings",
    "QueueFullError",
    "ReplicaReport",
    "EmbedJob",
    "EmbedOutcome",
    "RerankJob",
    "RerankOutcome",
    "TokenizeJob",
    "DecodeJob",
    "SearchJob",
    "SearchHitOut",
    "SearchOutcome",
    "Refusal",
    "unwrap",
]

T = TypeVar("T")


class QueueFullError(Exception):
    """A replica or pipeline holds more work than it admits; retry later (429 + Retry-After)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:  # keep retry_after_s across Ray's pickling
        return (QueueFullError, (self.message, self.retry_after_s))


@dataclass
class BatchTimings:
    """What one request cost, for the timing headers."""

    queue_s: float = 0.0
    """From submission until its first item started computing."""
    inference_s: float = 0.0
    """Wall time of the batches that carried its items."""
    tokens: int = 0
    batches: int = 0


@dataclass
class ReplicaReport:
    """A model replica's state, sent back with every answer so the ingress can export metrics."""

    replica: str
    queued_tokens: int
    queued_requests: int
    batch_sizes: list[int] = field(default_factory=list)
    """Items per batch of the batches this replica ran since its previous report."""


@dataclass
class EmbedJob:
    """Texts or token ids to embed, with the options of whichever API dialect asked."""

    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    instruction: str | None = None
    prompt_name: str | None = None
    input_type: Literal["query", "document"] | None = None
    """`query`: the model's own query prompt when it has one (ignored with an instruction)."""
    dimensions: int | None = None
    normalize: bool = True
    truncate: bool = True
    truncation_direction: Literal["left", "right"] = "right"

    @property
    def count(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or [])


@dataclass
class EmbedOutcome:
    vectors: np.ndarray
    """float32, (inputs, dimensions), rows in input order."""
    token_counts: list[int]
    timings: BatchTimings
    report: ReplicaReport


@dataclass
class RerankJob:
    """Queries with their documents; each (query, documents) group shares one prompt prefix."""

    groups: list[tuple[str, list[str]]]
    instruction: str | None = None
    truncate: bool = True
    max_tokens_per_document: int | None = None

    @property
    def count(self) -> int:
        return sum(len(documents) for _, documents in self.groups)


@dataclass
class RerankOutcome:
    logits: list[np.ndarray]
    """logit(yes) - logit(no) per document, one array per group, in document order."""
    token_counts: list[list[int]]
    timings: BatchTimings
    report: ReplicaReport


@dataclass
class TokenizeJob:
    """Texts to list as tokens (TEI's `/tokenize`); the answer is a list of `TokenSpan` lists."""

    texts: list[str]
    add_special_tokens: bool = True
    prompt_name: str | None = None


@dataclass
class DecodeJob:
    """Token-id sequences to turn back into text (TEI's `/decode`); the answer is one string each."""

    token_ids: list[list[int]]
    skip_special_tokens: bool = True


@dataclass
class SearchJob:
    """One search request: take `top_k` candidates per retriever (fused in hybrid mode), rerank, keep `top_n`."""

    queries: list[str]
    mode: Literal["dense", "lexical", "hybrid"] = "dense"
    """dense: embed and search the vectors; lexical: full-text search (no query embedding); hybrid: both,
    fused by reciprocal rank fusion."""
    rrf_k: int = 60
    weights: dict[str, float] | None = None
    """hybrid: retriever name (dense, lexical) -> RRF weight (1 when absent)."""
    top_k: int | None = None
    """None: the pipeline's default (`SearchDefaults`), which depends on where the reranker runs."""
    top_n: int = 10
    instruction: str | None = None
    filter: dict[str, Any] | None = None
    rerank: bool = True
    reranker: str | None = None
    return_metadata: bool = True
    exact: bool = False
    truncate: bool = True


@dataclass
class SearchHitOut:
    id: str
    text: str
    metadata: dict[str, Any] | None
    score: float
    """Reranker P(yes); with rerank off, the retriever's score (embedding, lexical or fused)."""
    embedding_score: float | None
    lexical_score: float | None = None
    fused_score: float | None = None
    retrievers: dict[str, int] | None = None
    """Retriever name -> 1-based rank among its candidates, for each retriever that found this document."""


@dataclass
class SearchOutcome:
    results: list[list[SearchHitOut]]
    """Per query, best first."""
    timings_ms: dict[str, float]
    """embed_ms, search_ms, rerank_ms, total_ms."""
    queue_s: float
    inference_s: float
    tokens: int
    top_k: int | None = None
    """Candidates taken per retriever (the job's, or the default it got)."""
    reports: list[tuple[str, ReplicaReport]] = field(default_factory=list)
    """(model name, report) of each model call the search made, for the ingress's metrics."""


@dataclass
class UpsertOutcome:
    ids: list[str]
    """The documents' ids, in request order (generated for documents that had none)."""
    reports: list[tuple[str, ReplicaReport]] = field(default_factory=list)
    """(model name, report) of each embedding call, for the ingress's metrics."""


@dataclass
class Refusal:
    """A request a deployment refused (bad input, full queue): returned, not raised, so that Ray
    does not log a client's mistake as a replica failure with a traceback."""

    error: Exception


def unwrap(value: "T | Refusal") -> T:
    """The value, or the refused request's typed error raised here, at the caller."""
    if isinstance(value, Refusal):
        raise value.error
    return value
