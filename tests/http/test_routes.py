"""Every dialect's routes in-process: shapes checked against their response models, values against
the test double's deterministic numbers (so a wrong ranking, field or sigmoid fails)."""

import base64
import re

import numpy as np
import pytest
from pydantic import TypeAdapter

from clients.types import (
    CohereEmbedResponse,
    CohereRerankResponse,
    Collection,
    CollectionList,
    CountResponse,
    EmbeddingResponse,
    HealthResponse,
    InfoResponse,
    ModelCard,
    ModelList,
    RerankResponse,
    ScoreResponse,
    SearchResult,
    StoredDocument,
    TEIRerankResult,
    UpsertResponse,
)
from tests.envelope import error_of
from tests.http.fake_service import DIMENSIONS, pair_logit, text_vector

TEXTS = ["alpha beta", "gamma", "delta epsilon zeta"]
DOCS = ["the cat sat", "a dog ran far away", "cat and dog", "nothing here"]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def probability(logit: float) -> float:
    return float(1 / (1 + np.exp(-logit)))


def expected_ranking(query: str, documents: list[str]) -> list[int]:
    logits = [pair_logit(query, d) for d in documents]
    return sorted(range(len(documents)), key=lambda i: -logits[i])


async def test_openai_embeddings_float_and_base64(http, service):
    r = await http.post("/v1/embeddings", json={"input": TEXTS})
    assert r.status_code == 200
    body = EmbeddingResponse.model_validate(r.json())
    assert body.model == "fake-embed" and [d.index for d in body.data] == [0, 1, 2]
    for text, item in zip(TEXTS, body.data, strict=True):
        np.testing.assert_allclose(item.embedding, unit(text_vector(text)), rtol=1e-6)
    r = await http.post("/v1/embeddings", json={"input": "gamma", "encoding_format": "base64", "dimensions": 4,
                                                "model": "fake-embed-2"})
    body = EmbeddingResponse.model_validate(r.json())
    decoded = np.frombuffer(base64.b64decode(body.data[0].embedding), dtype="<f4")
    np.testing.assert_allclose(decoded, unit(text_vector("gamma")[:4]), rtol=1e-6)
    assert body.model == "fake-embed-2" and service.embed_jobs[-1].dimensions == 4
    assert r.headers["x-compute-tokens"] == str(body.usage.total_tokens)


async def test_openai_embeddings_token_ids_and_instruction(http, service):
    r = await http.post("/v1/embeddings", json={"input": [[1, 2], [3]], "model": "fake-embed-2"})
    assert r.status_code == 200 and service.embed_jobs[-1].token_ids == [[1, 2], [3]]
    r = await http.post("/v1/embeddings", json={"input": "q", "instruction": "find", "input_type": "query"})
    assert r.status_code == 200 and service.embed_jobs[-1].instruction == "find"
    r = await http.post("/v1/embeddings", json={"input": "q", "instruction": "find", "input_type": "document"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "input_type"


async def test_model_list(http):
    body = ModelList.model_validate((await http.get("/v1/models")).json())
    assert [m.id for m in body.data] == ["fake-embed", "fake-embed-2", "fake-rerank"]


async def test_tei_embed(http, service):
    r = await http.post("/embed", json={"inputs": TEXTS[:2], "normalize": False, "truncate": False,
                                        "truncation_direction": "Left"})
    vectors = TypeAdapter(list[list[float]]).validate_python(r.json())
    np.testing.assert_allclose(vectors[1], text_vector(TEXTS[1]), rtol=1e-6)
    job = service.embed_jobs[-1]
    assert job.truncate is False and job.truncation_direction == "left" and job.normalize is False


async def test_jina_rerank_ranks_by_probability(http, service):
    r = await http.post("/v1/rerank", json={"query": "cat dog", "documents": DOCS, "top_n": 3})
    body = RerankResponse.model_validate(r.json())
    order = expected_ranking("cat dog", DOCS)
    assert [x.index for x in body.results] == order[:3]
    assert body.results[0].relevance_score == pytest.approx(probability(pair_logit("cat dog", DOCS[order[0]])))
    assert body.results[0].document is not None and body.results[0].document.text == DOCS[order[0]]
    assert body.id == r.headers["x-request-id"]
    r = await http.post("/v1/rerank", json={"query": "cat", "documents": [{"text": "cat"}], "return_documents": False})
    assert "document" not in r.json()["results"][0]


async def test_rerank_route_speaks_tei_and_jina(http):
    r = await http.post("/rerank", json={"query": "cat dog", "texts": DOCS, "raw_scores": True, "return_text": True})
    results = TypeAdapter(list[TEIRerankResult]).validate_python(r.json())
    assert [x.index for x in results] == expected_ranking("cat dog", DOCS)
    assert results[0].score == pytest.approx(pair_logit("cat dog", DOCS[results[0].index]))
    assert results[0].text == DOCS[results[0].index]
    assert "text" not in (await http.post("/rerank", json={"query": "q", "texts": ["a"]})).json()[0]
    jina = RerankResponse.model_validate((await http.post("/rerank", json={"query": "q", "documents": ["a"]})).json())
    assert jina.model == "fake-rerank"
    r = await http.post("/rerank", json={"query": "q", "texts": 5})
    assert r.status_code == 422 and r.json()["error"]["param"] == "texts"


async def test_cohere_rerank(http):
    r = await http.post("/v2/rerank", json={"query": "cat dog", "documents": DOCS, "top_n": 2})
    body = CohereRerankResponse.model_validate(r.json())
    assert [x.index for x in body.results] == expected_ranking("cat dog", DOCS)[:2]
    assert body.meta.billed_units == {"search_units": 1} and "document" not in r.json()["results"][0]


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
async def test_vllm_score_one_to_many_and_pairwise(http, service, path):
    body = ScoreResponse.model_validate((await http.post(path, json={"text_1": "cat", "text_2": DOCS})).json())
    assert [d.score for d in body.data] == pytest.approx([probability(pair_logit("cat", d)) for d in DOCS])
    assert len(service.rerank_jobs[-1].groups) == 1  # one query: one shared prefix group
    body = ScoreResponse.model_validate((await http.post(path, json={"queries": ["cat", "dog"],
                                                                     "documents": ["cat", "dog"]})).json())
    assert [d.score for d in body.data] == pytest.approx([probability(pair_logit(q, q)) for q in ("cat", "dog")])


async def test_collection_lifecycle(http, service):
    r = await http.put("/v1/collections/docs", json={"dimensions": 4})
    assert r.status_code == 201 and Collection.model_validate(r.json()).dimensions == 4
    assert (await http.put("/v1/collections/docs", json={"dimensions": 4})).status_code == 200
    r = await http.post("/v1/collections/docs/documents", json={"documents": [
        {"id": "a", "text": "the cat", "metadata": {"k": 1}}, {"text": "a dog"}]})
    assert UpsertResponse.model_validate(r.json()).ids == ["a", "gen-1"]
    assert CountResponse.model_validate((await http.get("/v1/collections/docs/count")).json()).count == 2
    listing = CollectionList.model_validate((await http.get("/v1/collections")).json())
    assert [(c.name, c.count) for c in listing.collections] == [("docs", 2)]
    doc = StoredDocument.model_validate((await http.get("/v1/collections/docs/documents/a")).json())
    assert doc.metadata == {"k": 1}
    r = await http.post("/v1/collections/docs/search", json={"query": "cat", "top_k": 5, "top_n": 1})
    result = SearchResult.model_validate(r.json())
    assert [h.id for h in result.results] == ["a"] and result.timings.total_ms == 6.0 and result.top_k == 5
    assert service.search.last_job is not None and service.search.last_job.top_k == 5
    many = TypeAdapter(list[SearchResult]).validate_python(
        (await http.post("/v1/collections/docs/search", json={"query": ["cat", "dog"], "return_metadata": False})
         ).json())
    assert len(many) == 2 and many[0].results[0].metadata is None
    assert service.search.last_job.top_k is None and many[0].top_k == 77  # the service's default, passed on
    assert (await http.delete("/v1/collections/docs/documents/a")).json() == {"id": "a", "deleted": True}
    assert (await http.get("/v1/collections/docs/documents/a")).status_code == 404
    assert (await http.delete("/v1/collections/docs")).json() == {"name": "docs", "deleted": True}
    assert (await http.get("/v1/collections/docs")).json()["error"]["code"] == "collection_not_found"


async def test_info_health_metrics(http, service):
    info = InfoResponse.model_validate((await http.get("/info")).json())
    assert [(m.id, m.kind, m.default, m.backend) for m in info.models] == [
        ("fake-embed", "embedding", True, "torch"), ("fake-embed-2", "embedding", False, "torch"),
        ("fake-rerank", "reranker", True, "torch")]
    assert info.models[0].dimensions == DIMENSIONS and info.limits.max_inputs_per_request == 8
    assert HealthResponse.model_validate((await http.get("/health")).json()).status == "ok"
    service.health_states["Reranker"] = "RayActorError: died"
    r = await http.get("/health")
    assert r.status_code == 503 and r.json()["deployments"]["Reranker"] == "RayActorError: died"
    await http.post("/v1/embeddings", json={"input": "x"})
    text = (await http.get("/metrics")).text
    assert 'qwen3_search_requests_total{route="/v1/embeddings",status="200"}' in text


async def test_every_request_body_has_a_schema(http):
    spec = (await http.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in ("post", "put"):
                assert "requestBody" in operation, f"{method.upper()} {path} has no request schema"


# ---------------------------------------------------------------- issue 15: the clients people have
async def test_token_ids_are_refused_unless_the_model_accepts_them(http, service):
    """LangChain's default sends OpenAI's tiktoken ids: refused with the setting to change, nothing embedded."""
    jobs = len(service.embed_jobs)
    for body in ({"input": [[15339, 1917]]}, {"input": [15339, 1917]}):
        r = await http.post("/v1/embeddings", json=body)
        error = r.json()["error"]
        assert r.status_code == 422 and error["code"] == "token_ids_not_accepted" and error["param"] == "input"
        assert "check_embedding_ctx_length=False" in error["message"] and "accept_token_ids" in error["message"]
    r = await http.post("/embed", json={"inputs": [[1, 2]]})
    assert error_of(r, 422)["param"] == "inputs"
    assert len(service.embed_jobs) == jobs
    assert (await http.post("/embed", json={"inputs": [[1, 2]], "model": "fake-embed-2"})).status_code == 200
    info = InfoResponse.model_validate((await http.get("/info")).json())
    assert [m.accept_token_ids for m in info.models] == [False, True, None]


async def test_openai_model_card(http):
    r = await http.get("/v1/models/fake-rerank")
    assert r.status_code == 200 and ModelCard.model_validate(r.json()).id == "fake-rerank"
    assert (await http.get("/v1/models//models/fake-embed")).json()["id"] == "fake-embed"  # by source, a path
    r = await http.get("/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


async def test_cohere_embed_types_roles_and_width(http, service):
    r = await http.post("/v2/embed", json={"texts": TEXTS, "input_type": "search_document", "model": "fake-embed",
                                           "embedding_types": ["float", "int8", "uint8", "binary", "ubinary",
                                                               "base64"]})
    assert r.status_code == 200
    body = CohereEmbedResponse.model_validate(r.json())
    expected = np.stack([unit(text_vector(t)) for t in TEXTS])
    np.testing.assert_allclose(body.embeddings.float_, expected, rtol=1e-6)
    np.testing.assert_array_equal(body.embeddings.int8, np.rint(expected * 127))
    np.testing.assert_array_equal(body.embeddings.uint8, np.rint(expected * 127) + 128)
    bits = np.packbits(expected > 0, axis=1)
    np.testing.assert_array_equal(body.embeddings.ubinary, bits)
    np.testing.assert_array_equal(body.embeddings.binary, bits.astype(int) - 128)
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(body.embeddings.base64[0]), "<f4"), expected[0])
    assert body.texts == TEXTS and body.meta.billed_units["input_tokens"] == sum(len(t.split()) + 1 for t in TEXTS)
    assert service.embed_jobs[-1].input_type == "document"
    r = await http.post("/v2/embed", json={"texts": ["q"], "input_type": "search_query", "output_dimension": 4,
                                           "truncate": "START"})
    job = service.embed_jobs[-1]
    assert r.status_code == 200 and set(r.json()["embeddings"]) == {"float"}
    assert (job.input_type, job.dimensions, job.truncation_direction) == ("query", 4, "left")
    r = await http.post("/v2/embed", json={"texts": ["q"], "input_type": "image"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "input_type"


async def test_tei_root_tokenize_and_decode(http, service):
    r = await http.post("/", json={"inputs": TEXTS})
    assert r.status_code == 200
    np.testing.assert_allclose(r.json(), [unit(text_vector(t)) for t in TEXTS], rtol=1e-6)
    r = await http.post("/", json={"query": "cat", "texts": DOCS})
    ranks = TypeAdapter(list[TEIRerankResult]).validate_python(r.json())
    assert [x.index for x in ranks] == expected_ranking("cat", DOCS)
    r = await http.post("/tokenize", json={"inputs": "the  cat", "add_special_tokens": True})
    assert r.json() == [[{"id": 3, "text": "the", "special": False, "start": 0, "stop": 3},
                         {"id": 3, "text": "cat", "special": False, "start": 5, "stop": 8},
                         {"id": 0, "text": "<eot>", "special": True, "start": None, "stop": None}]]
    r = await http.post("/tokenize", json={"inputs": ["a", "bb"], "add_special_tokens": False, "model": "fake-rerank"})
    assert [[t["id"] for t in row] for row in r.json()] == [[1], [2]]
    assert (await http.post("/decode", json={"ids": [1, 2]})).json() == ["x xx"]
    assert (await http.post("/decode", json={"ids": [[1], [0, 2]], "skip_special_tokens": False})).json() == [
        "x", " xx"]
    r = await http.post("/tokenize", json={"inputs": ["w"] * 9})
    assert error_of(r, 413)["param"] == "inputs"
    r = await http.post("/decode", json={"ids": [1], "model": "nope"})
    assert "fake-rerank" in error_of(r, 404)["message"]


async def test_info_has_tei_fields_for_the_default_embedder(http):
    body = (await http.get("/info")).json()
    assert body["model_id"] == "fake-embed" and body["max_client_batch_size"] == 8
    assert body["model_type"] == {"embedding": {"pooling": "mean"}} and body["max_input_length"] == 512
    for key in ("sha", "docker_label", "model_sha", "max_concurrent_requests", "max_batch_tokens",
                "max_batch_requests", "tokenization_workers"):
        assert key in body  # tei-client requires each key, null or not


async def test_docs_are_served_from_here_and_open(service):
    import httpx

    from deployments.http import create_app

    service.keys = frozenset({"k"})
    app = create_app(lambda: service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css|png))["']""", html)
            assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
            for asset in assets:
                assert (await client.get(asset)).status_code == 200  # no key needed, like the page
            assert "cdn." not in html and "fonts.googleapis" not in html
        assert (await client.get("/v1/models")).status_code == 401


async def test_openapi_lists_the_errors_really_sent(http):
    spec = (await http.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path != "/health":
                assert "401" in responses, f"{method} {path}"
            # TEI's routes answer TEI's error body (tei-client parses it), every other route the envelope
            body = "TEIErrorResponse" if path in ("/", "/embed", "/tokenize", "/decode") or path.startswith(
                "/tei/") else "ErrorResponse"
            for status, response in responses.items():
                if int(status) >= 400 and path != "/health":
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": f"#/components/schemas/{body}"}, f"{method} {path} {status}"
    assert {"/tei/{model}/info", "/tei/{model}/", "/tei/{model}/rerank"} <= set(spec["paths"])
    embeddings = spec["paths"]["/v1/embeddings"]["post"]["responses"]
    assert {"400", "401", "404", "413", "422", "429", "503"} <= set(embeddings)
    assert "409" in spec["paths"]["/v1/collections/{name}"]["put"]["responses"]


async def test_search_modes_and_their_validation(http, service):
    assert (await http.put("/v1/collections/docs", json={"lexical_language": "english"})).status_code == 201
    assert Collection.model_validate((await http.get("/v1/collections/docs")).json()).lexical_language == "english"
    await http.post("/v1/collections/docs/documents", json={"documents": [{"id": "a", "text": "part XQ-7731"}]})
    for mode, ranks in (("dense", {"dense": 1}), ("lexical", {"lexical": 1}), ("hybrid", {"dense": 2, "lexical": 1})):
        r = await http.post("/v1/collections/docs/search", json={"query": "XQ-7731", "mode": mode})
        assert r.status_code == 200, r.text
        (hit,) = SearchResult.model_validate(r.json()).results
        assert hit.retrievers == ranks and (hit.lexical_score is None) == (mode == "dense")
        assert (hit.embedding_score is None) == (mode == "lexical") and (hit.fused_score is None) == (mode != "hybrid")
        assert service.search.last_job is not None and service.search.last_job.mode == mode
    r = await http.post("/v1/collections/docs/search", json={"query": "x", "mode": "hybrid", "rrf_k": 10,
                                                             "weights": {"lexical": 2}})
    assert r.status_code == 200
    job = service.search.last_job
    assert job is not None and job.rrf_k == 10 and job.weights == {"dense": 1.0, "lexical": 2.0}
    assert (await http.post("/v1/collections/docs/search", json={"query": "x"})).status_code == 200
    assert service.search.last_job.mode == "dense" and service.search.last_job.weights is None  # the default

    bad = [({"mode": "sparse"}, "mode"),
           ({"mode": "hybrid", "weights": {"dense": -1}}, "weights.dense"),
           ({"mode": "hybrid", "weights": {"dense": 0, "lexical": 0}}, "weights"),
           ({"mode": "hybrid", "weights": {"bm25": 1}}, "weights.bm25"),
           ({"mode": "hybrid", "rrf_k": 0}, "rrf_k"),
           ({"weights": {"dense": 1}}, "weights"),  # fusion settings without hybrid mode
           ({"mode": "lexical", "rrf_k": 30}, "rrf_k")]
    for fields, param in bad:
        r = await http.post("/v1/collections/docs/search", json={"query": "x", **fields})
        assert r.status_code == 422, (fields, r.text)
        assert r.json()["error"]["param"] == param, (fields, r.json())
    r = await http.put("/v1/collections/other", json={"lexical_language": "Not A Language!"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "lexical_language"
