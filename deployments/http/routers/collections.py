"""Collections and search: `/v1/collections/...` (this service's own dialect)."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clients.types import (
    Collection,
    CollectionDeleted,
    CollectionList,
    CountResponse,
    CreateCollectionRequest,
    DeleteResponse,
    SearchRequest,
    SearchResult,
    StoredDocument,
    UpsertRequest,
    UpsertResponse,
)
from clients.types.collections import SearchHit, SearchTimings

from ...errors import RequestTooLarge
from ...index.base import CollectionInfo
from ...jobs import SearchJob
from ..service import SearchService
from ..wire import model_service, respond

router = APIRouter(tags=["collections"])


def _search(request: Request) -> SearchService:
    return model_service(request).search


def _collection(info: CollectionInfo) -> Collection:
    return Collection(name=info.name, model=info.model, dimensions=info.dimensions, index=info.index,  # type: ignore[arg-type]
                      lexical_language=info.lexical_language, count=info.count, created_at=info.created_at)


@router.put("/v1/collections/{name}", response_model=Collection, status_code=201,
            summary="Create a collection (201), or confirm an identical one (200); 409 if it differs",
            responses={200: {"model": Collection}})
async def create_collection(name: str, request: Request, body: CreateCollectionRequest | None = None) -> Response:
    body = body or CreateCollectionRequest()
    info, created = await _search(request).create_collection(name, body.model, body.dimensions, body.index,
                                                             body.lexical_language)
    return respond(_collection(info), status_code=201 if created else 200)


@router.get("/v1/collections", response_model=CollectionList, summary="List collections")
async def list_collections(request: Request) -> Response:
    return respond(CollectionList(collections=[_collection(c) for c in await _search(request).list_collections()]))


@router.get("/v1/collections/{name}", response_model=Collection, summary="A collection")
async def get_collection(name: str, request: Request) -> Response:
    return respond(_collection(await _search(request).get_collection(name)))


@router.delete("/v1/collections/{name}", response_model=CollectionDeleted,
               summary="Delete a collection and its documents")
async def delete_collection(name: str, request: Request) -> Response:
    await _search(request).delete_collection(name)
    return respond(CollectionDeleted(name=name))


@router.get("/v1/collections/{name}/count", response_model=CountResponse, summary="Documents in a collection")
async def count_documents(name: str, request: Request) -> Response:
    info = await _search(request).get_collection(name)
    return respond(CountResponse(collection=name, count=info.count))


@router.post("/v1/collections/{name}/documents", response_model=UpsertResponse,
             summary="Insert or replace documents (idempotent by id)")
async def upsert_documents(name: str, body: UpsertRequest, request: Request) -> Response:
    limits = model_service(request).limits
    if len(body.documents) > limits.max_documents_per_upsert:
        raise RequestTooLarge(f"{len(body.documents)} documents in one upload; the limit is "
                              f"{limits.max_documents_per_upsert}", param="documents")
    ids = await _search(request).upsert(name, [(d.id, d.text, d.metadata) for d in body.documents],
                                        limits.auto_truncate)
    return respond(UpsertResponse(ids=ids, count=len(ids)))


@router.get("/v1/collections/{name}/documents/{doc_id:path}", response_model=StoredDocument,
            summary="A stored document")
async def get_document(name: str, doc_id: str, request: Request) -> Response:
    return respond(StoredDocument(**await _search(request).get_document(name, doc_id)))


@router.delete("/v1/collections/{name}/documents/{doc_id:path}", response_model=DeleteResponse,
               summary="Delete a document")
async def delete_document(name: str, doc_id: str, request: Request) -> Response:
    await _search(request).delete_document(name, doc_id)
    return respond(DeleteResponse(id=doc_id))


@router.post("/v1/collections/{name}/search", response_model=SearchResult | list[SearchResult],
             summary="Retrieve candidates (dense, lexical or hybrid), rerank them")
async def search(name: str, body: SearchRequest, request: Request) -> Response:
    limits = model_service(request).limits
    queries = body.queries()
    for value, limit, param in ((body.top_k, limits.max_top_k, "top_k"), (body.top_n, limits.max_top_n, "top_n"),
                                (len(queries), limits.max_queries_per_search, "query")):
        if value is not None and value > limit:
            raise RequestTooLarge(f"{param} is {value}; the limit is {limit}", param=param)
    outcome = await _search(request).search(name, SearchJob(
        queries=queries, mode=body.mode, rrf_k=body.rrf_k,
        weights=body.weights.model_dump() if body.weights is not None else None,
        top_k=body.top_k, top_n=body.top_n, instruction=body.instruction, filter=body.filter,
        rerank=body.rerank, reranker=body.reranker, return_metadata=body.return_metadata, exact=body.exact,
        truncate=limits.auto_truncate,
    ))
    request.state.timings = (outcome.queue_s, outcome.inference_s, outcome.tokens)
    timings = SearchTimings(**outcome.timings_ms)
    answers = [SearchResult(results=[SearchHit(id=h.id, text=h.text, metadata=h.metadata, score=h.score,
                                               embedding_score=h.embedding_score, lexical_score=h.lexical_score,
                                               fused_score=h.fused_score, retrievers=h.retrievers)
                                     for h in hits], top_k=outcome.top_k, timings=timings)
               for hits in outcome.results]
    return respond(answers[0] if isinstance(body.query, str) else answers)
