"""Jina / vLLM rerank dialect: `POST /v1/rerank` (and `POST /rerank` with `documents`)."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import RerankRequest, RerankResponse
from clients.types.rerank import RerankDocumentText, RerankResult, RerankUsage

from ...jobs import RerankJob
from ..wire import check_documents, model_service, ranked, respond, run_rerank, sigmoid, truncation

router = APIRouter(tags=["rerank"])


async def jina_rerank(body: RerankRequest, request: Request) -> Response:
    limits = model_service(request).limits
    documents = body.document_texts()
    check_documents(len(documents), limits)
    entry, outcome = await run_rerank(request, body.model, RerankJob(
        groups=[(body.query, documents)], instruction=body.instruction, truncate=truncation(limits, body.truncate),
        max_tokens_per_document=body.max_tokens_per_doc,
    ))
    scores = sigmoid(outcome.logits[0])
    tokens = int(sum(outcome.token_counts[0]))
    results = [RerankResult(index=i, relevance_score=float(scores[i]),
                            document=RerankDocumentText(text=documents[i]) if body.return_documents else None)
               for i in ranked(scores, body.top_n)]
    return respond(RerankResponse(id=request.state.request_id, model=entry.name,
                                  usage=RerankUsage(total_tokens=tokens, prompt_tokens=tokens), results=results),
                   omit_none=True)


@router.post("/v1/rerank", response_model=RerankResponse, summary="Jina / vLLM rerank")
async def v1_rerank(body: RerankRequest, request: Request) -> Response:
    return await jina_rerank(body, request)
