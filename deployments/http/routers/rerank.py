"""Jina / vLLM rerank dialect: `POST /v1/rerank` (and `POST /rerank` with `documents`)."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import RerankRequest, RerankResponse
from clients.types.rerank import RerankDocumentText, RerankResult, RerankUsage

from ..wire import model_service, rank_documents, ranked, respond, truncation

router = APIRouter(tags=["rerank"])


async def jina_rerank(body: RerankRequest, request: Request) -> Response:
    documents = body.document_texts()
    entry, scores, tokens = await rank_documents(
        request, body.model, body.query, documents, instruction=body.instruction,
        truncate=truncation(model_service(request).limits, body.truncate),
        max_tokens_per_document=body.max_tokens_per_doc)
    results = [RerankResult(index=i, relevance_score=float(scores[i]),
                            document=RerankDocumentText(text=documents[i]) if body.return_documents else None)
               for i in ranked(scores, body.top_n)]
    return respond(RerankResponse(id=request.state.request_id, model=entry.name,
                                  usage=RerankUsage(total_tokens=tokens, prompt_tokens=tokens), results=results),
                   omit_none=True)


@router.post("/v1/rerank", response_model=RerankResponse, summary="Jina / vLLM rerank")
async def v1_rerank(body: RerankRequest, request: Request) -> Response:
    return await jina_rerank(body, request)
