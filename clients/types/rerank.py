"""Rerank and score wire types: Jina/vLLM `/v1/rerank`, Cohere `/v2/rerank`, TEI `/rerank`, vLLM `/score`."""

from typing import Literal

from pydantic import Field, model_validator

from ._base import StrictRequest, WireModel

__all__ = [
    "RerankDocument",
    "RerankRequest",
    "RerankResult",
    "RerankUsage",
    "RerankResponse",
    "CohereRerankRequest",
    "CohereRerankResult",
    "CohereRerankMeta",
    "CohereRerankResponse",
    "TEIRerankRequest",
    "TEIRerankResult",
    "ScoreRequest",
    "ScoreData",
    "ScoreUsage",
    "ScoreResponse",
]


class RerankDocument(StrictRequest):
    """A document given as an object (Jina and Cohere v1 accept `{"text": ...}`)."""

    text: str


class RerankRequest(StrictRequest):
    """Jina / vLLM rerank request, with Qwen3's per-request instruction."""

    query: str = Field(description="The search query.")
    documents: list[str | RerankDocument] = Field(description="Candidate documents, strings or {text} objects.")
    model: str | None = Field(default=None, description="Served reranker name; the default reranker if omitted.")
    top_n: int | None = Field(default=None, ge=1, description="Return only the N best documents.")
    return_documents: bool = Field(default=True, description="Include each document's text in the results.")
    instruction: str | None = Field(
        default=None, description="Extension: the task instruction (default: web search relevance)."
    )
    max_tokens_per_doc: int | None = Field(default=None, ge=1, description="Cut each document to this many tokens.")
    truncate: bool | None = Field(
        default=None, description="Extension: truncate over-long prompts (server default) or refuse them (413)."
    )

    def document_texts(self) -> list[str]:
        return [d.text if isinstance(d, RerankDocument) else d for d in self.documents]


class RerankDocumentText(WireModel):
    text: str


class RerankResult(WireModel):
    index: int = Field(description="Position of the document in the request.")
    relevance_score: float = Field(description="P(yes) from the reranker, in [0, 1].")
    document: RerankDocumentText | None = None


class RerankUsage(WireModel):
    total_tokens: int
    prompt_tokens: int | None = None


class RerankResponse(WireModel):
    id: str
    model: str
    usage: RerankUsage
    results: list[RerankResult] = Field(description="Best first.")


class CohereRerankRequest(StrictRequest):
    """Cohere v2 rerank request."""

    query: str
    documents: list[str | RerankDocument]
    model: str | None = None
    top_n: int | None = Field(default=None, ge=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1, description="Cut each document to this many tokens.")
    return_documents: bool = Field(default=False, description="Accepted for v1-style clients.")
    instruction: str | None = Field(default=None, description="Extension: the task instruction.")

    def document_texts(self) -> list[str]:
        return [d.text if isinstance(d, RerankDocument) else d for d in self.documents]


class CohereRerankResult(WireModel):
    index: int
    relevance_score: float
    document: RerankDocumentText | None = None


class CohereRerankMeta(WireModel):
    api_version: dict[str, str] = Field(default_factory=lambda: {"version": "2"})
    billed_units: dict[str, int] = Field(default_factory=dict)
    tokens: dict[str, int] = Field(default_factory=dict)


class CohereRerankResponse(WireModel):
    id: str
    results: list[CohereRerankResult]
    meta: CohereRerankMeta


class TEIRerankRequest(StrictRequest):
    """Text Embeddings Inference `/rerank` request."""

    query: str
    texts: list[str]
    raw_scores: bool = Field(default=False, description="Return logit(yes) - logit(no) instead of P(yes).")
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["left", "right", "Left", "Right"] = "right"
    model: str | None = Field(default=None, description="Extension: served reranker name.")
    instruction: str | None = Field(default=None, description="Extension: the task instruction.")

    @model_validator(mode="after")
    def _right_truncation_only(self) -> "TEIRerankRequest":
        if self.truncation_direction.lower() != "right":
            raise ValueError("the reranker truncates documents from the end only (truncation_direction=right)")
        return self


class TEIRerankResult(WireModel):
    index: int
    score: float
    text: str | None = None


class ScoreRequest(StrictRequest):
    """vLLM score request: `text_1`/`text_2` or `queries`/`documents`.

    One query and N documents scores the query against each; N and N score pairwise.
    """

    model: str | None = None
    text_1: str | list[str] | None = None
    text_2: str | list[str] | None = None
    queries: str | list[str] | None = None
    documents: str | list[str] | None = None
    truncate_prompt_tokens: int | None = Field(default=None, ge=1, description="Cut each document to N tokens.")
    instruction: str | None = Field(default=None, description="Extension: the task instruction.")

    @model_validator(mode="after")
    def _one_naming(self) -> "ScoreRequest":
        pairs = [(self.text_1, self.text_2), (self.queries, self.documents)]
        given = [p for p in pairs if p[0] is not None or p[1] is not None]
        if len(given) != 1 or None in given[0]:
            raise ValueError("give text_1 and text_2, or queries and documents")
        queries, documents = self._lists()
        if len(queries) not in (1, len(documents)):
            raise ValueError(
                f"{len(queries)} queries and {len(documents)} documents: give one query, or as many as documents"
            )
        return self

    def _lists(self) -> tuple[list[str], list[str]]:
        first, second = (self.text_1, self.text_2) if self.text_1 is not None else (self.queries, self.documents)
        queries = [first] if isinstance(first, str) else list(first or [])
        documents = [second] if isinstance(second, str) else list(second or [])
        return queries, documents

    def pairs(self) -> tuple[list[str], list[str]]:
        """(queries, documents), aligned: one query is repeated for every document."""
        queries, documents = self._lists()
        return (queries * len(documents) if len(queries) == 1 else queries), documents


class ScoreData(WireModel):
    index: int
    object: Literal["score"] = "score"
    score: float


class ScoreUsage(WireModel):
    prompt_tokens: int
    total_tokens: int


class ScoreResponse(WireModel):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: ScoreUsage
