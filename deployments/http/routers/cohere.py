"""Cohere v2 dialect: `POST /v2/rerank`, `POST /v2/embed`."""

import base64

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import CohereEmbedRequest, CohereEmbedResponse, CohereRerankRequest, CohereRerankResponse
from clients.types.rerank import CohereRerankMeta, CohereRerankResult, RerankDocumentText

from ...engine.vectors import quantize
from ...jobs import EmbedJob
from ..wire import JSONBody, model_service, rank_documents, ranked, respond, run_embed, split_input, truncation

router = APIRouter()

# Cohere's input types -> this service's roles: a search query gets the model's query
# instruction; documents, and texts to classify or cluster, are embedded as they are.
_QUERY_TYPES = frozenset({"search_query"})


@router.post("/v2/rerank", response_model=CohereRerankResponse, tags=["rerank"], summary="Cohere v2 rerank")
async def cohere_rerank(body: CohereRerankRequest, request: Request) -> Response:
    documents = body.document_texts()
    # Cohere cuts each document to `max_tokens_per_doc` when asked; a prompt still longer than the model's
    # limit follows the server's `auto_truncate` (false: 413), as on every other route.
    _, scores, tokens = await rank_documents(request, body.model, body.query, documents,
                                             instruction=body.instruction,
                                             truncate=truncation(model_service(request).limits, None),
                                             max_tokens_per_document=body.max_tokens_per_doc)
    results = [CohereRerankResult(index=i, relevance_score=float(scores[i]),
                                  document=RerankDocumentText(text=documents[i]) if body.return_documents else None)
               for i in ranked(scores, body.top_n)]
    meta = CohereRerankMeta(billed_units={"search_units": 1}, tokens={"input_tokens": tokens, "output_tokens": 0})
    return respond(CohereRerankResponse(id=request.state.request_id, results=results, meta=meta), omit_none=True)


@router.post("/v2/embed", response_model=CohereEmbedResponse, response_model_by_alias=True, tags=["embeddings"],
             summary="Cohere v2 embed (texts)")
async def cohere_embed(body: CohereEmbedRequest, request: Request) -> Response:
    split_input(body.texts, model_service(request).limits)  # the per-request limit (413)
    query = body.input_type in _QUERY_TYPES
    _, outcome = await run_embed(request, body.model, EmbedJob(
        texts=body.texts, instruction=body.instruction, input_type="query" if query else "document",
        dimensions=body.output_dimension, truncate=body.truncate != "NONE",
        truncation_direction="left" if body.truncate == "START" else "right",
    ), input_param="texts")
    vectors = outcome.vectors
    embeddings: dict[str, object] = {}
    for kind in dict.fromkeys(body.embedding_types):  # each asked type once, in the order asked
        if kind == "float":
            embeddings["float"] = vectors
        elif kind == "base64":
            embeddings["base64"] = [base64.b64encode(row.tobytes()).decode("ascii")
                                    for row in vectors.astype("<f4", copy=False)]
        else:
            embeddings[kind] = quantize(vectors, kind)
    tokens = int(sum(outcome.token_counts))
    # A dict, not a CohereEmbedResponse: validating every float would cost more than the model call.
    return JSONBody({
        "response_type": "embeddings_by_type", "id": request.state.request_id, "embeddings": embeddings,
        "texts": body.texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens},
                 "tokens": {"input_tokens": tokens}},
    })
