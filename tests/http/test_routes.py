"""Every dialect's routes in-process: shapes checked against their response models, values against
the test double's deterministic numbers (so a wrong ranking, field or sigmoid fails)."""

import base64

import numpy as np
import pytest
from pydantic import TypeAdapter

from clients.types import (
    CohereRerankResponse,
    Collection,
    CollectionList,
    CountResponse,
    EmbeddingResponse,
    HealthResponse,
    InfoResponse,
    ModelList,
    RerankResponse,
    ScoreResponse,
    SearchResult,
    StoredDocument,
    TEIRerankResult,
    UpsertResponse,
)
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
    r = await http.post("/v1/embeddings", json={"input": [[1, 2], [3]]})
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
    assert [h.id for h in result.results] == ["a"] and result.timings.total_ms == 6.0
    assert service.search.last_job is not None and service.search.last_job.top_k == 5
    many = TypeAdapter(list[SearchResult]).validate_python(
        (await http.post("/v1/collections/docs/search", json={"query": ["cat", "dog"], "return_metadata": False})
         ).json())
    assert len(many) == 2 and many[0].results[0].metadata is None
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
