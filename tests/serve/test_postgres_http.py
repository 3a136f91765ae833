"""The real Serve application on the postgres backend, over real HTTP, against a real PostgreSQL 18 +
pgvector server of this module's own (tests/index/pg_server.py; the outage test stops and starts it).

The application's arguments say nothing about the index (no `index` section at all: the default,
embedded, as shipped). The environment picks Postgres, as in `QWEN3_SEARCH_INDEX_BACKEND=postgres
QWEN3_SEARCH_POSTGRES_DSN=postgresql://... serve run serve_config.yaml`:
- QWEN3_SEARCH_INDEX_BACKEND is set in this process while `build_app` runs (the builder reads it);
- QWEN3_SEARCH_POSTGRES_DSN reaches the pipeline replicas, which read it, through their Ray
  runtime_env: the suite's Ray may already be running with its own environment, and a runtime_env
  is how Ray hands a replica variables (a RayService's container env, or `serve run`'s shell, get
  there the same way: the replica's os.environ).

Models: the real all-MiniLM-L6-v2 (semantics, SciFact) and the tiny random Qwen3 reranker (the
rerank path: scores compared with /v1/rerank of the same texts). One application for the module,
beside the suite's when that runs (its own Ray otherwise).
"""

import asyncio
import random
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.quality import load_beir, ndcg_at_10
from deployments.index.postgres_config import DSN_ENV
from tests.conftest import API_KEY, _free_port, default_tokenizer_source
from tests.index.pg_server import PgServer, server_for_tests
from tests.serve.test_collections import FACTS
from tests.serve_harness import ServeApp, app_args_for_tests, model_folders, start_ray

APP, PREFIX = "qwen3-search-postgres", "/pg"
SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "scifact"
SCIFACT_DOCUMENTS = 1500
"""SciFact has 5,183 abstracts; embedding them all with MiniLM takes about 4 minutes on this 2-core
machine (README: 237 s), too long for a test. The subset keeps every abstract that any test query's
qrels name (so every query keeps all its relevant documents and the qrels stay exact), and fills up
with abstracts drawn at random (seed 0) as distractors. `exact: true` and HNSW search the same
subset, so the comparison is like for like; absolute nDCG runs higher than on the full corpus."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def database():
    with server_for_tests() as server:
        yield server


@pytest.fixture(scope="module")
def pg_app(request, database: PgServer, model_factory, minilm_dir, tmp_path_factory):
    import ray

    own_ray = not ray.is_initialized()
    base = start_ray(port=_free_port(), api_key=API_KEY) if own_ray else request.getfixturevalue("serve_app").url
    folders = model_folders(model_factory, minilm_dir, default_tokenizer_source())
    args = app_args_for_tests(folders, tmp_path_factory.mktemp("unused-index"))
    del args["index"]  # nothing about the index: the environment decides
    args["embedding_models"] = [m for m in args["embedding_models"] if m["name"] == "all-MiniLM-L6-v2"]
    pipeline = args["pipeline"]
    pipeline["ray_actor_options"] = {**pipeline["ray_actor_options"],
                                     "runtime_env": {"env_vars": {DSN_ENV: database.dsn}}}
    # Past the pool's wait for a connection (connect_timeout_s, 5 s), so /health reports Postgres's own answer.
    args["health_timeout_s"] = 10.0
    app = ServeApp(url=base + PREFIX, api_key=API_KEY, folders=folders, storage=Path("unused"), name=APP,
                   route_prefix=PREFIX, args=args, build_environment={"QWEN3_SEARCH_INDEX_BACKEND": "postgres"})
    app.deploy()
    try:
        yield app
    finally:
        app.delete()
        if own_ray:
            app.stop()


@pytest.fixture(scope="module")
def http(pg_app: ServeApp):
    with pg_app.client() as client:
        yield client


def upload(http: httpx.Client, name: str, documents: list[dict]) -> None:
    response = http.post(f"/v1/collections/{name}/documents", json={"documents": documents})
    assert response.status_code == 200, response.text


def search(http: httpx.Client, name: str, **body) -> list[dict]:
    response = http.post(f"/v1/collections/{name}/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()["results"]


@pytest.fixture(scope="module")
def facts(http: httpx.Client) -> str:
    name = unique("facts")
    assert http.put(f"/v1/collections/{name}").status_code == 201
    upload(http, name, [{"id": i, "text": t, "metadata": m} for i, t, m in FACTS])
    return name


def test_the_environment_picks_postgres_without_an_edited_config(http, database, facts):
    health = http.get("/health")
    assert health.status_code == 200, health.text
    deployments = health.json()["deployments"]
    assert deployments["postgres"] == "ok"
    assert not any(name.startswith("IndexShard") for name in deployments)  # no embedded shards at all
    stored = database.psql("SELECT name, model, dimensions FROM qwen3_search.collections ORDER BY name")
    assert f"{facts}|all-MiniLM-L6-v2|384" in stored.splitlines()
    table_id = database.psql(f"SELECT id FROM qwen3_search.collections WHERE name = '{facts}'")
    table = f"qwen3_search.docs_{table_id}"
    assert database.psql(f"SELECT text FROM {table} WHERE id = 'beijing'") == FACTS[0][1]


def test_documents_and_search_over_http(http, pg_app, facts):
    assert http.get(f"/v1/collections/{facts}").json()["count"] == len(FACTS)
    assert http.get(f"/v1/collections/{facts}/documents/banana").json() == {
        "id": "banana", "text": FACTS[4][1], "metadata": FACTS[4][2]}
    results = search(http, facts, query="What is the capital of China?", rerank=False, top_n=3)
    assert results[0]["id"] == "beijing" and len(results) == 3
    engine = pg_app.engine("all-MiniLM-L6-v2")
    query = engine.embed(["What is the capital of China?"])[0]
    for result in results:  # inner products of the real model's vectors, stored and scored by pgvector
        assert result["embedding_score"] == pytest.approx(float(engine.embed([result["text"]])[0] @ query), abs=1e-5)
    exact = search(http, facts, query="fruit", rerank=False, top_n=7, exact=True)
    assert [r["id"] for r in search(http, facts, query="fruit", rerank=False, top_n=7)] == [r["id"] for r in exact]
    fruit = search(http, facts, query="fruit", rerank=False, top_n=7, filter={"tags": "fruit", "lang": "fr"})
    assert [r["id"] for r in fruit] == ["pomme"]

    name = unique("docs")
    assert http.put(f"/v1/collections/{name}", json={"index": "hnsw"}).status_code == 201
    upload(http, name, [{"id": i, "text": t} for i, t, _ in FACTS])
    upload(http, name, [{"id": "beijing", "text": "Beijing is the capital of China.", "metadata": {"v": 2}}])
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == len(FACTS)
    assert http.get(f"/v1/collections/{name}/documents/beijing").json()["metadata"] == {"v": 2}
    assert http.delete(f"/v1/collections/{name}/documents/paris").json() == {"id": "paris", "deleted": True}
    hits = search(http, name, query="capital city of France", rerank=False, top_k=10, top_n=10)
    assert "paris" not in [h["id"] for h in hits] and len(hits) == len(FACTS) - 1
    assert http.delete(f"/v1/collections/{name}").status_code == 200
    assert http.get(f"/v1/collections/{name}").status_code == 404


def test_reranked_search_scores_equal_a_direct_rerank_of_the_same_texts(http, facts):
    query, instruction = "capital city", "Find the capital"
    candidates = search(http, facts, query=query, top_k=5, top_n=5, rerank=False)
    reranked = search(http, facts, query=query, top_k=5, top_n=3, instruction=instruction)
    direct = http.post("/v1/rerank", json={"query": query, "documents": [c["text"] for c in candidates],
                                           "model": "tiny-reranker", "instruction": instruction})
    assert direct.status_code == 200, direct.text
    expected = {candidates[r["index"]]["text"]: r["relevance_score"] for r in direct.json()["results"]}
    assert len(reranked) == 3
    assert [r["score"] for r in reranked] == pytest.approx(sorted(expected.values(), reverse=True)[:3], abs=1e-5)
    for result in reranked:
        assert result["score"] == pytest.approx(expected[result["text"]], abs=1e-5)


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("post", "/v1/collections/{missing}/search", {"query": "x"}, 404),
    ("post", "/v1/collections/{missing}/documents", {"documents": [{"text": "x"}]}, 404),
    ("get", "/v1/collections/{facts}/documents/nope", None, 404),
    ("post", "/v1/collections/{facts}/search", {"query": "x", "filter": {"k": {"$regex": "a"}}}, 422),
    ("post", "/v1/collections/{facts}/documents", {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]},
     422),
    ("put", "/v1/collections/{facts}", {"dimensions": 32}, 409),
])
def test_client_mistakes_are_4xx_on_postgres(http, facts, method, path, body, status):
    response = http.request(method.upper(), path.format(facts=facts, missing=unique("missing")), json=body)
    assert response.status_code == status, response.text


def test_database_down_is_503_and_the_service_recovers_by_itself(http, database, facts):
    name = unique("outage")
    assert http.put(f"/v1/collections/{name}").status_code == 201
    upload(http, name, [{"id": i, "text": t} for i, t, _ in FACTS])
    database.stop()
    try:
        answers = [
            http.post(f"/v1/collections/{name}/search", json={"query": "capital of China"}),
            http.post(f"/v1/collections/{name}/documents", json={"documents": [{"id": "new", "text": "new text"}]}),
            http.get(f"/v1/collections/{name}"),
            http.get(f"/v1/collections/{name}/documents/beijing"),
            http.put(unique("/v1/collections/created-while-down")),
        ]
        for response in answers:
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "storage_unavailable" and f"127.0.0.1:{database.port}" in error["message"]
            assert float(response.headers["retry-after"]) > 0
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert health.json()["deployments"]["postgres"].startswith("unavailable"), health.text
        assert health.json()["deployments"]["SearchPipeline"] == "ok"  # the replicas live on: no restart
    finally:
        database.start()

    deadline = time.monotonic() + 60
    while (response := http.post(f"/v1/collections/{name}/search", json={"query": "capital of China",
                                                                          "rerank": False})).status_code != 200:
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, "no recovery within 60 s of the restart"
        time.sleep(0.5)
    assert response.json()["results"][0]["id"] == "beijing"  # what was stored before the outage is there
    upload(http, name, [{"id": "new", "text": "new text"}])
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == len(FACTS) + 1
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["deployments"]["postgres"] == "ok", health.text


def scifact_subset() -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    corpus, queries, qrels = load_beir(SCIFACT)
    relevant = {doc for judged in qrels.values() for doc in judged}
    others = [d for d in corpus if d["id"] not in relevant]
    chosen = relevant | {d["id"] for d in random.Random(0).sample(others, SCIFACT_DOCUMENTS - len(relevant))}
    subset = [d for d in corpus if d["id"] in chosen]
    assert {d["id"] for d in subset} >= relevant  # every judged document is in: the qrels hold as they are
    return subset, queries, qrels


def test_scifact_ndcg_on_postgres_hnsw_is_within_0_01_of_exact_search(http, database):
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"{SCIFACT} is absent (the shared BEIR SciFact folder)")
    corpus, queries, qrels = scifact_subset()
    name = unique("scifact")
    assert http.put(f"/v1/collections/{name}", json={"index": "hnsw"}).status_code == 201
    for start in range(0, len(corpus), 200):
        upload(http, name, corpus[start:start + 200])
    assert http.get(f"/v1/collections/{name}/count").json()["count"] == len(corpus)
    asked = [q for q in qrels if q in queries]

    def ndcg(exact: bool) -> float:
        scores = []
        for start in range(0, len(asked), 50):
            ids = asked[start:start + 50]
            response = http.post(f"/v1/collections/{name}/search", json={
                "query": [queries[q] for q in ids], "top_k": 100, "top_n": 10, "rerank": False, "exact": exact})
            assert response.status_code == 200, response.text
            for query_id, answer in zip(ids, response.json(), strict=True):
                scores.append(ndcg_at_10([hit["id"] for hit in answer["results"]], qrels[query_id]))
        return sum(scores) / len(scores)

    exact = ndcg(True)
    # Approximate searches are answered by the HNSW graph even on this few rows, where PostgreSQL's
    # planner alone would prefer an exact scan (the service turns sequential scans off for them, or this
    # comparison would be empty); the plan says so.
    assert "_hnsw" in hnsw_plan(database, name)
    hnsw = ndcg(False)
    print(f"SciFact subset ({len(corpus)} documents, {len(asked)} queries) on Postgres: nDCG@10 exact "
          f"{100 * exact:.2f}, HNSW {100 * hnsw:.2f}")
    assert exact > 0.6  # the real model on real data (MTEB: 64.51 on the whole corpus)
    assert abs(hnsw - exact) <= 0.01, (exact, hnsw)


def hnsw_plan(database: PgServer, name: str) -> str:
    """PostgreSQL's plan of an approximate top-100 search in the collection, as the pipeline asks it."""
    from deployments.index.postgres import PostgresIndex
    from deployments.index.postgres_config import PostgresConfig

    async def explain() -> str:
        async with PostgresIndex(PostgresConfig(dsn=database.dsn), environ={}) as index:
            return await index.explain(name, np.full(384, 384 ** -0.5, np.float32), 100)

    return asyncio.run(explain())
