"""Collections, documents and search end to end over HTTP (real Serve app: 2 index shards, HNSW
above 40 documents per shard, the real MiniLM for semantics, tiny Qwen3 models for the code path)."""

import asyncio
import uuid

import pytest

from deployments.serving.sharded_index import shard_of
from tests.conftest import mixed_texts

FACTS = [
    ("beijing", "The capital of China is Beijing.", {"topic": "geography", "lang": "en"}),
    ("paris", "Paris is the capital and largest city of France.", {"topic": "geography", "lang": "en"}),
    ("gravity", "Gravity is a force that attracts two bodies towards each other.", {"topic": "physics", "lang": "en"}),
    ("photosynthesis", "Plants turn sunlight, water and carbon dioxide into sugar by photosynthesis.",
     {"topic": "biology", "lang": "en"}),
    ("banana", "Bananas are rich in potassium.", {"topic": "food", "lang": "en", "tags": ["fruit", "yellow"]}),
    ("stocks", "The stock market fell sharply on Monday.", {"topic": "finance", "lang": "en"}),
    ("pomme", "La pomme est un fruit.", {"topic": "food", "lang": "fr", "tags": ["fruit"]}),
]


@pytest.fixture(scope="module")
def http(serve_app):
    with serve_app.client() as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def upload(http, name: str, documents: list[dict]) -> list[str]:
    response = http.post(f"/v1/collections/{name}/documents", json={"documents": documents})
    assert response.status_code == 200, response.text
    return response.json()["ids"]


@pytest.fixture(scope="module")
def facts(http):
    name = unique("facts")
    assert http.put(f"/v1/collections/{name}", json={"model": "all-MiniLM-L6-v2"}).status_code == 201
    upload(http, name, [{"id": i, "text": t, "metadata": m} for i, t, m in FACTS])
    return name


# ---------------------------------------------------------------- collections
def test_collection_lifecycle(http):
    name = unique("life")
    created = http.put(f"/v1/collections/{name}")
    assert created.status_code == 201
    body = created.json()
    assert body["model"] == "tiny-qwen" and body["dimensions"] == 64 and body["count"] == 0
    assert http.put(f"/v1/collections/{name}", json={}).status_code == 200  # identical: idempotent
    conflict = http.put(f"/v1/collections/{name}", json={"dimensions": 32})
    assert conflict.status_code == 409 and conflict.json()["error"]["type"] == "conflict_error"
    assert name in [c["name"] for c in http.get("/v1/collections").json()["collections"]]
    upload(http, name, [{"text": "one"}, {"text": "two"}])
    assert http.get(f"/v1/collections/{name}").json()["count"] == 2
    assert http.get(f"/v1/collections/{name}/count").json() == {"collection": name, "count": 2}
    assert http.delete(f"/v1/collections/{name}").json() == {"name": name, "deleted": True}
    assert http.get(f"/v1/collections/{name}").status_code == 404
    assert http.delete(f"/v1/collections/{name}").status_code == 404
    assert name not in [c["name"] for c in http.get("/v1/collections").json()["collections"]]
    # The name is free again, with another width.
    assert http.put(f"/v1/collections/{name}", json={"dimensions": 32}).json()["dimensions"] == 32
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/collections/bad%20name", {}, 422, "collection name"),
        ("/v1/collections/x", {"dimensions": 16}, 422, "dimensions must be from 32 to 64"),
        ("/v1/collections/x", {"dimensions": 65}, 422, "dimensions must be from 32 to 64"),
        ("/v1/collections/x", {"model": "nope"}, 404, "not served here"),
        ("/v1/collections/x", {"model": "tiny-reranker"}, 404, "not served here"),
        ("/v1/collections/x", {"index": "ivf"}, 422, "index"),
        ("/v1/collections/x", {"dimension": 32}, 422, "dimension"),
    ],
)
def test_bad_collections_are_refused(http, path, body, status, fragment):
    response = http.put(path, json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


def test_unknown_collection_is_404_everywhere(http):
    for method, path, body in [
        ("GET", "/v1/collections/none-such", None),
        ("GET", "/v1/collections/none-such/count", None),
        ("POST", "/v1/collections/none-such/documents", {"documents": [{"text": "x"}]}),
        ("GET", "/v1/collections/none-such/documents/a", None),
        ("DELETE", "/v1/collections/none-such/documents/a", None),
        ("POST", "/v1/collections/none-such/search", {"query": "x"}),
    ]:
        response = http.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "collection_not_found"


# ---------------------------------------------------------------- documents
def test_documents_round_trip_with_ids_metadata_and_slashes(http, facts):
    stored = http.get(f"/v1/collections/{facts}/documents/banana").json()
    assert stored == {"id": "banana", "text": FACTS[4][1], "metadata": FACTS[4][2]}
    name = unique("ids")
    http.put(f"/v1/collections/{name}")
    ids = upload(http, name, [{"id": "a/b c", "text": "slash and space"}, {"text": "assigned id"}])
    assert ids[0] == "a/b c" and len(ids[1]) == 32
    assert http.get(f"/v1/collections/{name}/documents/a%2Fb%20c").json()["text"] == "slash and space"
    assert http.get(f"/v1/collections/{name}/documents/{ids[1]}").json()["metadata"] is None
    missing = http.get(f"/v1/collections/{name}/documents/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "document_not_found"


def test_upload_is_idempotent_and_updates_replace(http):
    name = unique("idem")
    http.put(f"/v1/collections/{name}")
    documents = [{"id": f"d{i}", "text": t} for i, t in enumerate(mixed_texts(20, seed=1))]
    upload(http, name, documents)
    upload(http, name, documents)  # a retried upload
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == 20
    upload(http, name, [{"id": "d3", "text": "replaced text about gravity", "metadata": {"v": 2}}])
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == 20
    assert http.get(f"/v1/collections/{name}/documents/d3").json() == {
        "id": "d3", "text": "replaced text about gravity", "metadata": {"v": 2}}
    hits = http.post(f"/v1/collections/{name}/search", json={"query": "replaced text about gravity", "rerank": False,
                                                             "top_k": 20, "top_n": 20}).json()["results"]
    assert [h["text"] for h in hits].count("replaced text about gravity") == 1
    assert all(h["text"] != documents[3]["text"] for h in hits)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"documents": []}, 422, "documents"),
        ({"documents": [{"text": "  "}]}, 422, "text"),
        ({"documents": [{"id": "", "text": "x"}]}, 422, "id"),
        ({"documents": [{"text": "x", "metadata": [1, 2]}]}, 422, "metadata"),
        ({"documents": [{"text": "x", "vector": [1.0]}]}, 422, "vector"),
        ({"documents": [{"text": f"doc {i}"} for i in range(201)]}, 413, "201 documents"),
    ],
)
def test_bad_uploads(http, facts, body, status, fragment):
    response = http.post(f"/v1/collections/{facts}/documents", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


# ---------------------------------------------------------------- search
def test_search_without_rerank_finds_the_answer_with_exact_embedding_scores(http, serve_app, facts):
    body = http.post(f"/v1/collections/{facts}/search",
                     json={"query": "What is the capital of China?", "rerank": False, "top_n": 3}).json()
    results = body["results"]
    assert [r["id"] for r in results][0] == "beijing" and len(results) == 3
    assert all(r["score"] == r["embedding_score"] for r in results)
    engine = serve_app.engine("all-MiniLM-L6-v2")
    query = engine.embed(["What is the capital of China?"])[0]
    for result in results:
        assert result["embedding_score"] == pytest.approx(float(engine.embed([result["text"]])[0] @ query), abs=1e-5)
    assert set(body["timings"]) == {"embed_ms", "search_ms", "rerank_ms", "total_ms"}
    assert body["timings"]["total_ms"] >= body["timings"]["embed_ms"]


def test_lexical_and_hybrid_modes_find_an_exact_code_over_real_http(http, facts):
    """A part code the MiniLM embedding cannot tell from its neighbours: lexical and hybrid find it, the
    hits say which retriever found them, filters hold, a bad mode is a 422 naming the field."""
    name = unique("parts")
    assert http.put(f"/v1/collections/{name}", json={"model": "all-MiniLM-L6-v2",
                                                     "lexical_language": "english"}).status_code == 201
    upload(http, name, [{"id": f"p{i}", "text": f"Replacement seal kit for the pump, part code XQ-{7700 + i}",
                         "metadata": {"odd": i % 2 == 1}} for i in range(60)])
    query = {"query": "seal kit XQ-7731", "top_k": 10, "top_n": 10, "rerank": False}
    lexical = http.post(f"/v1/collections/{name}/search", json={**query, "mode": "lexical"}).json()["results"]
    assert lexical[0]["id"] == "p31" and lexical[0]["retrievers"] == {"lexical": 1}
    assert lexical[0]["embedding_score"] is None and lexical[0]["lexical_score"] > lexical[1]["lexical_score"]
    hybrid = http.post(f"/v1/collections/{name}/search", json={**query, "mode": "hybrid",
                                                                "filter": {"odd": True}}).json()["results"]
    by_id = {h["id"]: h for h in hybrid}
    assert "p31" in by_id and by_id["p31"]["retrievers"]["lexical"] == 1 and by_id["p31"]["fused_score"] > 0
    assert all(h["metadata"] == {"odd": True} for h in hybrid)
    reranked = http.post(f"/v1/collections/{name}/search", json={"query": "XQ-7731", "mode": "hybrid",
                                                                  "top_k": 10, "top_n": 3}).json()["results"]
    assert len(reranked) == 3 and all(h["retrievers"] for h in reranked)
    bad = http.post(f"/v1/collections/{name}/search", json={"query": "x", "mode": "bm25"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "mode"


def test_rerank_scores_are_the_rerankers_and_order_the_results(http, serve_app, facts):
    body = http.post(f"/v1/collections/{facts}/search",
                     json={"query": "capital city", "top_k": 5, "top_n": 3, "instruction": "Find the capital"})
    results = body.json()["results"]
    candidates = http.post(f"/v1/collections/{facts}/search", json={
        "query": "capital city", "top_k": 5, "top_n": 5, "rerank": False}).json()["results"]
    reranker = serve_app.engine("tiny-reranker")
    expected = dict(zip([c["text"] for c in candidates],
                        reranker.score("capital city", [c["text"] for c in candidates], instruction="Find the capital"),
                        strict=True))
    assert len(results) == 3
    assert [r["score"] for r in results] == sorted(expected.values(), reverse=True)[:3]
    for result in results:
        assert result["score"] == pytest.approx(float(expected[result["text"]]), abs=1e-5)
    assert float(body.headers["x-inference-time"]) > 0 and int(body.headers["x-compute-tokens"]) > 0


def test_filters_and_metadata_options(http, facts):
    def ids(body):
        return [r["id"] for r in http.post(f"/v1/collections/{facts}/search", json=body).json()["results"]]

    assert set(ids({"query": "capital", "filter": {"topic": "geography"}, "rerank": False})) == {"beijing", "paris"}
    assert set(ids({"query": "fruit", "filter": {"tags": "fruit"}, "rerank": False})) == {"banana", "pomme"}
    assert ids({"query": "fruit", "filter": {"tags": "fruit", "lang": "fr"}}) == ["pomme"]
    assert set(ids({"query": "x", "filter": {"topic": {"$in": ["physics", "finance"]}}})) == {"gravity", "stocks"}
    assert ids({"query": "x", "filter": {"topic": "astrology"}}) == []
    bare = http.post(f"/v1/collections/{facts}/search", json={"query": "fruit", "return_metadata": False}).json()
    assert all(r["metadata"] is None for r in bare["results"])
    bad = http.post(f"/v1/collections/{facts}/search", json={"query": "x", "filter": {"tags": ["a"]}})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "filter"


def test_a_list_of_queries_gets_a_list_of_results(http, facts):
    body = http.post(f"/v1/collections/{facts}/search",
                     json={"query": ["capital of France", "bananas"], "rerank": False, "top_n": 1}).json()
    assert isinstance(body, list) and [b["results"][0]["id"] for b in body] == ["paris", "banana"]


def test_deleted_documents_disappear_from_search_at_once(http):
    name = unique("del")
    http.put(f"/v1/collections/{name}", json={"model": "all-MiniLM-L6-v2"})
    upload(http, name, [{"id": i, "text": t} for i, t, _ in FACTS])
    assert http.delete(f"/v1/collections/{name}/documents/beijing").json() == {"id": "beijing", "deleted": True}
    hits = http.post(f"/v1/collections/{name}/search",
                     json={"query": "capital of China", "top_k": 10, "top_n": 10, "rerank": False}).json()["results"]
    assert "beijing" not in [h["id"] for h in hits] and len(hits) == len(FACTS) - 1
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == len(FACTS) - 1


def test_hnsw_search_over_two_shards_matches_exact_search(http):
    # 300 documents over 2 shards: each shard passes the 40-document HNSW threshold.
    name = unique("hnsw")
    http.put(f"/v1/collections/{name}", json={"model": "all-MiniLM-L6-v2"})
    texts = mixed_texts(300, seed=77, max_words=40)
    documents = [{"id": f"doc-{i}", "text": t, "metadata": {"parity": i % 2}} for i, t in enumerate(texts)]
    ids = upload(http, name, documents[:150]) + upload(http, name, documents[150:])
    assert {shard_of(i, 2) for i in ids} == {0, 1}
    queries = ["protein cell gene", "river mountain history", "market price growth", "music language"]
    for query in queries:
        request = {"query": query, "rerank": False, "top_k": 10, "top_n": 10}
        approximate = http.post(f"/v1/collections/{name}/search", json=request).json()["results"]
        exact = http.post(f"/v1/collections/{name}/search", json={**request, "exact": True}).json()["results"]
        overlap = len({h["id"] for h in approximate} & {h["id"] for h in exact})
        assert overlap >= 9, (query, overlap)
        filtered = http.post(f"/v1/collections/{name}/search", json={**request, "filter": {"parity": 1}}).json()
        assert all(int(h["id"].split("-")[1]) % 2 == 1 for h in filtered["results"])
        assert len(filtered["results"]) == 10


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"query": ""}, 422, "empty"),
        ({"query": []}, 422, "at least one query"),
        ({"query": "x", "top_k": 201}, 413, "top_k"),
        ({"query": "x", "top_k": 200, "top_n": 51}, 413, "top_n"),
        ({"query": "x", "top_k": 5, "top_n": 10}, 422, "must not exceed top_k"),
        ({"query": "x", "top_k": 0}, 422, "top_k"),
        ({"query": ["q"] * 65}, 413, "query"),
        ({"query": "x", "reranker": "nope"}, 404, "not served here"),
    ],
)
def test_bad_searches(http, facts, body, status, fragment):
    response = http.post(f"/v1/collections/{facts}/search", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


# ---------------------------------------------------------------- concurrency and durability
async def test_concurrent_writers_of_the_same_ids_leave_one_document_each(serve_app, http):
    name = unique("race")
    http.put(f"/v1/collections/{name}", json={"model": "all-MiniLM-L6-v2"})  # no query prompt: query == document
    versions = {f"writer {w}": [{"id": f"shared-{i}", "text": f"version from writer {w} of document {i}"}
                                for i in range(30)] for w in range(6)}
    async with serve_app.async_client() as client:
        responses = await asyncio.gather(*(
            client.post(f"/v1/collections/{name}/documents", json={"documents": docs}) for docs in versions.values()))
    assert all(r.status_code == 200 for r in responses)
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == 30
    for i in range(30):
        text = http.get(f"/v1/collections/{name}/documents/shared-{i}").json()["text"]
        assert text in {f"version from writer {w} of document {i}" for w in range(6)}
        # The stored vector is the stored text's own: the text as a query finds it with cosine 1.
        top = http.post(f"/v1/collections/{name}/search", json={"query": text, "rerank": False, "top_n": 1}).json()
        assert top["results"][0]["id"] == f"shared-{i}"
        assert top["results"][0]["embedding_score"] == pytest.approx(1.0, abs=1e-5)


def test_every_acknowledged_document_survives_killed_shards_and_a_full_restart(serve_app, http):
    import time

    import ray

    name = unique("durable")
    http.put(f"/v1/collections/{name}", json={"model": "all-MiniLM-L6-v2"})
    acknowledged = []
    for batch in range(5):
        docs = [{"id": f"b{batch}-{i}", "text": t, "metadata": {"batch": batch}}
                for i, t in enumerate(mixed_texts(40, seed=100 + batch, max_words=30))]
        acknowledged += upload(http, name, docs)

    # SIGKILL both shard processes: Serve replaces them and they reload from SQLite.
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if "#IndexShard-" in actor["name"]:
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
    deadline = time.monotonic() + 120
    while True:
        response = http.get(f"/v1/collections/{name}/count")
        if response.status_code == 200 and response.json()["count"] == len(acknowledged):
            break
        assert time.monotonic() < deadline, response.text
        time.sleep(1)

    serve_app.restart()  # every deployment of the application stops and starts again
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == 200
    for doc_id in acknowledged:
        assert http.get(f"/v1/collections/{name}/documents/{doc_id}").status_code == 200
    hits = http.post(f"/v1/collections/{name}/search", json={"query": "x", "filter": {"batch": 3}, "top_k": 100,
                                                             "top_n": 50, "rerank": False}).json()["results"]
    assert len(hits) == 40 and {h["metadata"]["batch"] for h in hits} == {3}
