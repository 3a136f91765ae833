"""vLLM score dialect: `POST /score`, `POST /v1/score`."""

import time

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import ScoreRequest, ScoreResponse
from clients.types.rerank import ScoreData, ScoreUsage

from ...jobs import RerankJob
from ..wire import check_documents, model_service, respond, run_rerank, sigmoid

router = APIRouter(tags=["rerank"])


@router.post("/score", response_model=ScoreResponse, summary="vLLM score")
@router.post("/v1/score", response_model=ScoreResponse, summary="vLLM score (v1 path)")
async def vllm_score(body: ScoreRequest, request: Request) -> Response:
    limits = model_service(request).limits
    queries, documents = body.pairs()
    check_documents(len(documents), limits)
    grouped: dict[str, list[int]] = {}
    for index, query in enumerate(queries):
        grouped.setdefault(query, []).append(index)
    entry, outcome = await run_rerank(request, body.model, RerankJob(
        groups=[(query, [documents[i] for i in positions]) for query, positions in grouped.items()],
        instruction=body.instruction, truncate=limits.auto_truncate,
        max_tokens_per_document=body.truncate_prompt_tokens,
    ))
    scores = np.empty(len(documents), dtype=np.float32)
    for positions, logits in zip(grouped.values(), outcome.logits, strict=True):
        scores[positions] = sigmoid(logits)
    tokens = int(sum(sum(c) for c in outcome.token_counts))
    return respond(ScoreResponse(
        id=request.state.request_id, created=int(time.time()), model=entry.name,
        data=[ScoreData(index=i, score=float(s)) for i, s in enumerate(scores)],
        usage=ScoreUsage(prompt_tokens=tokens, total_tokens=tokens),
    ))
