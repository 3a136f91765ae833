"""What the ingress sends to the model deployments and gets back (inside the cluster, not on the wire)."""

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .batcher import BatchTimings

__all__ = ["EmbedJob", "EmbedOutcome", "RerankJob", "RerankOutcome", "ReplicaReport", "Refusal"]


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


@dataclass
class RerankOutcome:
    logits: list[np.ndarray]
    """logit(yes) - logit(no) per document, one array per group, in document order."""
    token_counts: list[list[int]]
    timings: BatchTimings
    report: ReplicaReport


@dataclass
class Refusal:
    """A request the replica refused (bad input, full queue): returned, not raised, so that Ray
    does not log a client's mistake as a replica failure with a traceback."""

    error: Exception
