"""Hardening (issue 14): what a careless or hostile client sends is a 4xx in the envelope, never a 5xx,
and cannot undo a delete, leave a stale index, or lock the service.

In-process over the production code from the HTTP middleware down to SQLite and the model engines
(`local_stack.py`: Ray's transport replaced by a pickling `LocalHandle`). The stack runs with
`auto_truncate: false` and a 128-token model limit, so over-long inputs are refused, not cut.
"""

import asyncio
import json
import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from deployments.config import LimitsConfig
from deployments.errors import InvalidRequest
from deployments.index.errors import CollectionNotFound, InvalidIndexRequest
from deployments.index.filters import parse_filter
from deployments.index.vectors import VectorSet
from deployments.jobs import QueueFullError, Refusal
from deployments.serving.sharded_index import shard_of
from tests.conftest import default_tokenizer_source
from tests.envelope import error_of
from tests.http.local_stack import build_local_stack

LONE = "\ud800"
LIMIT_BYTES = 1 << 20


@pytest.fixture(scope="module")
def stack(model_factory, tmp_path_factory):
    tokenizer = default_tokenizer_source()
    return build_local_stack(
        embedder_dir=model_factory("embedding", tokenizer), reranker_dir=model_factory("reranker", tokenizer),
        storage=tmp_path_factory.mktemp("hardening-index"), max_length=128,
        limits=LimitsConfig(auto_truncate=False, max_request_bytes=LIMIT_BYTES, body_timeout_s=1.0))


@pytest.fixture
async def http(stack):
    async with stack.client() as client:
        yield client


def raw(value: Any) -> bytes:
    """JSON as a client writes it: `json.dumps` spells a lone surrogate as the escape `\\ud800`."""
    return json.dumps(value).encode("ascii")


async def post(http, path: str, body: Any, method: str = "POST"):
    content = body if isinstance(body, bytes) else raw(body)
    return await http.request(method, path, content=content, headers={"content-type": "application/json"})




async def new_collection(http, index: str = "auto") -> str:
    name = f"h-{uuid.uuid4().hex[:10]}"
    assert (await post(http, f"/v1/collections/{name}", {"index": index}, method="PUT")).status_code == 201
    return name


# ------------------------------------------------------------------ 1. lone surrogates, every route
SURROGATE_CASES = [
    ("/v1/embeddings", {"input": LONE}, "input"),
    ("/v1/embeddings", {"input": ["ok", "a" + LONE]}, "input"),
    ("/v1/embeddings", {"input": "x", "instruction": LONE}, "instruction"),
    ("/v1/embeddings", {"input": "x", "model": LONE}, "model"),
    ("/embed", {"inputs": [LONE]}, "inputs"),
    ("/v1/rerank", {"query": LONE, "documents": ["d"]}, "query"),
    ("/v1/rerank", {"query": "q", "documents": [{"text": LONE}]}, "documents"),
    ("/v1/rerank", {"query": "q", "documents": ["d"], "instruction": LONE}, "instruction"),
    ("/v2/rerank", {"query": "q", "documents": [LONE]}, "documents"),
    ("/rerank", {"query": "q", "texts": [LONE]}, "texts"),
    ("/rerank", {"query": LONE, "documents": ["d"]}, "query"),
    ("/score", {"text_1": LONE, "text_2": "d"}, "text_1"),
    ("/v1/score", {"queries": "q", "documents": ["d", LONE]}, "documents"),
    ("{collection}/documents", {"documents": [{"text": LONE}]}, "documents.0.text"),
    ("{collection}/documents", {"documents": [{"id": LONE, "text": "t"}]}, "documents.0.id"),
    ("{collection}/documents", {"documents": [{"text": "t", "metadata": {LONE: 1}}]}, "documents.0.metadata"),
    ("{collection}/search", {"query": LONE}, "query"),
    ("{collection}/search", {"query": ["fine", LONE]}, "query"),
    ("{collection}/search", {"query": "q", "instruction": LONE}, "instruction"),
    ("{collection}/search", {"query": "q", "filter": {"k": LONE}}, "filter"),
]


@pytest.mark.parametrize(("path", "body", "param"), SURROGATE_CASES)
async def test_a_lone_surrogate_is_422_naming_the_field(http, path, body, param):
    if path.startswith("{collection}"):
        path = path.replace("{collection}", f"/v1/collections/{await new_collection(http)}")
    error = error_of(await post(http, path, body), 422)
    # pydantic refuses a length-checked field itself ("unable to parse raw data as a unicode string")
    assert error["type"] == "invalid_request_error" and ("surrogate" in error["message"]
                                                         or "unicode" in error["message"])
    assert error["param"] is not None and error["param"].startswith(param), error


async def test_a_lone_surrogate_in_a_collection_model_is_422(http):
    error = error_of(await post(http, "/v1/collections/any", {"model": LONE}, method="PUT"), 422)
    assert error["param"] == "model"


async def test_surrogate_pairs_are_text_and_accepted(http):
    # json.dumps writes an emoji as a surrogate pair escape; that is valid Unicode and must be served.
    response = await post(http, "/v1/embeddings", {"input": "smile \U0001F600"})
    assert b"\\ud83d\\ude00" in raw({"input": "\U0001F600"}) and response.status_code == 200, response.text


# ------------------------------------------------------------------ 2. the metadata policy
POISON = [
    ('{"x": 18446744073709551616}', "64-bit"),
    ('{"x": -9223372036854775809}', "64-bit"),
    ('{"x": 9223372036854775808}', "64-bit"),
    ('{"x": "a\\ud800"}', "surrogate"),
    ('{"x": {"y": ["\\udfff"]}}', "surrogate"),
    ('{"x": NaN}', "finite"),
    ('{"x": Infinity}', "finite"),
    ('{"x": "nul\\u0000"}', "NUL"),
    ("{" + '"k": {' * 16 + "}" * 16 + "}", "levels"),
    ('{"k": ' + "[" * 500 + "]" * 500 + "}", "levels"),
    ('{"x": "' + "y" * 70000 + '"}', "bytes"),
]


@pytest.mark.parametrize(("metadata", "fragment"), POISON, ids=[f"{i}-{f}" for i, (_, f) in enumerate(POISON)])
async def test_poison_metadata_is_refused_before_it_is_stored(http, metadata, fragment):
    name = await new_collection(http)
    body = ('{"documents": [{"id": "p", "text": "poison", "metadata": ' + metadata + "}]}").encode()
    error = error_of(await post(http, f"/v1/collections/{name}/documents", body), 422)
    assert error["param"] == "documents.0.metadata" and fragment in error["message"], error
    assert (await http.get(f"/v1/collections/{name}")).json()["count"] == 0


async def test_metadata_within_the_policy_round_trips_through_search(http):
    name = await new_collection(http)
    deep: dict = {"leaf": True}
    for _ in range(14):  # 16 levels with the document's object and the "nested" key
        deep = {"k": deep}
    metadata = {"max": 2**63 - 1, "min": -(2**63), "f": 1.5, "s": "café \U0001F600", "none": None,
                "list": [1, "two", {"three": 3.0}], "nested": deep}
    assert (await post(http, f"/v1/collections/{name}/documents",
                       {"documents": [{"id": "ok", "text": "fine text", "metadata": metadata}]})).status_code == 200
    assert (await http.get(f"/v1/collections/{name}/documents/ok")).json()["metadata"] == metadata
    hits = (await post(http, f"/v1/collections/{name}/search", {"query": "fine", "top_k": 5, "top_n": 5}))
    assert hits.status_code == 200 and hits.json()["results"][0]["metadata"] == metadata


async def test_a_poison_document_already_in_storage_is_still_served(stack, http):
    # Written by an older version, before the policy: reading or finding it must not be a 500.
    name = await new_collection(http)
    record = {"name": name, "model": "tiny-qwen", "dimensions": 64, "index": "auto"}
    vector = np.ones(64, dtype=np.float32) / 8.0
    stack.shards[shard_of("old", 2)]._upsert(record, [("old", "old text", {"big": 2**70, "s": LONE}, vector)])
    got = await http.get(f"/v1/collections/{name}/documents/old")
    assert got.status_code == 200 and got.json()["metadata"]["big"] == 2**70
    assert (await post(http, f"/v1/collections/{name}/search", {"query": "old", "rerank": False})).status_code == 200


# ------------------------------------------------------------------ 3. JSON nested too deeply
POST_ROUTES = ["/v1/embeddings", "/embed", "/v1/rerank", "/v2/rerank", "/rerank", "/score", "/v1/score"]


@pytest.mark.parametrize("shape", ["object", "array"])
async def test_json_nested_100k_deep_is_400_on_every_route(http, shape):
    name = await new_collection(http)
    deep = ('{"a":' * 100_000 + "1" + "}" * 100_000) if shape == "object" else ("[" * 100_000 + "]" * 100_000)
    routes = [("POST", p) for p in POST_ROUTES] + [
        ("POST", f"/v1/collections/{name}/documents"), ("POST", f"/v1/collections/{name}/search"),
        ("PUT", f"/v1/collections/{name}-2")]
    for method, path in routes:
        error = error_of(await post(http, path, deep.encode(), method=method), 400)
        assert error["code"] == "invalid_json" and "deep" in error["message"], (path, error)


async def test_json_nested_900_deep_in_a_typed_field_is_422(http):
    deep = "[" * 900 + "1" + "]" * 900
    for path, body in (("/v1/embeddings", '{"input": ' + deep + "}"), ("/rerank", '{"query": "q", "texts": ' + deep
                                                                        + "}")):
        assert (await post(http, path, body.encode())).status_code == 422


# ------------------------------------------------------------------ 4. duplicate ids in one upload
@pytest.mark.parametrize("index", ["exact", "hnsw"])
async def test_duplicate_ids_are_refused_before_anything_is_written(http, index):
    name = await new_collection(http, index)
    url = f"/v1/collections/{name}/documents"
    twice = {"documents": [{"id": "d", "text": "first", "metadata": {"k": 1}}, {"id": "e", "text": "other"},
                           {"id": "d", "text": "second"}]}
    error = error_of(await post(http, url, twice), 422)
    assert "'d'" in error["message"] and error["param"] == "documents"
    assert (await http.get(f"/v1/collections/{name}")).json()["count"] == 0
    once = await post(http, url, {"documents": [{"id": "d", "text": "first", "metadata": {"k": 1}}]})
    assert once.json() == {"ids": ["d"], "count": 1}
    error_of(await post(http, url, twice), 422)  # a retry is refused the same way, and changes nothing
    assert (await http.get(f"/v1/collections/{name}")).json()["count"] == 1
    found = await post(http, f"/v1/collections/{name}/search", {"query": "first", "filter": {"k": 1}, "rerank": False})
    assert [h["id"] for h in found.json()["results"]] == ["d"]  # the metadata index is not stale


async def test_every_layer_below_the_wire_refuses_duplicates_too(stack, http):
    name = await new_collection(http, "hnsw")
    documents = [("x", "one", None), ("x", "two", None)]
    with pytest.raises(InvalidIndexRequest, match="'x'"):  # the pipeline, for every backend
        await stack.service.search.upsert(name, documents, True)
    record = {"name": name, "model": "tiny-qwen", "dimensions": 64, "index": "hnsw"}
    vector = np.ones(64, dtype=np.float32) / 8.0
    shard = stack.shards[0]
    with pytest.raises(InvalidIndexRequest):  # the shard itself, before its store
        shard._upsert(record, [("x", "one", None, vector), ("x", "two", None, vector)])
    assert shard.store.count(name) == 0


def test_the_vector_set_keeps_the_last_vector_of_a_repeated_label():
    vectors = VectorSet(4, index_type="hnsw")
    first, last = np.array([1, 0, 0, 0], np.float32), np.array([0, 1, 0, 0], np.float32)
    vectors.upsert(np.array([3]), np.array([[0, 0, 1, 0]], np.float32))  # the HNSW graph exists from here
    vectors.upsert(np.array([7, 7]), np.stack([first, last]))  # usearch alone: "Duplicate keys not allowed"
    assert len(vectors) == 2 and vectors.uses_hnsw
    labels, scores = vectors.search(last[None], 1)[0]
    assert labels.tolist() == [7] and scores[0] == pytest.approx(1.0)


async def test_a_failure_after_the_commit_rebuilds_the_shard_from_its_store(stack, http, monkeypatch):
    name = await new_collection(http, "hnsw")
    record = {"name": name, "model": "tiny-qwen", "dimensions": 64, "index": "hnsw"}
    shard = stack.shards[0]
    vector = np.ones(64, dtype=np.float32) / 8.0
    collection = shard._collections[name]

    def broken(*args: Any) -> None:
        raise RuntimeError("usearch: Duplicate keys not allowed")

    monkeypatch.setattr(collection.vectors, "upsert", broken)
    with pytest.raises(RuntimeError):
        shard._upsert(record, [("m", "meta", {"k": "v"}, vector)])
    rebuilt = shard._collections[name]
    assert rebuilt is not collection and len(rebuilt.vectors) == shard.store.count(name) == 1
    assert len(rebuilt.metadata.matching(parse_filter({"k": "v"}))) == 1


# ------------------------------------------------------------------ 5. a delete is final
async def test_a_delete_during_an_upload_is_final(stack, http, monkeypatch):
    name = await new_collection(http)
    embedding_started, release = asyncio.Event(), asyncio.Event()
    embed = stack.embedder.embed

    async def slow_embed(job: Any) -> Any:
        embedding_started.set()
        await release.wait()
        return await embed(job)

    monkeypatch.setattr(stack.embedder, "embed", slow_embed)
    documents = {"documents": [{"id": f"doc-{i}", "text": f"text {i}"} for i in range(40)]}  # both shards
    upload = asyncio.create_task(post(http, f"/v1/collections/{name}/documents", documents))
    await asyncio.wait_for(embedding_started.wait(), 30)
    assert (await http.delete(f"/v1/collections/{name}")).status_code == 200
    release.set()
    assert error_of(await upload, 404)["code"] == "collection_not_found"
    error_of(await http.get(f"/v1/collections/{name}"), 404)
    assert name not in [c["name"] for c in (await http.get("/v1/collections")).json()["collections"]]
    for shard in stack.shards:  # nothing came back on any shard
        assert name not in shard._collections and name not in [r.name for r in shard.store.collections()]


async def test_a_shard_never_creates_a_collection_during_an_upload(stack):
    record = {"name": "never-created", "model": "tiny-qwen", "dimensions": 64, "index": "auto"}
    answer = await stack.shards[1].upsert(record, [("a", "t", None, np.ones(64, np.float32) / 8.0)])
    assert isinstance(answer, Refusal) and isinstance(answer.error, CollectionNotFound)
    assert "never-created" not in [r.name for r in stack.shards[1].store.collections()]


# ------------------------------------------------------------------ 6. authentication fails closed
def _concrete(path: str) -> str:
    return path.replace("{name}", "c1").replace("{doc_id:path}", "d1").replace("{doc_id}", "d1")


async def test_keys_fail_closed_when_the_key_file_is_emptied_or_missing(stack, tmp_path, monkeypatch):
    import deployments.serving.ingress as ingress
    from deployments.http.middleware import OPEN_PATHS

    keys = tmp_path / "api-keys"
    keys.write_text("# comment\nk1\n")
    monkeypatch.setenv("QWEN3_SEARCH_TEST_KEYS_FILE_2", str(keys))
    monkeypatch.setattr(ingress, "_KEY_REFRESH_S", 0.0)
    service, app = stack.another_app(api_keys_env="QWEN3_SEARCH_TEST_KEYS_2",
                                     api_keys_file_env="QWEN3_SEARCH_TEST_KEYS_FILE_2")
    routes = [(method.upper(), _concrete(path)) for path, operations in app.openapi()["paths"].items()
              for method in operations if path not in OPEN_PATHS]
    assert len(routes) >= 17

    async with stack.client(app=app) as client:
        refused = await client.get("/info")
        assert error_of(refused, 401)["type"] == "authentication_error"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get("/info", headers={"x-api-key": "k1"})).status_code == 200
        assert (await client.get("/info", headers={"Authorization": "Bearer k1"})).status_code == 200
        assert (await client.get("/health")).status_code == 200

        for broken, why in ((lambda: keys.write_text("\n# none left\n"), "holds no key"),
                            (keys.unlink, "cannot be read")):
            broken()
            for method, path in routes:
                response = await client.request(method, path, headers={"Authorization": "Bearer k1"})
                assert error_of(response, 401)["type"] == "authentication_error", (method, path)
            health = await client.get("/health")
            assert health.status_code == 503 and why in health.json()["deployments"]["auth"], health.text
            assert (await client.get("/openapi.json")).status_code == 200  # documentation stays open

        keys.write_text("k2\n")
        assert (await client.get("/info", headers={"x-api-key": "k2"})).status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_openapi_documents_both_key_headers(http):
    schema = (await http.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key",
                                 "description": schemes["apiKey"]["description"]}
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/health"]["get"]["security"] == []
    assert "security" not in schema["paths"]["/v1/embeddings"]["post"]  # the global requirement applies


# ------------------------------------------------------------------ 9. bodies: too large, too slow, reserved headers
async def _call(app: Any, *, path: str, headers: list[tuple[bytes, bytes]], receive: Any) -> tuple[int, dict, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"local"), (b"content-type", b"application/json"), *headers],
             "client": ("127.0.0.1", 1), "server": ("local", 80)}
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


async def test_a_40_mib_chunked_body_is_413_as_soon_as_the_limit_is_passed(stack):
    chunk, pulled = b"x" * 65536, 0

    async def receive() -> dict:
        nonlocal pulled
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < 40 << 20}

    status, headers, body = await _call(stack.app, path="/v1/embeddings", headers=[], receive=receive)
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
    assert headers["connection"] == "close"
    assert pulled <= LIMIT_BYTES + len(chunk)  # cut when the limit was passed, not after 40 MiB

    async def never() -> dict:
        raise AssertionError("a declared Content-Length over the limit is refused before any read")

    status, _, _ = await _call(stack.app, path="/v1/embeddings", headers=[(b"content-length", b"41943040")],
                               receive=never)
    assert status == 413


async def test_a_trickling_body_is_cut_with_408(stack):
    async def receive() -> dict:
        await asyncio.sleep(0.3)
        return {"type": "http.request", "body": b" ", "more_body": True}

    status, headers, body = await asyncio.wait_for(
        _call(stack.app, path="/v1/embeddings", headers=[], receive=receive), 10)
    assert status == 408 and json.loads(body)["error"]["type"] == "timeout_error"
    assert headers["connection"] == "close"


@pytest.mark.parametrize(("header", "value"), [("x-request-timeout-seconds", "0"),
                                               ("x-request-disconnect-disabled", "?1")])
async def test_ray_control_headers_that_reach_the_ingress_are_refused(http, header, value):
    response = await http.post("/v1/embeddings", json={"input": "x"}, headers={header: value})
    error = error_of(response, 400)
    assert error["code"] == "reserved_header" and error["param"] == header


# ------------------------------------------------------------------ 10. full queues and truncation
async def test_a_full_model_queue_inside_the_pipeline_is_429(stack, http, monkeypatch):
    name = await new_collection(http)

    async def full(job: Any) -> Refusal:
        return Refusal(QueueFullError("embedder is busy", retry_after_s=3.0))

    monkeypatch.setattr(stack.embedder, "embed", full)
    for path, body in (("documents", {"documents": [{"text": "t"}]}), ("search", {"query": "q"})):
        response = await post(http, f"/v1/collections/{name}/{path}", body)
        assert error_of(response, 429)["code"] == "queue_full" and response.headers["retry-after"] == "3"


async def test_backpressure_inside_the_pipeline_is_a_refusal_not_a_failure(stack, http, monkeypatch):
    from ray.serve.exceptions import BackPressureError

    from deployments.serving.pipeline import SearchPipeline

    name = await new_collection(http)
    pipeline: SearchPipeline = stack.service_args["pipeline"].target

    async def raises(*args: Any, **kwargs: Any) -> Any:
        raise BackPressureError(num_queued_requests=64, max_queued_requests=64)

    monkeypatch.setattr(pipeline, "_embed", raises)
    answer = await pipeline.search(name, __import__("deployments.jobs", fromlist=["SearchJob"]).SearchJob(["q"]))
    assert isinstance(answer, Refusal) and isinstance(answer.error, QueueFullError)


async def test_the_ingress_refuses_a_model_call_past_what_the_deployment_admits(stack, monkeypatch):
    from dataclasses import replace

    models = [replace(m, admits=1, retry_after_s=4.0) for m in stack.service_args["models"]]
    _, app = stack.another_app(models=models)
    started, release = asyncio.Event(), asyncio.Event()
    embed = stack.embedder.embed

    async def held(job: Any) -> Any:
        started.set()
        await release.wait()
        return await embed(job)

    monkeypatch.setattr(stack.embedder, "embed", held)
    async with stack.client(app=app) as client:
        first = asyncio.create_task(client.post("/v1/embeddings", json={"input": "one"}))
        await asyncio.wait_for(started.wait(), 30)
        second = await client.post("/v1/embeddings", json={"input": "two"})  # answered while the first waits
        assert error_of(second, 429)["code"] == "queue_full" and second.headers["retry-after"] == "4"
        release.set()
        assert (await first).status_code == 200


def test_what_a_deployment_admits_per_caller():
    from deployments.config import DeploymentOptions

    assert DeploymentOptions(max_ongoing_requests=16, max_queued_requests=64, num_replicas=2).admits() == 96
    assert DeploymentOptions(max_ongoing_requests=16, max_queued_requests=64,
                             autoscaling_config={"min_replicas": 1, "max_replicas": 3}).admits() == 112
    assert DeploymentOptions(max_queued_requests=-1).admits() is None


LONG = " ".join(["word"] * 400)  # far over the 128-token limit of this stack's models


@pytest.mark.parametrize(("path", "body"), [
    ("{collection}/documents", {"documents": [{"text": LONG}]}),
    ("{collection}/search", {"query": LONG}),
    ("/v2/rerank", {"query": "q", "documents": ["short", LONG]}),
    ("/v1/rerank", {"query": "q", "documents": [LONG]}),
    ("/score", {"text_1": "q", "text_2": [LONG]}),
    ("/v1/embeddings", {"input": LONG}),
])
async def test_auto_truncate_false_refuses_over_long_inputs_on_every_route(http, path, body):
    if path.startswith("{collection}"):
        path = path.replace("{collection}", f"/v1/collections/{await new_collection(http)}")
    assert error_of(await post(http, path, body), 413)["code"] == "input_too_long"


async def test_cohere_max_tokens_per_doc_is_an_explicit_cut(http):
    response = await post(http, "/v2/rerank", {"query": "q", "documents": [LONG], "max_tokens_per_doc": 32})
    assert response.status_code == 200, response.text
    assert (await post(http, "/v1/rerank", {"query": "q", "documents": [LONG], "truncate": True})).status_code == 200


def test_validation_errors_name_the_field_not_the_union_member():
    from deployments.http.app import validation_error

    error = validation_error([
        {"type": "string_type", "loc": ("body", "documents", 0, "str"), "msg": "Input should be a valid string"},
        {"type": "text_invalid", "loc": ("body", "documents", 0, "RerankDocument", "text"), "msg": "text holds"},
    ])
    assert isinstance(error, InvalidRequest) and error.param == "documents.0.text"


async def test_open_paths_stay_open_under_a_route_prefix(stack, monkeypatch):
    """Serve mounts an app under its route_prefix as ASGI's root_path, and `path` keeps the prefix."""
    monkeypatch.setenv("QWEN3_SEARCH_TEST_KEYS_3", "k1")
    _, app = stack.another_app(api_keys_env="QWEN3_SEARCH_TEST_KEYS_3")
    transport = httpx.ASGITransport(app=app, root_path="/pg")
    async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
        assert (await client.get("/pg/health")).status_code == 200
        assert (await client.get("/pg/openapi.json")).status_code == 200
        assert error_of(await client.get("/pg/info"), 401)["type"] == "authentication_error"
        assert (await client.get("/pg/info", headers={"x-api-key": "k1"})).status_code == 200
