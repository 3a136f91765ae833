"""Collections, documents and search through the clients and the CLI, against the real server.

The real Serve application (the `serve_app` fixture: 2 index shards, the real MiniLM for
semantics, tiny Qwen3 models for the code path, `max_documents_per_upsert` from its /info).
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from clients import AsyncClient, Client, ConflictError, NotFoundError
from clients.types import Collection, Document, SearchResult
from tests.conftest import mixed_texts

ROOT = Path(__file__).resolve().parents[2]
FACTS = [
    ("beijing", "The capital of China is Beijing.", {"topic": "geography"}),
    ("paris", "Paris is the capital and largest city of France.", {"topic": "geography"}),
    ("gravity", "Gravity is a force that attracts two bodies towards each other.", {"topic": "physics"}),
    ("banana", "Bananas are rich in potassium.", {"topic": "food"}),
    ("stocks", "The stock market fell sharply on Monday.", {"topic": "finance"}),
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client(serve_app):
    with Client(base_url=serve_app.url, api_key=serve_app.api_key) as c:
        yield c


@pytest.fixture(scope="module")
def facts(client):
    name = unique("facts")
    client.create_collection(name, model="all-MiniLM-L6-v2")
    client.upsert(name, [Document(id=i, text=t, metadata=m) for i, t, m in FACTS])
    yield name
    client.delete_collection(name)


def test_collection_lifecycle(client):
    name = unique("life")
    created = client.create_collection(name)
    assert isinstance(created, Collection)
    assert (created.name, created.model, created.dimensions, created.count) == (name, "tiny-qwen", 64, 0)
    again = client.create_collection(name)  # identical: 200, the same collection
    assert (again.model, again.dimensions) == (created.model, created.dimensions)
    with pytest.raises(ConflictError) as caught:
        client.create_collection(name, dimensions=32)
    assert caught.value.status_code == 409 and caught.value.type == "conflict_error"
    assert name in [c.name for c in client.list_collections()]
    assert client.get_collection(name).dimensions == 64
    deleted = client.delete_collection(name)
    assert (deleted.name, deleted.deleted) == (name, True)
    with pytest.raises(NotFoundError) as caught:
        client.get_collection(name)
    assert caught.value.code == "collection_not_found"


def test_upsert_streams_a_generator_in_chunks_and_is_idempotent(serve_app, client):
    name = unique("stream")
    client.create_collection(name)
    limit = client.info().limits.max_documents_per_upsert
    paths: list[str] = []
    counting = httpx.Client(event_hooks={"request": [lambda r: paths.append(r.url.path)]})
    texts = mixed_texts(limit * 2 + 7, seed=4, max_words=12)

    def documents():
        for i, text in enumerate(texts):
            yield {"id": f"doc/{i}", "text": text, "metadata": {"parity": i % 2}}

    with Client(base_url=serve_app.url, api_key=serve_app.api_key, http_client=counting) as streaming:
        ids = streaming.upsert(name, documents(), progress=False)
    assert ids == [f"doc/{i}" for i in range(len(texts))]
    assert paths.count(f"/v1/collections/{name}/documents") == 3
    assert client.count(name) == len(texts)
    client.upsert(name, list(documents())[:50])  # sent again: replaced, not duplicated
    assert client.count(name) == len(texts)
    stored = client.get_document(name, "doc/5")  # an id with a slash
    assert (stored.text, stored.metadata) == (texts[5], {"parity": 1})
    assert client.delete_document(name, "doc/5").deleted
    with pytest.raises(NotFoundError):
        client.get_document(name, "doc/5")
    assert client.count(name) == len(texts) - 1
    assigned = client.upsert(name, [{"text": "no id given"}])
    assert len(assigned[0]) == 32 and client.get_document(name, assigned[0]).text == "no id given"
    client.delete_collection(name)


def test_search_one_query_many_queries_filters(client, facts, serve_app):
    result = client.search(facts, "What is the capital of China?", rerank=False, top_n=3)
    assert isinstance(result, SearchResult) and result.results[0].id == "beijing" and len(result.results) == 3
    engine = serve_app.engine("all-MiniLM-L6-v2")
    query = engine.embed(["What is the capital of China?"])[0]
    for hit in result.results:
        assert hit.embedding_score == pytest.approx(float(engine.embed([hit.text])[0] @ query), abs=1e-5)
    answers = client.search(facts, ["capital of France", "potassium in fruit"], rerank=False, top_n=1)
    assert [a.results[0].id for a in answers] == ["paris", "banana"]
    physics = client.search(facts, "anything", filter={"topic": "physics"})
    assert [h.id for h in physics.results] == ["gravity"] and physics.results[0].metadata == {"topic": "physics"}
    reranked = client.search(facts, "capital city", top_k=5, top_n=3, instruction="Find the capital")
    scores = [h.score for h in reranked.results]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3


async def test_the_async_client_manages_collections_too(serve_app):
    name = unique("async")
    async with AsyncClient(base_url=serve_app.url, api_key=serve_app.api_key) as client:
        await client.create_collection(name, model="all-MiniLM-L6-v2")

        async def documents():
            for i, text, metadata in FACTS:
                yield {"id": i, "text": text, "metadata": metadata}

        assert await client.upsert(name, documents()) == [i for i, _, _ in FACTS]
        assert await client.count(name) == len(FACTS)
        hit = (await client.search(name, "Where is Beijing?", rerank=False, top_n=1)).results[0]
        assert hit.id == "beijing"
        await client.delete_collection(name)
        with pytest.raises(NotFoundError):
            await client.count(name)


# ---------------------------------------------------------------- the command line
def run_cli(serve_app, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QWEN3_SEARCH_BASE_URL": serve_app.url, "QWEN3_SEARCH_API_KEY": serve_app.api_key}
    return subprocess.run([sys.executable, "-m", "clients.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_ingest_jsonl_search_and_resume(serve_app, client, tmp_path):
    name = unique("cli")
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t, **m}) + "\n" for i, t, m in FACTS))
    first = run_cli(serve_app, "ingest", name, str(path), "--model", "all-MiniLM-L6-v2")
    assert first.returncode == 0, first.stderr
    assert f"created collection {name}" in first.stdout and "upserted 5 of 5 documents" in first.stdout
    assert client.get_document(name, "gravity").metadata == {"topic": "physics"}

    again = run_cli(serve_app, "--json", "ingest", name, str(path), "--skip-existing")
    summary = json.loads(again.stdout)
    assert (summary["upserted"], summary["skipped_existing"], summary["count"]) == (0, 5, 5)

    search = run_cli(serve_app, "search", name, "What is the capital of China?", "--no-rerank", "--top-n", "2")
    assert search.returncode == 0, search.stderr
    lines = search.stdout.splitlines()
    assert lines[1].split()[:3] == ["rank", "cosine", "id"] and lines[2].split()[2] == "beijing"
    as_json = json.loads(run_cli(serve_app, "--json", "search", name, "potassium", "--no-rerank").stdout)
    assert as_json["results"][0]["id"] == "banana"

    listed = run_cli(serve_app, "collections")
    assert any(line.split()[:3] == [name, "all-MiniLM-L6-v2", "384"] for line in listed.stdout.splitlines())
    assert run_cli(serve_app, "collections", "delete", name).returncode == 0
    gone = run_cli(serve_app, "collections", "show", name)
    assert gone.returncode == 1 and "404" in gone.stderr


def test_cli_ingest_a_folder_and_a_csv(serve_app, client, tmp_path):
    folder = tmp_path / "notes"
    (folder / "physics").mkdir(parents=True)
    (folder / "physics" / "gravity.md").write_text("# Gravity\nGravity attracts two bodies.")
    (folder / "fruit.txt").write_text("Bananas are rich in potassium.")
    name = unique("folder")
    result = run_cli(serve_app, "ingest", name, str(folder), "--dimensions", "32")
    assert result.returncode == 0, result.stderr
    assert sorted(client.get_document(name, i).id for i in ("physics/gravity.md", "fruit.txt")) == [
        "fruit.txt", "physics/gravity.md"]
    assert client.get_collection(name).dimensions == 32

    table = tmp_path / "more.csv"
    table.write_text("id,text,topic\nc1,\"Stocks fell, then rose\",finance\n")
    assert run_cli(serve_app, "ingest", name, str(table)).returncode == 0
    assert client.get_document(name, "c1").metadata == {"topic": "finance"} and client.count(name) == 3
    conflict = run_cli(serve_app, "ingest", name, str(table), "--dimensions", "48")
    assert conflict.returncode == 1 and "409" in conflict.stderr
    client.delete_collection(name)
