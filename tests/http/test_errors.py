"""Every row of the error table, in-process: the status, type and code the README documents, the
envelope, and the headers that go with them (Retry-After, WWW-Authenticate)."""

import pytest

from deployments.engine.errors import InputTooLongError, InvalidInputError, ModelLoadError
from deployments.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MalformedHTTP,
    MalformedRequest,
    ModelFailed,
    RequestTimeout,
    RequestTooLarge,
    ReservedHeader,
    ServiceUnavailable,
    TokenIdsRefused,
    UnknownModel,
)
from deployments.http.errors import ERROR_TABLE, MethodNotAllowed, RouteNotFound, map_exception
from deployments.index.errors import (
    CollectionConflict,
    CollectionNotFound,
    DocumentNotFound,
    InvalidIndexRequest,
    StorageLayoutError,
    StorageSetupError,
    StorageUnavailable,
)
from deployments.jobs import QueueFullError

# The documented contract (README "Errors"), written out here rather than read from the table.
DOCUMENTED = [
    (MalformedRequest("bad json"), 400, "invalid_request_error", "invalid_json"),
    (AuthenticationFailed("no key"), 401, "authentication_error", "invalid_api_key"),
    (RouteNotFound("no route"), 404, "not_found_error", "route_not_found"),
    (UnknownModel("no such model", param="model"), 404, "not_found_error", "model_not_found"),
    (CollectionNotFound("no collection", param="name"), 404, "not_found_error", "collection_not_found"),
    (DocumentNotFound("no document", param="id"), 404, "not_found_error", "document_not_found"),
    (MethodNotAllowed("no method"), 405, "invalid_request_error", "method_not_allowed"),
    (CollectionConflict("differs", param="name"), 409, "conflict_error", "collection_conflict"),
    (RequestTooLarge("too many", param="input"), 413, "invalid_request_error", "request_too_large"),
    (InputTooLongError("too long", param="input"), 413, "invalid_request_error", "input_too_long"),
    (InvalidInputError("empty text", param="input"), 422, "invalid_request_error", "invalid_input"),
    (InvalidIndexRequest("bad filter", param="filter"), 422, "invalid_request_error", "invalid_input"),
    (InvalidRequest("nonsense", param="top_n"), 422, "invalid_request_error", "invalid_request"),
    (TokenIdsRefused("ids, not text", param="input"), 422, "invalid_request_error", "token_ids_not_accepted"),
    (QueueFullError("busy", retry_after_s=3), 429, "rate_limit_error", "queue_full"),
    (ModelFailed("failed to start: no weights"), 503, "service_unavailable_error", "model_failed"),
    (ServiceUnavailable("down"), 503, "service_unavailable_error", "unavailable"),
    (ModelLoadError("not loaded"), 503, "service_unavailable_error", "model_not_loaded"),
    (StorageLayoutError("shards differ"), 503, "service_unavailable_error", "storage_layout"),
    (StorageSetupError("CREATE EXTENSION vector needs a superuser"), 503, "service_unavailable_error",
     "storage_setup"),
    (StorageUnavailable("the database does not answer", retry_after_s=4), 503, "service_unavailable_error",
     "storage_unavailable"),
    (MalformedHTTP("not HTTP"), 400, "invalid_request_error", "invalid_http"),
    (RequestTimeout("the body trickled"), 408, "timeout_error", "request_timeout"),
    (ReservedHeader("x-request-timeout-seconds is Ray Serve's"), 400, "invalid_request_error", "reserved_header"),
]


def test_every_table_row_is_documented():
    documented = {type(error) for error, *_ in DOCUMENTED}
    assert {error_type for error_type, _ in ERROR_TABLE} <= documented


@pytest.mark.parametrize(("error", "status", "type_", "code"), DOCUMENTED, ids=lambda v: type(v).__name__)
async def test_a_model_error_leaves_as_its_documented_status(http, service, error, status, type_, code):
    service.raise_next = error
    r = await http.post("/v1/embeddings", json={"input": "hello"})
    assert r.status_code == status
    body = r.json()
    assert body["error"]["type"] == type_ and body["error"]["code"] == code
    assert body["error"]["message"] == error.message
    assert body["error"]["param"] == getattr(error, "param", None)
    assert r.headers["content-type"] == "application/json"
    if status == 429:
        assert r.headers["retry-after"] == "3"
    if isinstance(error, StorageUnavailable) and not isinstance(error, StorageSetupError):
        assert r.headers["retry-after"] == "4"  # the error's own estimate wins over the row's default
    if code == "model_failed":  # permanent: no retry helps
        assert "retry-after" not in r.headers
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_a_search_error_leaves_as_its_status(http, service):
    service.search.raise_next = CollectionConflict("bound to another model", param="name")
    r = await http.put("/v1/collections/c")
    assert r.status_code == 409 and r.json()["error"]["param"] == "name"


async def test_an_unexpected_error_is_a_500_that_hides_internals(http, service):
    service.raise_next = RuntimeError("secret stack detail")
    r = await http.post("/v1/embeddings", json={"input": "hello"}, headers={"x-request-id": "req-42"})
    assert r.status_code == 500
    assert "secret" not in r.text and "req-42" in r.json()["error"]["message"]


async def test_framework_errors_are_mapped_to_the_envelope(http):
    r = await http.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = await http.post("/v1/embeddings", json={"input": "x", "dimension": 3})
    assert r.status_code == 422 and r.json()["error"]["param"] == "dimension"
    r = await http.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "route_not_found"
    r = await http.get("/v1/embeddings")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_limits_are_413(http):
    r = await http.post("/v1/embeddings", json={"input": ["x"] * 9})
    assert r.status_code == 413 and r.json()["error"]["param"] == "input"
    r = await http.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 7})
    assert r.status_code == 413 and r.json()["error"]["param"] == "documents"
    r = await http.post("/v1/embeddings", json={"input": "x" * 5000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


async def test_keys_are_checked_and_fail_closed(http, service):
    service.keys = frozenset({"k1", "k2"})
    assert (await http.get("/info")).status_code == 401
    assert (await http.get("/info", headers={"authorization": "Bearer k2"})).status_code == 200
    assert (await http.get("/info", headers={"x-api-key": "k1"})).status_code == 200
    assert (await http.get("/info", headers={"x-api-key": "k3"})).status_code == 401
    assert (await http.get("/health")).status_code == 200  # open for probes
    service.keys = frozenset()  # a configured source that is empty: everything refused
    r = await http.get("/info", headers={"authorization": "Bearer k1"})
    assert r.status_code == 401 and "empty" in r.json()["error"]["message"]


def test_ray_errors_map_once_ray_is_loaded():
    from ray.serve.exceptions import BackPressureError

    mapping = map_exception(BackPressureError(num_queued_requests=3, max_queued_requests=2))
    assert (mapping.status, mapping.code) == (429, "queue_full")
