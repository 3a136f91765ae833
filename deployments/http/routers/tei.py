"""Text Embeddings Inference dialect: `POST /embed`, `POST /rerank`.

`/rerank` is TEI's route, and vLLM / Jina clients call the same path with their own body;
the body's shape decides (`texts`: TEI, `documents`: Jina), with both schemas in OpenAPI.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import Discriminator, Tag

from clients.types import RerankRequest, RerankResponse, TEIEmbedRequest, TEIRerankRequest, TEIRerankResult

from ...jobs import EmbedJob, RerankJob
from ..wire import (
    JSONBody,
    check_documents,
    model_service,
    ranked,
    respond,
    run_embed,
    run_rerank,
    sigmoid,
    split_input,
    truncation,
)
from .rerank import jina_rerank

router = APIRouter(tags=["tei"])


@router.post("/embed", response_model=list[list[float]], summary="TEI-compatible embeddings")
async def tei_embed(body: TEIEmbedRequest, request: Request) -> Response:
    limits = model_service(request).limits
    texts, ids = split_input(body.inputs, limits)
    _, outcome = await run_embed(request, body.model, EmbedJob(
        texts=texts, token_ids=ids, prompt_name=body.prompt_name, dimensions=body.dimensions,
        normalize=body.normalize, truncate=truncation(limits, body.truncate),
        truncation_direction="left" if body.truncation_direction.lower() == "left" else "right",
    ))
    return JSONBody(outcome.vectors)


def _rerank_dialect(body: Any) -> str:
    return "jina" if isinstance(body, dict) and "documents" in body and "texts" not in body else "tei"


AnyRerankRequest = Annotated[
    Annotated[TEIRerankRequest, Tag("tei")] | Annotated[RerankRequest, Tag("jina")],
    Discriminator(_rerank_dialect),
]


async def tei_rerank(body: TEIRerankRequest, request: Request) -> Response:
    limits = model_service(request).limits
    check_documents(len(body.texts), limits, param="texts")
    _, outcome = await run_rerank(request, body.model, RerankJob(
        groups=[(body.query, body.texts)], instruction=body.instruction, truncate=truncation(limits, body.truncate),
    ))
    logits = outcome.logits[0]
    scores = logits if body.raw_scores else sigmoid(logits)
    return respond([TEIRerankResult(index=i, score=float(scores[i]), text=body.texts[i] if body.return_text else None)
                    for i in ranked(scores, None)], omit_none=True)


@router.post("/rerank", response_model=list[TEIRerankResult] | RerankResponse, tags=["rerank"],
             summary="TEI rerank (body with `texts`) or Jina / vLLM rerank (body with `documents`)")
async def rerank_either(body: Annotated[AnyRerankRequest, Body()], request: Request) -> Response:
    if isinstance(body, RerankRequest):
        return await jina_rerank(body, request)
    return await tei_rerank(body, request)
