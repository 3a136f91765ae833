"""Cohere v2 dialect: `POST /v2/rerank`."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import CohereRerankRequest, CohereRerankResponse
from clients.types.rerank import CohereRerankMeta, CohereRerankResult, RerankDocumentText

from ...jobs import RerankJob
from ..wire import check_documents, model_service, ranked, respond, run_rerank, sigmoid, truncation

router = APIRouter(tags=["rerank"])


@router.post("/v2/rerank", response_model=CohereRerankResponse, summary="Cohere v2 rerank")
async def cohere_rerank(body: CohereRerankRequest, request: Request) -> Response:
    limits = model_service(request).limits
    documents = body.document_texts()
    check_documents(len(documents), limits)
    # Cohere cuts each document to `max_tokens_per_doc` when asked; a prompt still longer than the model's
    # limit follows the server's `auto_truncate` (false: 413), as on every other route.
    _, outcome = await run_rerank(request, body.model, RerankJob(
        groups=[(body.query, documents)], instruction=body.instruction, truncate=truncation(limits, None),
        max_tokens_per_document=body.max_tokens_per_doc,
    ))
    scores = sigmoid(outcome.logits[0])
    tokens = int(sum(outcome.token_counts[0]))
    results = [CohereRerankResult(index=i, relevance_score=float(scores[i]),
                                  document=RerankDocumentText(text=documents[i]) if body.return_documents else None)
               for i in ranked(scores, body.top_n)]
    meta = CohereRerankMeta(billed_units={"search_units": 1}, tokens={"input_tokens": tokens, "output_tokens": 0})
    return respond(CohereRerankResponse(id=request.state.request_id, results=results, meta=meta), omit_none=True)
