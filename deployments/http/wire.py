"""Shared helpers of the dialect routers: services from the app, limits, ranking, rendering."""

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from ..catalog import ModelEntry
from ..config import LimitsConfig
from ..engine.reranking import sigmoid
from ..errors import RequestTooLarge, TokenIdsRefused
from ..jobs import EmbedJob, EmbedOutcome, RerankJob, RerankOutcome
from .service import ModelService

__all__ = ["JSONBody", "respond", "model_service", "split_input", "check_documents", "truncation", "ranked",
           "run_embed", "run_rerank", "rank_documents", "sigmoid", "refuse_token_ids"]


class JSONBody(Response):
    """JSON rendered by orjson; numpy arrays are written directly (float32 stays short and exact)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
        except (TypeError, orjson.JSONEncodeError):
            # What orjson refuses and the wire types no longer accept, but a store written by an older
            # version may hold (an integer beyond 64 bits, a lone surrogate): written the slow way, as
            # JSON escapes, so such a document can still be read (and deleted) instead of failing with 500.
            return json.dumps(content, default=_plain, ensure_ascii=True, allow_nan=False).encode("ascii")


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def respond(body: BaseModel | Sequence[BaseModel], *, status_code: int = 200, omit_none: bool = False) -> JSONBody:
    """A response built from its declared wire model(s); `omit_none` drops optional fields left unset."""
    if isinstance(body, BaseModel):
        content: Any = body.model_dump(mode="json", exclude_none=omit_none)
    else:
        content = [item.model_dump(mode="json", exclude_none=omit_none) for item in body]
    return JSONBody(content, status_code=status_code)


def model_service(request: Request) -> ModelService:
    """The service behind this app (a FastAPI dependency): set by `create_app`."""
    service: ModelService = request.app.state.get_service()
    return service


def truncation(limits: LimitsConfig, asked: bool | None) -> bool:
    """Whether over-long inputs are cut: what the request says, else the server's `auto_truncate`."""
    return limits.auto_truncate if asked is None else asked


def split_input(value: Any, limits: LimitsConfig) -> tuple[list[str] | None, list[list[int]] | None]:
    """OpenAI's four input forms -> texts or token-id lists, within the per-request limit."""
    if isinstance(value, str):
        texts, ids = [value], None
    elif value and all(isinstance(v, int) for v in value):
        texts, ids = None, [list(value)]
    elif value and all(isinstance(v, list) for v in value):
        texts, ids = None, [list(v) for v in value]
    else:
        texts, ids = list(value), None
    count = len(texts if texts is not None else ids or [])
    if count > limits.max_inputs_per_request:
        raise RequestTooLarge(f"{count} inputs in one request; the limit is {limits.max_inputs_per_request}",
                              param="input")
    return texts, ids


def check_documents(count: int, limits: LimitsConfig, param: str = "documents") -> None:
    if count > limits.max_documents_per_request:
        raise RequestTooLarge(
            f"{count} documents in one request; the limit is {limits.max_documents_per_request}", param=param
        )


def ranked(scores: np.ndarray, top_n: int | None) -> list[int]:
    """Indices best first (stable for ties), cut to `top_n`."""
    order: list[int] = np.argsort(-scores, kind="stable").tolist()
    return order[:top_n] if top_n is not None else order


def _note_timings(request: Request, outcome: EmbedOutcome | RerankOutcome) -> None:
    request.state.timings = (outcome.timings.queue_s, outcome.timings.inference_s, outcome.timings.tokens)


def refuse_token_ids(entry: ModelEntry, param: str) -> None:
    """Token ids are only taken by a model configured for them: ids from another tokenizer
    (LangChain's default sends OpenAI's) would otherwise embed as the wrong tokens, silently."""
    if not entry.accept_token_ids:
        raise TokenIdsRefused(
            f"{param} is token ids, and model {entry.name!r} takes text: ids from another tokenizer would embed as "
            "the wrong tokens without any error. LangChain's OpenAIEmbeddings sends OpenAI's tiktoken ids by "
            "default: create it with check_embedding_ctx_length=False to send text. If the ids come from this "
            "model's own tokenizer (POST /tokenize), set accept_token_ids: true on the model in the server config.",
            param=param,
        )


async def run_embed(request: Request, model: str | None, job: EmbedJob, *, input_param: str = "input"
                    ) -> tuple[ModelEntry, EmbedOutcome]:
    """Resolve the embedding model, run the job (token ids only where the model takes them), note its
    timings for the headers."""
    service = model_service(request)
    entry = service.resolve("embedding", model)
    if job.token_ids is not None:
        refuse_token_ids(entry, input_param)
    outcome = await service.embed(entry, job)
    _note_timings(request, outcome)
    return entry, outcome


async def run_rerank(request: Request, model: str | None, job: RerankJob) -> tuple[ModelEntry, RerankOutcome]:
    """Resolve the reranker, run the job, note its timings for the headers."""
    service = model_service(request)
    entry = service.resolve("reranker", model)
    outcome = await service.rerank(entry, job)
    _note_timings(request, outcome)
    return entry, outcome


async def rank_documents(request: Request, model: str | None, query: str, documents: list[str], *,
                         instruction: str | None, truncate: bool, max_tokens_per_document: int | None
                         ) -> tuple[ModelEntry, np.ndarray, int]:
    """One query against its documents (the Jina and Cohere shape): entry, P(yes) per document, tokens."""
    check_documents(len(documents), model_service(request).limits)
    entry, outcome = await run_rerank(request, model, RerankJob(
        groups=[(query, documents)], instruction=instruction, truncate=truncate,
        max_tokens_per_document=max_tokens_per_document,
    ))
    return entry, sigmoid(outcome.logits[0]), int(sum(outcome.token_counts[0]))
