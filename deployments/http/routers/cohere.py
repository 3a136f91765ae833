"""Cohere v2 dialect: `POST /v2/rerank`."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import CohereRerankRequest, CohereRerankResponse
from clients.types.rerank import CohereRerankMeta, CohereRerankResult, RerankDocumentText

from ..wire import rank_documents, ranked, respond

router = APIRouter(tags=["rerank"])


@router.post("/v2/rerank", response_model=CohereRerankResponse, summary="Cohere v2 rerank")
async def cohere_rerank(body: CohereRerankRequest, request: Request) -> Response:
    documents = body.document_texts()
    _, scores, tokens = await rank_documents(request, body.model, body.query, documents,
                                             instruction=body.instruction, truncate=True,
                                             max_tokens_per_document=body.max_tokens_per_doc)
    results = [CohereRerankResult(index=i, relevance_score=float(scores[i]),
                                  document=RerankDocumentText(text=documents[i]) if body.return_documents else None)
               for i in ranked(scores, body.top_n)]
    meta = CohereRerankMeta(billed_units={"search_units": 1}, tokens={"input_tokens": tokens, "output_tokens": 0})
    return respond(CohereRerankResponse(id=request.state.request_id, results=results, meta=meta), omit_none=True)
