"""Text Embeddings Inference dialect: `POST /embed`, `/rerank`, `/tokenize`, `/decode`, and `POST /`.

`/rerank` is TEI's route, and vLLM / Jina clients call the same path with their own body;
the body's shape decides (`texts`: TEI, `documents`: Jina), with both schemas in OpenAPI.
TEI serves one model and routes `POST /` to it by its kind; here several are served, so the
body's shape picks the kind (`inputs`: the embedding model, `query` + `texts`: the reranker),
and `model` (an extension) picks the model. TEI's `/info` fields are in `GET /info` (ops.py), for
the default embedder. Under `/tei/{model}/` the same routes serve one model, as a TEI server does
(its `/info` says embedding or reranker; `POST /` goes to it), for TEI clients given that root.
Errors on these routes are TEI's body, `{"error": message, "error_type": ...}` (http/errors.py).
"""

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import Discriminator, Tag

from clients.types import (
    RerankRequest,
    RerankResponse,
    TEIDecodeRequest,
    TEIEmbedRequest,
    TEIInfo,
    TEIRerankRequest,
    TEIRerankResult,
    TEIToken,
    TEITokenizeRequest,
)

from ...catalog import ModelEntry
from ...errors import InvalidRequest, RequestTooLarge, UnknownModel
from ...jobs import DecodeJob, EmbedJob, RerankJob, TokenizeJob
from ..service import ModelService
from ..version import VERSION
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
from .ops import tei_info
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
    ), input_param="inputs")
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


def _root_dialect(body: Any) -> str:
    return "rerank" if isinstance(body, dict) and "texts" in body and "query" in body else "embed"


AnyRootRequest = Annotated[
    Annotated[TEIEmbedRequest, Tag("embed")] | Annotated[TEIRerankRequest, Tag("rerank")],
    Discriminator(_root_dialect),
]


@router.post("/", response_model=list[list[float]] | list[TEIRerankResult],
             summary="TEI's root route: `/embed` for a body with `inputs`, `/rerank` for one with `query` and `texts`")
async def tei_root(body: Annotated[AnyRootRequest, Body()], request: Request) -> Response:
    if isinstance(body, TEIRerankRequest):
        return await tei_rerank(body, request)
    return await tei_embed(body, request)


def _tokenizer_model(service: ModelService, name: str | None) -> ModelEntry:
    """The model named (embedding or reranker: both have a tokenizer), else the default embedder."""
    if name is None:
        return service.resolve("embedding", None)
    for kind in ("embedding", "reranker"):
        try:
            return service.resolve(kind, name)  # type: ignore[arg-type]
        except UnknownModel:
            pass
    raise UnknownModel(f"model {name!r} is not served here; models: {', '.join(e.name for e in service.entries)}",
                       param="model")


def _check_count(count: int, service: ModelService, param: str) -> None:
    limit = service.limits.max_inputs_per_request
    if count > limit:
        raise RequestTooLarge(f"{count} inputs in one request; the limit is {limit}", param=param)


@router.post("/tokenize", response_model=list[list[TEIToken]], summary="TEI tokenize: the tokens of each text")
async def tei_tokenize(body: TEITokenizeRequest, request: Request) -> Response:
    service = model_service(request)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    _check_count(len(texts), service, "inputs")
    listed = await service.tokenize(_tokenizer_model(service, body.model), TokenizeJob(
        texts=texts, add_special_tokens=body.add_special_tokens, prompt_name=body.prompt_name))
    return JSONBody([[{"id": t.id, "text": t.text, "special": t.special, "start": t.start, "stop": t.stop}
                      for t in tokens] for tokens in listed])


@router.post("/decode", response_model=list[str], summary="TEI decode: token ids back to text")
async def tei_decode(body: TEIDecodeRequest, request: Request) -> Response:
    service = model_service(request)
    one = bool(body.ids) and all(isinstance(i, int) for i in body.ids)
    ids: list[list[int]] = [list(body.ids)] if one else [list(i) for i in body.ids]  # type: ignore[arg-type]
    _check_count(len(ids), service, "ids")
    texts = await service.decode(_tokenizer_model(service, body.model),
                                 DecodeJob(token_ids=ids, skip_special_tokens=body.skip_special_tokens))
    return JSONBody(texts)


# ---------------------------------------------------------------- one model per root, as TEI serves
model_router = APIRouter(prefix="/tei/{model}", tags=["tei"])
"""`/tei/{model}/...`: TEI's routes for one served model, so a TEI client given that root sees the
one-model server it expects (its `/info` says embedding or reranker, `POST /` goes to that model)."""

_Pinned = TypeVar("_Pinned", TEIEmbedRequest, TEIRerankRequest, TEITokenizeRequest, TEIDecodeRequest)


def _pinned(body: _Pinned, model: str) -> _Pinned:
    if body.model is not None and body.model != model:
        raise InvalidRequest(f"this root serves model {model!r}; the body names {body.model!r}", param="model")
    return body.model_copy(update={"model": model})


def _served(service: ModelService, model: str) -> ModelEntry:
    entry = next((e for e in service.entries if e.name == model), None)
    if entry is None:
        raise UnknownModel(f"model {model!r} is not served here; models: {', '.join(e.name for e in service.entries)}",
                           param="model")
    return entry


@model_router.get("/info", response_model=TEIInfo, summary="TEI /info of this model")
async def tei_model_info(model: str, request: Request) -> Response:
    service = model_service(request)
    entry = _served(service, model)
    described = dict(zip((e.name for e in service.entries), await service.describe(), strict=True))
    return respond(TEIInfo(version=VERSION, **tei_info(entry, described[entry.name], service.limits)))


@model_router.post("/embed", response_model=list[list[float]], summary="TEI embeddings with this model")
async def tei_model_embed(model: str, body: TEIEmbedRequest, request: Request) -> Response:
    return await tei_embed(_pinned(body, model), request)


@model_router.post("/rerank", response_model=list[TEIRerankResult], summary="TEI rerank with this model")
async def tei_model_rerank(model: str, body: TEIRerankRequest, request: Request) -> Response:
    return await tei_rerank(_pinned(body, model), request)


@model_router.post("/", response_model=list[list[float]] | list[TEIRerankResult],
                   summary="TEI's root route: this model's /embed or /rerank, by its kind")
async def tei_model_root(model: str, body: Annotated[AnyRootRequest, Body()], request: Request) -> Response:
    entry = _served(model_service(request), model)
    wanted = TEIRerankRequest if entry.kind == "reranker" else TEIEmbedRequest
    if not isinstance(body, wanted):
        shape = "`query` and `texts`" if entry.kind == "reranker" else "`inputs`"
        raise InvalidRequest(f"model {model!r} is a {entry.kind} model: POST / takes a body with {shape}",
                             param="inputs" if entry.kind == "embedding" else "texts")
    if isinstance(body, TEIRerankRequest):
        return await tei_rerank(_pinned(body, model), request)
    return await tei_embed(_pinned(body, model), request)


@model_router.post("/tokenize", response_model=list[list[TEIToken]], summary="TEI tokenize with this model")
async def tei_model_tokenize(model: str, body: TEITokenizeRequest, request: Request) -> Response:
    return await tei_tokenize(_pinned(body, model), request)


@model_router.post("/decode", response_model=list[str], summary="TEI decode with this model")
async def tei_model_decode(model: str, body: TEIDecodeRequest, request: Request) -> Response:
    return await tei_decode(_pinned(body, model), request)
