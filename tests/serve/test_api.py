"""Every route of the real Ray Serve application, over HTTP, against the in-process engine."""

import asyncio
import base64
import re

import numpy as np
import pytest

from clients.types import decode_base64_embedding
from deployments.engine import DEFAULT_INSTRUCTION
from tests.conftest import mixed_texts
from tests.envelope import error_of

DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Bananas are rich in potassium.",
    "The stock market fell sharply on Monday.",
]


@pytest.fixture(scope="module")
def http(serve_app):
    with serve_app.client() as client:
        yield client


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample of Prometheus text, 0 when absent."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- service routes
def test_health_is_open_and_reports_every_deployment(serve_app):
    import httpx

    response = httpx.get(f"{serve_app.url}/health", timeout=30)  # no API key
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["deployments"]) == {"Embedder", "Embedder-2", "Embedder-3", "Embedder-4", "Reranker",
                                        "SearchPipeline", "IndexShard-0", "IndexShard-1"}
    assert set(body["deployments"].values()) == {"ok"}


def test_info_lists_models_dimensions_and_limits(http, serve_app):
    body = http.get("/info").json()
    models = {m["id"]: m for m in body["models"]}
    assert models["tiny-qwen"]["kind"] == "embedding" and models["tiny-qwen"]["default"] is True
    assert models["tiny-qwen"]["dimensions"] == serve_app.engine("tiny-qwen").dimensions == 64
    assert models["all-MiniLM-L6-v2"]["dimensions"] == 384 and models["all-MiniLM-L6-v2"]["max_length"] == 256
    assert models["all-MiniLM-L6-v2"]["pooling"] == "mean"
    assert models["tiny-reranker"]["kind"] == "reranker"
    assert models["tiny-reranker"]["default_instruction"] == DEFAULT_INSTRUCTION
    assert body["limits"] == {"max_inputs_per_request": 64, "max_documents_per_request": 50,
                              "max_request_bytes": 1 << 20, "max_documents_per_upsert": 200, "max_top_k": 200,
                              "max_top_n": 50, "max_queries_per_search": 64, "auto_truncate": True,
                              "body_timeout_s": 60.0}
    assert re.match(r"^\d+\.\d+\.\d+", body["version"])
    listed = {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert listed == set(models)


def test_openapi_docs_are_served(serve_app):
    import httpx

    spec = httpx.get(f"{serve_app.url}/openapi.json", timeout=30).json()
    for path in ("/v1/embeddings", "/embed", "/v1/rerank", "/v2/rerank", "/rerank", "/score", "/health", "/info",
                 "/metrics"):
        assert path in spec["paths"]
    assert httpx.get(f"{serve_app.url}/docs", timeout=30).status_code == 200


# ---------------------------------------------------------------- embeddings
def test_openai_embeddings_equal_the_engine_in_input_order(http, serve_app):
    texts = mixed_texts(12, seed=31, max_words=120)
    response = http.post("/v1/embeddings", json={"input": texts, "model": "tiny-qwen"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "tiny-qwen"
    assert [d["index"] for d in body["data"]] == list(range(12))
    vectors = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    engine = serve_app.engine("tiny-qwen")
    np.testing.assert_allclose(vectors, engine.embed(texts), atol=1e-5)
    tokens = sum(engine.count_tokens(texts))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert int(response.headers["x-compute-tokens"]) == tokens


def test_base64_decodes_to_the_float_output(http):
    texts = ["first text", "a second, longer text about gravity"]
    floats = http.post("/v1/embeddings", json={"input": texts}).json()["data"]
    encoded = http.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"}).json()["data"]
    for f, e in zip(floats, encoded, strict=True):
        assert isinstance(e["embedding"], str)
        raw = np.frombuffer(base64.b64decode(e["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(raw, np.array(f["embedding"], dtype=np.float32))
        assert decode_base64_embedding(e["embedding"]) == raw.tolist()


def test_token_id_inputs_equal_text_inputs(http, serve_app):
    """tiny-tokens serves tiny-qwen's weights with accept_token_ids on; tiny-qwen keeps the default (off)."""
    engine = serve_app.engine("tiny-qwen")
    texts = ["hello world", "token ids in, vectors out"]
    ids = [row[:-1] for row in engine.tokenize(texts)]  # without the end-of-text token: the server adds it
    from_ids = http.post("/v1/embeddings", json={"input": ids, "model": "tiny-tokens"}).json()["data"]
    from_one = http.post("/v1/embeddings", json={"input": ids[0], "model": "tiny-tokens"}).json()["data"]
    refused = http.post("/v1/embeddings", json={"input": ids})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "token_ids_not_accepted"
    np.testing.assert_allclose([d["embedding"] for d in from_ids], engine.embed(texts), atol=1e-5)
    np.testing.assert_allclose(from_one[0]["embedding"], engine.embed(texts[:1])[0], atol=1e-5)


def test_instruction_and_input_type_change_the_query_vector(http, serve_app):
    engine = serve_app.engine("tiny-qwen")
    query = ["What is the capital of China?"]

    def embed(**extra):
        return np.array(http.post("/v1/embeddings", json={"input": query, **extra}).json()["data"][0]["embedding"])

    plain, as_document = embed(), embed(input_type="document")
    default_query = embed(input_type="query")
    custom = embed(instruction="Find the city named in the question")
    np.testing.assert_allclose(plain, as_document, atol=1e-6)
    np.testing.assert_allclose(default_query, engine.embed(query, instruction=DEFAULT_INSTRUCTION)[0], atol=1e-5)
    np.testing.assert_allclose(custom, engine.embed(query, instruction="Find the city named in the question")[0],
                               atol=1e-5)
    assert float(plain @ default_query) < 0.999 and float(default_query @ custom) < 0.999


@pytest.mark.parametrize("dimensions", [32, 48])
def test_matryoshka_dimensions_over_http(http, serve_app, dimensions):
    data = http.post("/v1/embeddings", json={"input": DOCUMENTS, "dimensions": dimensions}).json()["data"]
    vectors = np.array([d["embedding"] for d in data])
    assert vectors.shape == (4, dimensions)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, serve_app.engine("tiny-qwen").embed(DOCUMENTS, dimensions=dimensions),
                               atol=1e-5)


def test_a_second_model_side_by_side_with_real_semantics(http, serve_app):
    query = http.post("/v1/embeddings", json={"input": "What is the capital of China?",
                                              "model": "all-MiniLM-L6-v2"}).json()
    docs = http.post("/v1/embeddings", json={"input": DOCUMENTS, "model": "all-MiniLM-L6-v2"}).json()
    assert query["model"] == "all-MiniLM-L6-v2" and len(query["data"][0]["embedding"]) == 384
    scores = np.array([d["embedding"] for d in docs["data"]]) @ np.array(query["data"][0]["embedding"])
    assert int(np.argmax(scores)) == 0
    np.testing.assert_allclose([d["embedding"] for d in docs["data"]],
                               serve_app.engine("all-MiniLM-L6-v2").embed(DOCUMENTS), atol=1e-5)


def test_tei_embed(http, serve_app):
    engine = serve_app.engine("tiny-qwen")
    vectors = http.post("/embed", json={"inputs": DOCUMENTS}).json()
    np.testing.assert_allclose(vectors, engine.embed(DOCUMENTS), atol=1e-5)
    single = http.post("/embed", json={"inputs": "just one"}).json()
    assert len(single) == 1 and len(single[0]) == 64
    raw = np.array(http.post("/embed", json={"inputs": DOCUMENTS, "normalize": False}).json())
    np.testing.assert_allclose(raw, engine.embed(DOCUMENTS, normalize=False), rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    query = np.array(http.post("/embed", json={"inputs": ["capital?"], "prompt_name": "query"}).json())
    np.testing.assert_allclose(query, engine.embed(["capital?"], prompt_name="query"), atol=1e-5)
    small = np.array(http.post("/embed", json={"inputs": DOCUMENTS, "dimensions": 32}).json())
    assert small.shape == (4, 32)
    long_text = " ".join(["gravity"] * 9000)
    refused = http.post("/embed", json={"inputs": [long_text], "truncate": False})
    assert "more than the maximum of 8192" in error_of(refused, 413)["message"]
    left = http.post("/embed", json={"inputs": [long_text + " end"], "truncate": True,
                                     "truncation_direction": "Left"}).json()
    np.testing.assert_allclose(left, engine.embed([long_text + " end"], truncation_direction="left"), atol=1e-5)


# ---------------------------------------------------------------- rerank and score
def test_jina_rerank_scores_equal_the_engine_best_first(http, serve_app):
    engine = serve_app.engine("tiny-reranker")
    documents = mixed_texts(10, seed=41, max_words=80)
    query = "Which protein drives cancer cell growth?"
    body = http.post("/v1/rerank", json={"query": query, "documents": documents, "model": "tiny-reranker"}).json()
    expected = engine.score(query, documents)
    assert body["model"] == "tiny-reranker" and len(body["results"]) == 10
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    for result in body["results"]:
        assert result["relevance_score"] == pytest.approx(float(expected[result["index"]]), abs=1e-5)
        assert result["document"]["text"] == documents[result["index"]]
    assert body["usage"]["total_tokens"] == sum(engine.count_tokens(query, documents))
    top = http.post("/v1/rerank", json={"query": query, "documents": documents, "top_n": 3,
                                        "return_documents": False}).json()["results"]
    assert [r["index"] for r in top] == [r["index"] for r in body["results"][:3]]
    assert all("document" not in r for r in top)
    as_objects = http.post("/v1/rerank", json={"query": query, "documents": [{"text": d} for d in documents]})
    assert as_objects.json()["results"] == body["results"]


def test_rerank_instruction_is_applied(http, serve_app):
    engine = serve_app.engine("tiny-reranker")
    instruction = "Judge whether the abstract supports the claim"
    body = http.post("/v1/rerank", json={"query": "gravity bends light", "documents": DOCUMENTS,
                                         "instruction": instruction}).json()
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    with_instruction = engine.score("gravity bends light", DOCUMENTS, instruction=instruction)
    default = engine.score("gravity bends light", DOCUMENTS)
    np.testing.assert_allclose([got[i] for i in range(4)], with_instruction, atol=1e-5)
    assert np.abs(with_instruction - default).max() > 1e-4


def test_cohere_v2_rerank(http, serve_app):
    engine = serve_app.engine("tiny-reranker")
    long_docs = [" ".join(["potassium"] * 200), " ".join(["gravity"] * 200)]
    body = http.post("/v2/rerank", json={"model": "tiny-reranker", "query": "q", "documents": long_docs,
                                         "top_n": 2, "max_tokens_per_doc": 16}).json()
    assert body["id"] and body["meta"]["api_version"]["version"] == "2"
    expected = engine.score("q", long_docs, max_tokens_per_document=16)
    assert {r["index"]: pytest.approx(r["relevance_score"], abs=1e-5) for r in body["results"]} == {
        i: float(expected[i]) for i in range(2)}
    assert body["meta"]["tokens"]["input_tokens"] == sum(engine.count_tokens("q", long_docs,
                                                                             max_tokens_per_document=16))
    assert set(body["results"][0]) == {"index", "relevance_score"}


def test_rerank_route_speaks_tei_and_jina(http, serve_app):
    engine = serve_app.engine("tiny-reranker")
    tei = http.post("/rerank", json={"query": "capital", "texts": DOCUMENTS, "return_text": True}).json()
    assert isinstance(tei, list) and [r["text"] for r in tei] == [DOCUMENTS[r["index"]] for r in tei]
    expected = engine.score("capital", DOCUMENTS)
    assert [r["score"] for r in tei] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)
    raw = http.post("/rerank", json={"query": "capital", "texts": DOCUMENTS, "raw_scores": True}).json()
    logits = engine.score("capital", DOCUMENTS, raw=True)
    assert {r["index"]: r["score"] for r in raw} == pytest.approx({i: float(v) for i, v in enumerate(logits)},
                                                                  abs=1e-4)
    jina = http.post("/rerank", json={"query": "capital", "documents": DOCUMENTS}).json()
    assert [r["index"] for r in jina["results"]] == [r["index"] for r in tei]
    neither = http.post("/rerank", json={"query": "capital"})
    assert neither.status_code == 422 and "texts" in neither.json()["error"]["message"]


def test_vllm_score_one_to_many_and_pairwise(http, serve_app):
    engine = serve_app.engine("tiny-reranker")
    one = http.post("/score", json={"text_1": "capital", "text_2": DOCUMENTS}).json()
    assert [d["index"] for d in one["data"]] == [0, 1, 2, 3]
    np.testing.assert_allclose([d["score"] for d in one["data"]], engine.score("capital", DOCUMENTS), atol=1e-5)
    queries = ["capital", "gravity", "capital", "fruit"]
    pairwise = http.post("/v1/score", json={"queries": queries, "documents": DOCUMENTS}).json()
    expected = [engine.score(q, [d])[0] for q, d in zip(queries, DOCUMENTS, strict=True)]
    np.testing.assert_allclose([d["score"] for d in pairwise["data"]], expected, atol=1e-5)
    assert pairwise["usage"]["total_tokens"] > 0 and pairwise["object"] == "list"
    mismatch = http.post("/score", json={"text_1": ["a", "b"], "text_2": ["x", "y", "z"]})
    assert mismatch.status_code == 422 and "give one query" in mismatch.json()["error"]["message"]


# ---------------------------------------------------------------- headers, batching, metrics
def test_request_id_and_timing_headers(http):
    response = http.post("/v1/embeddings", json={"input": ["timing"]}, headers={"x-request-id": "my-id-123"})
    assert response.headers["x-request-id"] == "my-id-123"
    for header in ("x-compute-time", "x-queue-time", "x-inference-time"):
        assert float(response.headers[header]) >= 0
    assert float(response.headers["x-inference-time"]) > 0
    assert float(response.headers["x-compute-time"]) >= float(response.headers["x-inference-time"])
    assert http.get("/info").headers.get("x-request-id")
    error = http.post("/v1/embeddings", json={"input": []})
    assert error.status_code == 422 and error.headers.get("x-request-id")


async def test_concurrent_callers_are_batched_together(serve_app):
    engine = serve_app.engine("tiny-qwen")
    texts = [f"concurrent caller number {i} asks about gravity" for i in range(24)]
    async with serve_app.async_client() as client:
        before = metric_value((await client.get("/metrics")).text, "qwen3_search_batch_size_count", model="tiny-qwen")
        responses = await asyncio.gather(*(client.post("/v1/embeddings", json={"input": [t]}) for t in texts))
        after_text = (await client.get("/metrics")).text
    for text, response in zip(texts, responses, strict=True):
        assert response.status_code == 200
        np.testing.assert_allclose(response.json()["data"][0]["embedding"], engine.embed([text])[0], atol=1e-5)
    batches = metric_value(after_text, "qwen3_search_batch_size_count", model="tiny-qwen") - before
    assert 1 <= batches < len(texts), f"{len(texts)} requests ran in {batches} batches"


def test_a_large_request_is_split_across_micro_batches(http, serve_app):
    texts = mixed_texts(20, seed=5, min_words=10, max_words=30)
    before = metric_value(http.get("/metrics").text, "qwen3_search_batch_size_count", model="tiny-tokens")
    response = http.post("/v1/embeddings", json={"input": texts, "model": "tiny-tokens"})
    assert response.status_code == 200
    np.testing.assert_allclose([d["embedding"] for d in response.json()["data"]],
                               serve_app.engine("tiny-qwen").embed(texts), atol=1e-5)
    after = metric_value(http.get("/metrics").text, "qwen3_search_batch_size_count", model="tiny-tokens")
    assert after - before >= 3  # max_batch_tokens=64 on that deployment


def test_metrics_count_tokens_per_model(http, serve_app):
    texts = ["count these tokens", "and these"]
    before = metric_value(http.get("/metrics").text, "qwen3_search_tokens_total", model="tiny-qwen")
    http.post("/v1/embeddings", json={"input": texts})
    text = http.get("/metrics").text
    after = metric_value(text, "qwen3_search_tokens_total", model="tiny-qwen")
    assert after - before == sum(serve_app.engine("tiny-qwen").count_tokens(texts))
    for name in ("qwen3_search_requests_total", "qwen3_search_request_duration_seconds_bucket",
                 "qwen3_search_queue_seconds_bucket", "qwen3_search_in_flight_requests",
                 "qwen3_search_replica_queued_tokens"):
        assert name in text
    assert metric_value(text, "qwen3_search_requests_total", route="/v1/embeddings", status="200") >= 1


# ---------------------------------------------------------------- errors


def test_api_keys(serve_app):
    import httpx

    url = serve_app.url + "/v1/embeddings"
    missing = error_of(httpx.post(url, json={"input": "x"}, timeout=30), 401)
    assert missing["type"] == "authentication_error"
    error_of(httpx.post(url, json={"input": "x"}, headers={"Authorization": "Bearer wrong"}, timeout=30), 401)
    assert httpx.post(url, json={"input": "x"}, headers={"Authorization": "Bearer test-key-2"},
                      timeout=30).status_code == 200
    assert httpx.post(url, json={"input": "x"}, headers={"x-api-key": "test-key-1"}, timeout=30).status_code == 200
    error_of(httpx.get(serve_app.url + "/metrics", timeout=30), 401)


def test_unknown_model_and_route(http):
    error = error_of(http.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"}), 404)
    assert error["param"] == "model" and "tiny-qwen" in error["message"] and "all-MiniLM-L6-v2" in error["message"]
    error = error_of(http.post("/v1/rerank", json={"query": "q", "documents": ["d"], "model": "tiny-qwen"}), 404)
    assert "tiny-reranker" in error["message"]
    error_of(http.get("/v1/nothing-here"), 404)
    error_of(http.get("/v1/embeddings"), 405)


def test_limits_answer_413(http):
    error = error_of(http.post("/v1/embeddings", json={"input": ["x"] * 65}), 413)
    assert "65 inputs" in error["message"] and "64" in error["message"]
    error_of(http.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 51}), 413)
    error_of(http.post("/score", json={"text_1": "q", "text_2": ["d"] * 51}), 413)
    error = error_of(http.post("/v1/embeddings", json={"input": "x" * (1 << 20)}), 413)
    assert "bytes" in error["message"]
    long_doc = " ".join(["word"] * 9000)
    error = error_of(http.post("/v1/rerank", json={"query": "q", "documents": ["ok", long_doc], "truncate": False}),
                     413)
    assert error["code"] == "input_too_long"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/embeddings", {"input": ""}, "input"),
        ("/v1/embeddings", {"input": []}, "input"),
        ("/v1/embeddings", {"input": ["ok", "  "]}, "input"),
        ("/v1/embeddings", {"input": ["ok", 3]}, "input"),
        ("/v1/embeddings", {"input": [[1, 2], [10**9]]}, "input"),
        ("/v1/embeddings", {"input": "x", "dimensions": 16}, "dimensions"),
        ("/v1/embeddings", {"input": "x", "dimensions": 65}, "dimensions"),
        ("/v1/embeddings", {"input": "x", "dimension": 32}, "dimension"),
        ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ("/v1/embeddings", {"input": "x", "instruction": "  "}, "instruction"),
        ("/v1/embeddings", {"input": "x", "instruction": "a", "input_type": "document"}, "input_type"),
        ("/v1/embeddings", {"input": "x", "model": "all-MiniLM-L6-v2", "instruction": "find"}, "instruction"),
        ("/embed", {"inputs": ["x"], "prompt_name": "nope"}, "prompt_name"),
        ("/v1/rerank", {"query": "", "documents": ["d"]}, "query"),
        ("/v1/rerank", {"query": "q", "documents": []}, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["d"], "top_n": 0}, "top_n"),
        ("/v2/rerank", {"query": "q", "documents": ["d"], "max_tokens_per_doc": 0}, "max_tokens_per_doc"),
        ("/rerank", {"query": "q", "texts": "not a list"}, "texts"),
        ("/score", {"text_1": "q"}, None),
    ],
)
def test_invalid_input_is_422_with_the_field_named(http, path, body, param):
    error = error_of(http.post(path, json=body), 422)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] is not None and error["param"].split(".")[0] == param


def test_malformed_json_is_400(http):
    for path in ("/v1/embeddings", "/rerank", "/score"):
        error = error_of(http.post(path, content=b'{"input": [', headers={"content-type": "application/json"}), 400)
        assert error["code"] == "invalid_json"


def test_no_client_mistake_produces_a_500(http):
    bodies = [None, [], [1, 2], "text", 12, {"input": None}, {"input": {"a": 1}}, {"query": 3, "documents": [1]},
              {"query": "q", "documents": [None]}, {"text_1": [], "text_2": []}, {"texts": [], "query": "q"},
              {"inputs": [[-1]]}, {"input": [[]]}, {"input": [True, False]}, {"query": "q", "documents": ["d"] * 3,
                                                                                "top_n": 10**12}]
    for path in ("/v1/embeddings", "/embed", "/v1/rerank", "/v2/rerank", "/rerank", "/score", "/v1/score"):
        for body in bodies:
            response = http.post(path, json=body)
            assert 200 <= response.status_code < 500, (path, body, response.status_code, response.text)
            if response.status_code >= 400:
                assert "error" in response.json()


async def test_full_token_queue_answers_429_with_retry_after(serve_app):
    # tiny-tokens admits 300 queued tokens and runs 64-token batches: a second large request
    # arriving while the first is still queued is refused.
    texts = mixed_texts(40, seed=9, min_words=20, max_words=40)
    async with serve_app.async_client() as client:
        responses = await asyncio.gather(*(client.post("/v1/embeddings", json={"input": texts, "model": "tiny-tokens"})
                                           for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "3"
    assert error_of(refused, 429)["type"] == "rate_limit_error"


async def test_ray_backpressure_answers_429_with_retry_after(serve_app):
    # tiny-backpressure takes one request at a time and queues one more per caller.
    texts = mixed_texts(40, seed=10, min_words=40, max_words=60)
    async with serve_app.async_client() as client:
        responses = await asyncio.gather(*(
            client.post("/v1/embeddings", json={"input": texts, "model": "tiny-backpressure"}) for _ in range(8)))
    statuses = [r.status_code for r in responses]
    assert 200 in statuses and 429 in statuses, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "2"
    assert "capacity" in error_of(refused, 429)["message"]


# ---------------------------------------------------------------- the OpenAI SDK, unchanged
def test_openai_sdk_calls_embeddings_unchanged(serve_app):
    import openai

    client = openai.OpenAI(base_url=f"{serve_app.url}/v1", api_key=serve_app.api_key, max_retries=0)
    texts = ["What is the capital of China?", "The capital of China is Beijing."]
    engine = serve_app.engine("tiny-qwen")
    default = client.embeddings.create(model="tiny-qwen", input=texts)  # the SDK asks for base64 by default
    as_float = client.embeddings.create(model="tiny-qwen", input=texts, encoding_format="float")
    np.testing.assert_allclose([d.embedding for d in default.data], engine.embed(texts), atol=1e-5)
    np.testing.assert_allclose([d.embedding for d in as_float.data], engine.embed(texts), atol=1e-5)
    assert default.usage.prompt_tokens == sum(engine.count_tokens(texts))
    small = client.embeddings.create(model="tiny-qwen", input=texts, dimensions=32)
    assert len(small.data[0].embedding) == 32
    extra = client.embeddings.create(model="tiny-qwen", input=texts[:1], extra_body={"input_type": "query"})
    np.testing.assert_allclose(extra.data[0].embedding, engine.embed(texts[:1], prompt_name="query")[0], atol=1e-5)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{serve_app.url}/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="tiny-qwen", input="x")


# ---------------------------------------------------------------- a replica dies (kept last in this module)
def test_a_dead_replica_gives_503_then_the_service_recovers(serve_app, http):
    import time

    import httpx
    import ray

    names = [a for a in ray.util.list_named_actors(all_namespaces=True) if "#Reranker#" in a["name"]]
    assert len(names) == 1, names
    ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=True)

    # ray.kill only asks for the kill: poll until /health (2 s per deployment in these tests) sees the
    # replica gone, which it must before the replacement has loaded its model.
    deadline = time.monotonic() + 30
    while (health := httpx.get(f"{serve_app.url}/health", timeout=60)).status_code == 200:
        assert time.monotonic() < deadline, "/health still says 200 30 s after the Reranker replica was killed"
        time.sleep(0.2)
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable" and health.json()["deployments"]["Reranker"] != "ok"
    assert health.json()["deployments"]["Embedder"] == "ok"
    during = http.post("/v1/rerank", json={"query": "q", "documents": ["d"]})
    assert during.status_code in (200, 503), during.text  # never a 500
    if during.status_code == 503:
        assert during.json()["error"]["type"] == "service_unavailable_error"

    deadline = time.monotonic() + 120
    while httpx.get(f"{serve_app.url}/health", timeout=60).status_code != 200:
        assert time.monotonic() < deadline, "the Reranker was not replaced within 120 s"
        time.sleep(1)
    assert http.post("/v1/rerank", json={"query": "q", "documents": ["d"]}).status_code == 200
