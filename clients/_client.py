"""`Client` and `AsyncClient`: every route of the service as a typed method.

The two classes have the same methods with the same arguments. Each method builds its requests
and the merge of their answers with a shared `_*_call` function, so splitting, ids and parsing
cannot drift apart between the two; only the waiting differs.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar, overload
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from ._base_client import AsyncAPIClient, RequestOptions, RequestSpec, SyncAPIClient
from ._constants import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_RETRIES, REQUEST_BYTES_MARGIN
from ._exceptions import make_status_error
from ._results import EmbedResult
from ._split import (
    abatched,
    batched,
    chunk_ranges,
    json_size,
    merge_embeddings,
    merge_rerank,
    merge_scores,
    prepare_document,
)
from ._types import NOT_GIVEN, NotGiven, Timeout
from .types import (
    Collection,
    CollectionDeleted,
    CollectionList,
    CountResponse,
    DeleteResponse,
    Document,
    EmbeddingResponse,
    HealthResponse,
    HybridWeights,
    IndexType,
    InfoResponse,
    Limits,
    MetadataFilter,
    RerankResponse,
    ScoreResponse,
    SearchMode,
    SearchResult,
    StoredDocument,
    UpsertResponse,
)

__all__ = ["Client", "AsyncClient", "DocumentLike"]

_M = TypeVar("_M", bound=BaseModel)
_R = TypeVar("_R")
_T = TypeVar("_T")

DocumentLike = Document | Mapping[str, Any]
"""A document to upload: a `Document`, or a mapping with `text` and optionally `id` and `metadata`."""

_SEARCH_RESULTS = TypeAdapter(list[SearchResult])


# ---------------------------------------------------------------- requests shared by both clients
@dataclass(frozen=True)
class _Call(Generic[_R, _T]):
    """The requests of one method call, and how their answers (in request order) become its result."""

    specs: list[RequestSpec[_R]]
    merge: Callable[[list[_R]], _T]


def _parser(model: type[_M]) -> Callable[[httpx.Response], _M]:
    return lambda response: model.model_validate_json(response.content)


def _fields(**values: Any) -> dict[str, Any]:
    """The request fields the caller gave: None leaves the server's default."""
    return {key: value for key, value in values.items() if value is not None}


def _weights(weights: HybridWeights | Mapping[str, float] | None) -> dict[str, float] | None:
    if weights is None or isinstance(weights, HybridWeights):
        return None if weights is None else weights.model_dump()
    return dict(weights)


def _collection_path(name: str, *rest: str) -> str:
    # Ids may contain '/', '?', '#' or spaces: every segment is percent-encoded, '/' included.
    return "/".join(["/v1/collections", quote(name, safe=""), *(quote(part, safe="") for part in rest)])


def _byte_budget(limits: Limits, *fixed: Any) -> int:
    """Bytes left for the split list once the fields sent with every chunk are counted."""
    return max(1, limits.max_request_bytes - REQUEST_BYTES_MARGIN - sum(json_size(f) for f in fixed))


def _texts(value: str | Sequence[str], what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        raise TypeError(f"{what} must be str or a sequence of str, not bytes")
    return list(value)


def _embed_call(texts: list[str], limits: Limits | None, fields: dict[str, Any]) -> _Call[EmbeddingResponse,
                                                                                         EmbedResult]:
    fields = {**fields, "encoding_format": "base64"}  # a quarter of the bytes of float lists, and exact
    ranges = [range(len(texts))] if limits is None else chunk_ranges(
        [json_size(t) for t in texts], max_count=limits.max_inputs_per_request,
        max_bytes=_byte_budget(limits, fields))
    specs = [RequestSpec("POST", "/v1/embeddings", _parser(EmbeddingResponse),
                         body={"input": texts[r.start:r.stop], **fields}) for r in ranges]

    def merge(responses: list[EmbeddingResponse]) -> EmbedResult:
        vectors, model, usage = merge_embeddings(responses)
        return EmbedResult(embeddings=vectors, model=model, usage=usage)

    return _Call(specs, merge)


def _rerank_call(query: str, documents: list[str], limits: Limits | None, top_n: int | None,
                 fields: dict[str, Any]) -> _Call[RerankResponse, RerankResponse]:
    ranges = [range(len(documents))] if limits is None else chunk_ranges(
        [json_size(d) for d in documents], max_count=limits.max_documents_per_request,
        max_bytes=_byte_budget(limits, query, fields))
    split = len(ranges) > 1
    specs = []
    for r in ranges:
        # The best top_n overall are among the best top_n of each chunk: no chunk needs to send more.
        chunk_top_n = min(top_n, len(r)) if split and top_n is not None else top_n
        body = {"query": query, "documents": documents[r.start:r.stop], **fields, **_fields(top_n=chunk_top_n)}
        specs.append(RequestSpec("POST", "/v1/rerank", _parser(RerankResponse), body=body))
    offsets = [r.start for r in ranges]
    return _Call(specs, lambda responses: merge_rerank(responses, offsets, top_n))


def _score_call(queries: str | Sequence[str], documents: list[str], limits: Limits | None,
                fields: dict[str, Any]) -> _Call[ScoreResponse, ScoreResponse]:
    query_list = _texts(queries, "queries")
    pairwise = len(query_list) != 1
    if limits is None or (pairwise and len(query_list) != len(documents)):
        # Nothing to split, or a mismatch the server explains better than a client-side error.
        ranges = [range(len(documents))]
    else:
        sizes = [json_size(d) + (json_size(q) if pairwise else 0)
                 for d, q in zip(documents, query_list if pairwise else documents, strict=True)]
        fixed = [] if pairwise else [query_list[0]]
        ranges = chunk_ranges(sizes, max_count=limits.max_documents_per_request,
                              max_bytes=_byte_budget(limits, fields, *fixed))
    if len(ranges) == 1:
        bodies = [{"queries": queries if isinstance(queries, str) else query_list, "documents": documents}]
    else:
        bodies = [{"queries": query_list[r.start:r.stop] if pairwise else query_list[0],
                   "documents": documents[r.start:r.stop]} for r in ranges]
    specs = [RequestSpec("POST", "/score", _parser(ScoreResponse), body={**body, **fields}) for body in bodies]
    offsets = [r.start for r in ranges]
    return _Call(specs, lambda responses: merge_scores(responses, offsets))


SEARCH_TIMEOUT_HINT = ("A search's time is mostly the reranker scoring `top_k` candidates per query: ask for "
                       "fewer (top_k=), skip the reranker (rerank=False), or allow more time (timeout=).")


def _search_call(collection: str, query: str | list[str], limits: Limits | None,
                 fields: dict[str, Any]) -> _Call[Any, SearchResult | list[SearchResult]]:
    path = _collection_path(collection, "search")
    if isinstance(query, str):
        one = RequestSpec("POST", path, _parser(SearchResult), body={"query": query, **fields},
                          on_timeout=SEARCH_TIMEOUT_HINT)
        return _Call([one], lambda responses: responses[0])
    queries = list(query)
    step = len(queries) if limits is None else max(1, limits.max_queries_per_search)
    starts = range(0, len(queries), step) if queries else range(1)
    specs = [RequestSpec("POST", path, lambda r: _SEARCH_RESULTS.validate_json(r.content),
                         body={"query": queries[s:s + step], **fields}, on_timeout=SEARCH_TIMEOUT_HINT)
             for s in starts]
    return _Call(specs, lambda responses: [result for answer in responses for result in answer])


def _health_spec() -> RequestSpec[HealthResponse]:
    def parse(response: httpx.Response) -> HealthResponse:
        try:
            return HealthResponse.model_validate_json(response.content)
        except ValueError:
            if response.status_code == 503:  # a proxy's 503 before the application exists
                raise make_status_error(response) from None
            raise

    # 503 is an answer here (its body says which deployment is down), so it is not retried.
    return RequestSpec("GET", "/health", parse, ok=frozenset({200, 503}))


def _upload_size(document: dict[str, Any]) -> int:
    return json_size(document)


class _ProgressBar(Protocol):
    def update(self, n: int) -> object: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> object: ...

    def close(self) -> None: ...


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


class _UploadProgress:
    """An upload's bar: it counts documents stored as each chunk is acknowledged (in the order the
    answers come, not the order of the chunks), and shows how many are sent and not yet stored."""

    def __init__(self, bar: _ProgressBar) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self._in_flight = 0

    def sent(self, count: int) -> None:
        with self._lock:
            self._in_flight += count
            self._bar.set_postfix_str(f"{self._in_flight} in flight")

    def stored(self, count: int) -> None:
        with self._lock:
            self._in_flight -= count
            self._bar.set_postfix_str(f"{self._in_flight} in flight", refresh=False)
            self._bar.update(count)

    def failed(self, count: int) -> None:
        with self._lock:
            self._in_flight -= count

    def close(self) -> None:
        self._bar.close()


def _progress_bar(enabled: bool | None, total: int | None, description: str) -> _ProgressBar:
    """A tqdm bar on stderr, when enabled (default: when stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoProgress()
    tqdm = importlib.import_module("tqdm").tqdm  # imported only when a bar is drawn
    bar: _ProgressBar = tqdm(total=total, unit="doc", desc=description, file=sys.stderr, dynamic_ncols=True)
    return bar


def _total_of(documents: object, total: int | None) -> int | None:
    if total is not None:
        return total
    try:
        return len(documents)  # type: ignore[arg-type]
    except TypeError:
        return None


# ---------------------------------------------------------------- the blocking client
class Client(SyncAPIClient):
    """A blocking client of a qwen3-search server.

    One instance holds one pooled `httpx.Client`; share it between threads and close it when done
    (`with Client() as client:` does). Every method takes keyword-only options, a per-call
    `timeout` (seconds or `httpx.Timeout`; None for none) and `max_retries`.
    """

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int = DEFAULT_MAX_RETRIES,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY, http_client: httpx.Client | None = None,
                 _sleep: Callable[[float], None] | None = None) -> None:
        """
        Args:
            base_url: the server's root URL; `$QWEN3_SEARCH_BASE_URL`, else http://127.0.0.1:8000.
            api_key: sent as `Authorization: Bearer <key>`; `$QWEN3_SEARCH_API_KEY` when not given.
            timeout: default of every HTTP attempt (`DEFAULT_TIMEOUT`: 120 s, 10 s to connect).
            max_retries: default retries of a failed attempt (`DEFAULT_MAX_RETRIES`).
            max_concurrency: requests of one split call or upload in flight at once.
            http_client: your own `httpx.Client` (proxies, transports, event hooks); not closed by `close()`.
            _sleep: replaces `time.sleep` between retries (tests).
        """
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         max_concurrency=max_concurrency, http_client=http_client, sleep=_sleep)
        self._limits: Limits | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    def _run(self, call: _Call[_R, _T], options: RequestOptions) -> _T:
        return call.merge(self._send_all(call.specs, options))

    def _limits_for(self, items: int, options: RequestOptions) -> Limits | None:
        """The server's limits, read once from /info; None when one item leaves nothing to split."""
        return None if items <= 1 else self._require_limits(options)

    # ------------------------------------------------------------ models
    def embed(self, input: str | Sequence[str], *, model: str | None = None, instruction: str | None = None,
              input_type: Literal["query", "document"] | None = None, dimensions: int | None = None,
              timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> EmbedResult:
        """Embed one text or many; `.embeddings` is a float32 array, one row per input, in input order.

        More inputs (or bytes) than the server takes in one request are sent as several requests,
        `max_concurrency` at a time, and joined in order.

        Args:
            input: a text or a sequence of texts.
            model: a served embedding model; the server's default if omitted.
            instruction: embed the inputs as queries with this task instruction (Qwen3).
            input_type: `query` (the model's default query instruction) or `document` (no instruction).
            dimensions: Matryoshka width, the first N components re-normalised.
        """
        texts = _texts(input, "input")
        options = self._options(timeout, max_retries)
        fields = _fields(model=model, instruction=instruction, input_type=input_type, dimensions=dimensions)
        return self._run(_embed_call(texts, self._limits_for(len(texts), options), fields), options)

    def rerank(self, query: str, documents: Sequence[str], *, model: str | None = None, top_n: int | None = None,
               instruction: str | None = None, return_documents: bool | None = None,
               max_tokens_per_doc: int | None = None, timeout: Timeout | NotGiven = NOT_GIVEN,
               max_retries: int | None = None) -> RerankResponse:
        """Score each document's relevance to `query` with the reranker; results best first.

        `result.index` is the document's position in `documents`. More documents than one request
        takes are split; each score depends on its own document only, so the merged ranking is the
        one a single request would give.

        Args:
            top_n: return only the N best.
            instruction: the task instruction (default: web search relevance).
            return_documents: include each document's text (the server's default: yes).
            max_tokens_per_doc: cut each document to this many tokens.
        """
        docs = _texts(documents, "documents")
        options = self._options(timeout, max_retries)
        fields = _fields(model=model, instruction=instruction, return_documents=return_documents,
                         max_tokens_per_doc=max_tokens_per_doc)
        return self._run(_rerank_call(query, docs, self._limits_for(len(docs), options), top_n, fields), options)

    def score(self, queries: str | Sequence[str], documents: Sequence[str], *, model: str | None = None,
              instruction: str | None = None, truncate_prompt_tokens: int | None = None,
              timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> ScoreResponse:
        """Reranker scores in input order: one query against every document, or N queries with N documents
        pairwise. `data[i].score` belongs to `documents[i]`."""
        docs = _texts(documents, "documents")
        options = self._options(timeout, max_retries)
        fields = _fields(model=model, instruction=instruction, truncate_prompt_tokens=truncate_prompt_tokens)
        return self._run(_score_call(queries, docs, self._limits_for(len(docs), options), fields), options)

    # ------------------------------------------------------------ search
    @overload
    def search(self, collection: str, query: str, *, top_k: int | None = None, top_n: int | None = None,
               filter: MetadataFilter | None = None, rerank: bool | None = None, instruction: str | None = None,
               reranker: str | None = None, return_metadata: bool | None = None, exact: bool | None = None,
               mode: SearchMode | None = None, rrf_k: int | None = None,
               weights: HybridWeights | Mapping[str, float] | None = None,
               timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> SearchResult: ...

    @overload
    def search(self, collection: str, query: list[str], *, top_k: int | None = None, top_n: int | None = None,
               filter: MetadataFilter | None = None, rerank: bool | None = None, instruction: str | None = None,
               reranker: str | None = None, return_metadata: bool | None = None, exact: bool | None = None,
               mode: SearchMode | None = None, rrf_k: int | None = None,
               weights: HybridWeights | Mapping[str, float] | None = None,
               timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> list[SearchResult]: ...

    def search(self, collection: str, query: str | list[str], *, top_k: int | None = None, top_n: int | None = None,
               filter: MetadataFilter | None = None, rerank: bool | None = None, instruction: str | None = None,
               reranker: str | None = None, return_metadata: bool | None = None, exact: bool | None = None,
               mode: SearchMode | None = None, rrf_k: int | None = None,
               weights: HybridWeights | Mapping[str, float] | None = None,
               timeout: Timeout | NotGiven = NOT_GIVEN,
               max_retries: int | None = None) -> SearchResult | list[SearchResult]:
        """Search a collection: embed the query, take `top_k` candidates, rerank them, return the best `top_n`.

        A string query gets a `SearchResult`; a list of queries gets a list, one per query, in order
        (split by the server's `max_queries_per_search`).

        Args:
            top_k: candidates per retriever, which the reranker scores (server default 100, or 20 when
                the reranker runs on CPU; never below `top_n`).
            top_n: results returned (server default 10).
            filter: metadata filter, `{"key": value}` or `{"key": {"$in": [a, b]}}`; all keys must match.
            rerank: rerank the candidates (default yes); with False, scores are cosine similarities.
            instruction: task instruction for the reranker and, for Qwen3 embedders, the query.
            reranker: a served reranker; the default one if omitted.
            return_metadata: include each hit's metadata (default yes).
            exact: exact vector search even where an HNSW index exists.
            mode: `dense` (vector search, the server default), `lexical` (full-text search, no query
                embedding) or `hybrid` (both, fused by reciprocal rank fusion before reranking).
            rrf_k: hybrid: the RRF constant (server default 60).
            weights: hybrid: RRF weight per retriever, e.g. `{"dense": 1.0, "lexical": 2.0}` (1 each).
        """
        options = self._options(timeout, max_retries)
        fields = _fields(top_k=top_k, top_n=top_n, filter=filter, rerank=rerank, instruction=instruction,
                         reranker=reranker, return_metadata=return_metadata, exact=exact, mode=mode,
                         rrf_k=rrf_k, weights=_weights(weights))
        count = 1 if isinstance(query, str) else len(query)
        return self._run(_search_call(collection, query, self._limits_for(count, options), fields), options)

    # ------------------------------------------------------------ documents
    def upsert(self, collection: str, documents: Iterable[DocumentLike], *, batch_size: int | None = None,
               progress: bool | None = None, total: int | None = None, timeout: Timeout | NotGiven = NOT_GIVEN,
               max_retries: int | None = None) -> list[str]:
        """Insert or replace documents (by id) from any iterable, streamed in chunks; returns the ids in order.

        Documents without an id get one (UUID4 hex) before their first attempt, so a retried chunk
        stores nothing twice. Give your own ids to make a whole upload resumable: sending the same
        documents again replaces them.

        Args:
            documents: `Document`s or mappings with `text` (and `id`, `metadata`); read lazily.
            batch_size: documents per request, at most the server's `max_documents_per_upsert` (the default).
            progress: a tqdm bar on stderr; default: when stderr is a terminal.
            total: the number of documents, for the bar, when `documents` has no `len()`.
        """
        options = self._options(timeout, max_retries)
        limits = self._require_limits(options)
        size = min(batch_size or limits.max_documents_per_upsert, limits.max_documents_per_upsert)
        chunks = batched((prepare_document(d) for d in documents), max_count=size,
                         max_bytes=_byte_budget(limits), size=_upload_size)
        path = _collection_path(collection, "documents")
        ids: list[str] = []
        bar = _UploadProgress(_progress_bar(progress, _total_of(documents, total), f"upsert {collection}"))

        def upload(chunk: list[dict[str, Any]]) -> UpsertResponse:
            spec = RequestSpec("POST", path, _parser(UpsertResponse), body={"documents": chunk})
            bar.sent(len(chunk))
            try:
                response = self._send(spec, options)
            except BaseException:
                bar.failed(len(chunk))
                raise
            bar.stored(len(chunk))
            return response

        def record(response: UpsertResponse) -> None:
            ids.extend(response.ids)

        try:
            self._run_ordered(upload, chunks, record)
        finally:
            bar.close()
        return ids

    def get_document(self, collection: str, id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                     max_retries: int | None = None) -> StoredDocument:
        """A stored document; `NotFoundError` when the collection or the id is unknown."""
        spec = RequestSpec("GET", _collection_path(collection, "documents", id), _parser(StoredDocument))
        return self._send(spec, self._options(timeout, max_retries))

    def delete_document(self, collection: str, id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                        max_retries: int | None = None) -> DeleteResponse:
        """Delete a document; it leaves search results at once."""
        spec = RequestSpec("DELETE", _collection_path(collection, "documents", id), _parser(DeleteResponse),
                           on_retried_404=lambda: DeleteResponse(id=id, deleted=True))
        return self._send(spec, self._options(timeout, max_retries))

    def count(self, collection: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
              max_retries: int | None = None) -> int:
        """The number of documents stored in a collection."""
        spec = RequestSpec("GET", _collection_path(collection, "count"), _parser(CountResponse))
        return self._send(spec, self._options(timeout, max_retries)).count

    # ------------------------------------------------------------ collections
    def create_collection(self, name: str, *, model: str | None = None, dimensions: int | None = None,
                          index: IndexType | None = None, lexical_language: str | None = None,
                          timeout: Timeout | NotGiven = NOT_GIVEN,
                          max_retries: int | None = None) -> Collection:
        """Create a collection, or return the existing identical one; `ConflictError` if it exists
        bound to another model, width or index.

        Args:
            model: the embedding model; the server's default if omitted.
            dimensions: Matryoshka width; the model's full width if omitted.
            index: `auto` (exact while small, HNSW above a threshold), `exact` or `hnsw`.
            lexical_language: full-text index language, `simple` (default) or `english` (stemming);
                PostgreSQL also takes its other text search configurations.
        """
        body = _fields(model=model, dimensions=dimensions, index=index, lexical_language=lexical_language)
        spec = RequestSpec("PUT", _collection_path(name), _parser(Collection), body=body,
                           ok=frozenset({200, 201}))
        return self._send(spec, self._options(timeout, max_retries))

    def get_collection(self, name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                       max_retries: int | None = None) -> Collection:
        """A collection with its model, width and document count; `NotFoundError` if unknown."""
        spec = RequestSpec("GET", _collection_path(name), _parser(Collection))
        return self._send(spec, self._options(timeout, max_retries))

    def list_collections(self, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                         max_retries: int | None = None) -> list[Collection]:
        """Every collection, by name."""
        spec = RequestSpec("GET", "/v1/collections", _parser(CollectionList))
        return self._send(spec, self._options(timeout, max_retries)).collections

    def delete_collection(self, name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                          max_retries: int | None = None) -> CollectionDeleted:
        """Delete a collection and all its documents."""
        spec = RequestSpec("DELETE", _collection_path(name), _parser(CollectionDeleted),
                           on_retried_404=lambda: CollectionDeleted(name=name, deleted=True))
        return self._send(spec, self._options(timeout, max_retries))

    # ------------------------------------------------------------ service
    def health(self, *, timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> HealthResponse:
        """The state of every deployment. `status` is `ok` or `unavailable` (answered 503, not raised)."""
        return self._send(_health_spec(), self._options(timeout, max_retries))

    def info(self, *, timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> InfoResponse:
        """Served models (kind, dimensions, max length), per-request limits and the server version."""
        info = self._send(RequestSpec("GET", "/info", _parser(InfoResponse)), self._options(timeout, max_retries))
        self._limits = info.limits
        return info

    def _require_limits(self, options: RequestOptions) -> Limits:
        if self._limits is None:
            self._limits = self.info(timeout=options.timeout, max_retries=options.max_retries).limits
        return self._limits


# ---------------------------------------------------------------- the asyncio client
class AsyncClient(AsyncAPIClient):
    """An asyncio client of a qwen3-search server, with the same methods as `Client`.

    One instance holds one pooled `httpx.AsyncClient`; share it between tasks and close it when
    done (`async with AsyncClient() as client:` does).
    """

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int = DEFAULT_MAX_RETRIES,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY, http_client: httpx.AsyncClient | None = None,
                 _sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        """Arguments as `Client`'s; `http_client` is an `httpx.AsyncClient`, `_sleep` an async function."""
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         max_concurrency=max_concurrency, http_client=http_client, sleep=_sleep)
        self._limits: Limits | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"

    async def _run(self, call: _Call[_R, _T], options: RequestOptions) -> _T:
        return call.merge(await self._send_all(call.specs, options))

    async def _limits_for(self, items: int, options: RequestOptions) -> Limits | None:
        if items <= 1:
            return None
        return await self._require_limits(options)

    async def _require_limits(self, options: RequestOptions) -> Limits:
        if self._limits is None:
            self._limits = (await self.info(timeout=options.timeout, max_retries=options.max_retries)).limits
        return self._limits

    # ------------------------------------------------------------ models
    async def embed(self, input: str | Sequence[str], *, model: str | None = None, instruction: str | None = None,
                    input_type: Literal["query", "document"] | None = None, dimensions: int | None = None,
                    timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> EmbedResult:
        """Embed one text or many; see `Client.embed`."""
        texts = _texts(input, "input")
        options = self._options(timeout, max_retries)
        fields = _fields(model=model, instruction=instruction, input_type=input_type, dimensions=dimensions)
        return await self._run(_embed_call(texts, await self._limits_for(len(texts), options), fields), options)

    async def rerank(self, query: str, documents: Sequence[str], *, model: str | None = None,
                     top_n: int | None = None, instruction: str | None = None, return_documents: bool | None = None,
                     max_tokens_per_doc: int | None = None, timeout: Timeout | NotGiven = NOT_GIVEN,
                     max_retries: int | None = None) -> RerankResponse:
        """Rank documents by relevance to `query`, best first; see `Client.rerank`."""
        docs = _texts(documents, "documents")
        options = self._options(timeout, max_retries)
        fields = _fields(model=model, instruction=instruction, return_documents=return_documents,
                         max_tokens_per_doc=max_tokens_per_doc)
        limits = await self._limits_for(len(docs), options)
        return await self._run(_rerank_call(query, docs, limits, top_n, fields), options)

    async def score(self, queries: str | Sequence[str], documents: Sequence[str], *, model: str | None = None,
                    instruction: str | None = None, truncate_prompt_tokens: int | None = None,
                    timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> ScoreResponse:
        """Reranker scores in input order; see `Client.score`."""
        docs = _texts(documents, "documents")
        options = self._options(timeout, max_retries)
        fields = _fields(model=model, instruction=instruction, truncate_prompt_tokens=truncate_prompt_tokens)
        limits = await self._limits_for(len(docs), options)
        return await self._run(_score_call(queries, docs, limits, fields), options)

    # ------------------------------------------------------------ search
    @overload
    async def search(self, collection: str, query: str, *, top_k: int | None = None, top_n: int | None = None,
                     filter: MetadataFilter | None = None, rerank: bool | None = None,
                     instruction: str | None = None, reranker: str | None = None,
                     return_metadata: bool | None = None, exact: bool | None = None,
                     mode: SearchMode | None = None, rrf_k: int | None = None,
                     weights: HybridWeights | Mapping[str, float] | None = None,
                     timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> SearchResult: ...

    @overload
    async def search(self, collection: str, query: list[str], *, top_k: int | None = None,
                     top_n: int | None = None, filter: MetadataFilter | None = None, rerank: bool | None = None,
                     instruction: str | None = None, reranker: str | None = None,
                     return_metadata: bool | None = None, exact: bool | None = None,
                     mode: SearchMode | None = None, rrf_k: int | None = None,
                     weights: HybridWeights | Mapping[str, float] | None = None,
                     timeout: Timeout | NotGiven = NOT_GIVEN,
                     max_retries: int | None = None) -> list[SearchResult]: ...

    async def search(self, collection: str, query: str | list[str], *, top_k: int | None = None,
                     top_n: int | None = None, filter: MetadataFilter | None = None, rerank: bool | None = None,
                     instruction: str | None = None, reranker: str | None = None,
                     return_metadata: bool | None = None, exact: bool | None = None,
                     mode: SearchMode | None = None, rrf_k: int | None = None,
                     weights: HybridWeights | Mapping[str, float] | None = None,
                     timeout: Timeout | NotGiven = NOT_GIVEN,
                     max_retries: int | None = None) -> SearchResult | list[SearchResult]:
        """Search a collection; see `Client.search`."""
        options = self._options(timeout, max_retries)
        fields = _fields(top_k=top_k, top_n=top_n, filter=filter, rerank=rerank, instruction=instruction,
                         reranker=reranker, return_metadata=return_metadata, exact=exact, mode=mode,
                         rrf_k=rrf_k, weights=_weights(weights))
        count = 1 if isinstance(query, str) else len(query)
        limits = await self._limits_for(count, options)
        return await self._run(_search_call(collection, query, limits, fields), options)

    # ------------------------------------------------------------ documents
    async def upsert(self, collection: str, documents: Iterable[DocumentLike] | AsyncIterable[DocumentLike], *,
                     batch_size: int | None = None, progress: bool | None = None, total: int | None = None,
                     timeout: Timeout | NotGiven = NOT_GIVEN, max_retries: int | None = None) -> list[str]:
        """Insert or replace documents from any iterable (or async iterable); see `Client.upsert`."""
        options = self._options(timeout, max_retries)
        limits = await self._require_limits(options)
        size = min(batch_size or limits.max_documents_per_upsert, limits.max_documents_per_upsert)
        path = _collection_path(collection, "documents")
        ids: list[str] = []
        bar = _UploadProgress(_progress_bar(progress, _total_of(documents, total), f"upsert {collection}"))

        async def upload(chunk: list[dict[str, Any]]) -> UpsertResponse:
            spec = RequestSpec("POST", path, _parser(UpsertResponse), body={"documents": chunk})
            bar.sent(len(chunk))
            try:
                response = await self._send(spec, options)
            except BaseException:
                bar.failed(len(chunk))
                raise
            bar.stored(len(chunk))
            return response

        def record(response: UpsertResponse) -> None:
            ids.extend(response.ids)

        try:
            if isinstance(documents, AsyncIterable):
                prepared = (prepare_document(d) async for d in documents)
                await self._run_ordered(upload, abatched(prepared, max_count=size, max_bytes=_byte_budget(limits),
                                                         size=_upload_size), record)
            else:
                chunks = batched((prepare_document(d) for d in documents), max_count=size,
                                 max_bytes=_byte_budget(limits), size=_upload_size)
                await self._run_ordered(upload, chunks, record)
        finally:
            bar.close()
        return ids

    async def get_document(self, collection: str, id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                           max_retries: int | None = None) -> StoredDocument:
        """A stored document; `NotFoundError` when the collection or the id is unknown."""
        spec = RequestSpec("GET", _collection_path(collection, "documents", id), _parser(StoredDocument))
        return await self._send(spec, self._options(timeout, max_retries))

    async def delete_document(self, collection: str, id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                              max_retries: int | None = None) -> DeleteResponse:
        """Delete a document; it leaves search results at once."""
        spec = RequestSpec("DELETE", _collection_path(collection, "documents", id), _parser(DeleteResponse),
                           on_retried_404=lambda: DeleteResponse(id=id, deleted=True))
        return await self._send(spec, self._options(timeout, max_retries))

    async def count(self, collection: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                    max_retries: int | None = None) -> int:
        """The number of documents stored in a collection."""
        spec = RequestSpec("GET", _collection_path(collection, "count"), _parser(CountResponse))
        return (await self._send(spec, self._options(timeout, max_retries))).count

    # ------------------------------------------------------------ collections
    async def create_collection(self, name: str, *, model: str | None = None, dimensions: int | None = None,
                                index: IndexType | None = None, lexical_language: str | None = None,
                          timeout: Timeout | NotGiven = NOT_GIVEN,
                                max_retries: int | None = None) -> Collection:
        """Create a collection, or return the existing identical one; see `Client.create_collection`."""
        body = _fields(model=model, dimensions=dimensions, index=index, lexical_language=lexical_language)
        spec = RequestSpec("PUT", _collection_path(name), _parser(Collection), body=body,
                           ok=frozenset({200, 201}))
        return await self._send(spec, self._options(timeout, max_retries))

    async def get_collection(self, name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                             max_retries: int | None = None) -> Collection:
        """A collection with its model, width and document count; `NotFoundError` if unknown."""
        spec = RequestSpec("GET", _collection_path(name), _parser(Collection))
        return await self._send(spec, self._options(timeout, max_retries))

    async def list_collections(self, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                               max_retries: int | None = None) -> list[Collection]:
        """Every collection, by name."""
        spec = RequestSpec("GET", "/v1/collections", _parser(CollectionList))
        return (await self._send(spec, self._options(timeout, max_retries))).collections

    async def delete_collection(self, name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                                max_retries: int | None = None) -> CollectionDeleted:
        """Delete a collection and all its documents."""
        spec = RequestSpec("DELETE", _collection_path(name), _parser(CollectionDeleted),
                           on_retried_404=lambda: CollectionDeleted(name=name, deleted=True))
        return await self._send(spec, self._options(timeout, max_retries))

    # ------------------------------------------------------------ service
    async def health(self, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                     max_retries: int | None = None) -> HealthResponse:
        """The state of every deployment. `status` is `ok` or `unavailable` (answered 503, not raised)."""
        return await self._send(_health_spec(), self._options(timeout, max_retries))

    async def info(self, *, timeout: Timeout | NotGiven = NOT_GIVEN,
                   max_retries: int | None = None) -> InfoResponse:
        """Served models (kind, dimensions, max length), per-request limits and the server version."""
        spec = RequestSpec("GET", "/info", _parser(InfoResponse))
        info = await self._send(spec, self._options(timeout, max_retries))
        self._limits = info.limits
        return info


