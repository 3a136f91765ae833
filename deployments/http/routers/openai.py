"""OpenAI dialect: `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{id}`."""

import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import EmbeddingRequest, EmbeddingResponse, ModelCard, ModelList

from ...errors import InvalidRequest, UnknownModel
from ...jobs import EmbedJob
from ..wire import JSONBody, model_service, respond, run_embed, split_input

router = APIRouter()


@router.post("/v1/embeddings", response_model=EmbeddingResponse, tags=["embeddings"],
             summary="OpenAI-compatible embeddings")
async def openai_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    limits = model_service(request).limits
    texts, ids = split_input(body.input, limits)
    if body.instruction is not None and body.input_type == "document":
        raise InvalidRequest("an instruction embeds queries; drop input_type=document", param="input_type")
    entry, outcome = await run_embed(request, body.model, EmbedJob(
        texts=texts, token_ids=ids, instruction=body.instruction, input_type=body.input_type,
        dimensions=body.dimensions, truncate=limits.auto_truncate,
    ))
    vectors = outcome.vectors
    if body.encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        encoded: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        encoded = list(vectors)
    tokens = int(sum(outcome.token_counts))
    # Built as a dict, not an EmbeddingResponse: validating megabytes of floats would cost more than
    # the model call; the in-process tests check this shape against EmbeddingResponse.
    return JSONBody({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
        "model": entry.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


@router.get("/v1/models", response_model=ModelList, tags=["service"], summary="OpenAI model list")
async def models(request: Request) -> Response:
    return respond(ModelList(data=[ModelCard(id=e.name) for e in model_service(request).entries]))


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, tags=["service"], summary="OpenAI model card")
async def model(model_id: str, request: Request) -> Response:
    entries = model_service(request).entries
    for entry in entries:
        if model_id in (entry.name, entry.source):
            return respond(ModelCard(id=entry.name))
    raise UnknownModel(f"model {model_id!r} is not served here; models: {', '.join(e.name for e in entries)}",
                       param="model")
