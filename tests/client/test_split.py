"""Splitting calls over the server's limits, streaming uploads, and the sync/async twins agreeing.

A double (the fake server behind `httpx.MockTransport`) is used because it can advertise tiny
limits in /info, so that a handful of inputs is split into several requests, and because it
records each request, so the number, size and order of the requests can be checked.
"""

import asyncio
import json
import re

import httpx
import numpy as np
import pytest

from clients import AsyncClient, Client, EmbedResult
from clients._constants import REQUEST_BYTES_MARGIN
from clients._split import chunk_ranges, json_size
from clients.types import Document, Limits
from tests.client.fake_server import FakeServer, fake_score, fake_vector

EMBED = "/v1/embeddings"


def small_limits(**overrides) -> Limits:
    values = {"max_inputs_per_request": 3, "max_documents_per_request": 4, "max_request_bytes": 1 << 20,
              "max_documents_per_upsert": 10, "max_queries_per_search": 2, "auto_truncate": True}
    return Limits(**{**values, **overrides})


TEXTS = [f"text number {i} about {'gravity ' * (i % 3)}" for i in range(10)]


# ---------------------------------------------------------------- embed
def test_embed_splits_by_count_and_keeps_the_order(fake, make_client):
    """Double: /info advertises 3 inputs per request."""
    fake.limits = small_limits()
    result = make_client().embed(TEXTS, dimensions=8, input_type="document")
    assert isinstance(result, EmbedResult) and result.embeddings.dtype == np.float32
    assert result.embeddings.shape == (10, 8) and len(result) == 10 and result.dimensions == 8
    np.testing.assert_array_equal(result.embeddings, np.stack([fake_vector(t) for t in TEXTS]))
    # Sorted: the chunks are sent from several threads, so they arrive in any order.
    bodies = sorted((s.body for s in fake.requests_to(EMBED)), key=lambda b: TEXTS.index(b["input"][0]))
    assert [b["input"] for b in bodies] == [TEXTS[0:3], TEXTS[3:6], TEXTS[6:9], TEXTS[9:10]]
    assert all(b["encoding_format"] == "base64" and b["dimensions"] == 8 and b["input_type"] == "document"
               for b in bodies)
    assert "instruction" not in bodies[0] and "model" not in bodies[0]  # not given: the server's default
    assert result.usage.total_tokens == sum(len(t.split()) for t in TEXTS)
    assert result.embeddings.flags.writeable


def test_embed_splits_by_bytes_under_the_request_limit(fake, make_client):
    """Double: /info advertises a request-byte limit that a few 2 KB texts exceed."""
    limit = REQUEST_BYTES_MARGIN + 5000
    fake.limits = small_limits(max_inputs_per_request=100, max_request_bytes=limit)
    texts = [f"{i} " + "x" * 2000 for i in range(7)]
    result = make_client().embed(texts)
    requests = sorted(fake.requests_to(EMBED), key=lambda s: texts.index(s.body["input"][0]))
    assert [len(s.body["input"]) for s in requests] == [2, 2, 2, 1]
    assert all(len(json.dumps(s.body)) < limit - REQUEST_BYTES_MARGIN for s in requests)
    np.testing.assert_array_equal(result.embeddings, np.stack([fake_vector(t) for t in texts]))


def test_one_input_needs_no_limits_and_info_is_read_once(fake, make_client):
    """Double: counts the /info requests."""
    client = make_client()
    client.embed("single")
    assert fake.requests_to("/info") == []
    client.embed(["a", "b"])
    client.rerank("q", ["a", "b"])
    assert len(fake.requests_to("/info")) == 1


def test_chunk_ranges():
    assert chunk_ranges([1] * 7, max_count=3, max_bytes=1000) == [range(0, 3), range(3, 6), range(6, 7)]
    assert chunk_ranges([10, 10, 500, 10], max_count=10, max_bytes=100) == [range(0, 2), range(2, 3), range(3, 4)]
    assert chunk_ranges([], max_count=3, max_bytes=10) == [range(0, 0)]
    assert chunk_ranges([50], max_count=3, max_bytes=10) == [range(0, 1)]  # too big alone: sent, the server says 413
    assert json_size("é") == len('"é"'.encode())


# ---------------------------------------------------------------- rerank and score
def test_a_split_rerank_equals_one_request(fake, make_client):
    """Double: the same fake reranker answers one 11-document request and, with 4 documents per
    request, the split one; the merged ranking must be the same."""
    documents = [f"document {i} on {w}" for i, w in enumerate("abcdefghijk")]
    whole = make_client().rerank("which one?", documents)
    fake.limits = small_limits()
    split_client = make_client()
    merged = split_client.rerank("which one?", documents)
    assert len(fake.requests_to("/v1/rerank")) == 1 + 3
    assert merged.results == whole.results
    expected = sorted(range(11), key=lambda i: -fake_score("which one?", documents[i]))
    assert [r.index for r in merged.results] == expected
    assert all(r.document is not None and r.document.text == documents[r.index] for r in merged.results)
    assert merged.usage.total_tokens == whole.usage.total_tokens

    top = split_client.rerank("which one?", documents, top_n=3, return_documents=False)
    assert [r.index for r in top.results] == expected[:3] and all(r.document is None for r in top.results)
    chunk_bodies = [s.body for s in fake.requests_to("/v1/rerank")[-3:]]
    assert [b.get("top_n") for b in chunk_bodies] == [3, 3, 3]  # never more than top_n per chunk
    last = split_client.rerank("which one?", documents, top_n=8)
    assert sorted(s.body["top_n"] for s in fake.requests_to("/v1/rerank")[-3:]) == [3, 4, 4]
    assert [r.index for r in last.results] == expected[:8]


def test_a_split_score_equals_one_request(fake, make_client):
    """Double: as for rerank, with the vLLM score route, one-to-many and pairwise."""
    documents = [f"doc {i}" for i in range(9)]
    queries = [f"query {i}" for i in range(9)]
    one_to_many = make_client().score("the query", documents)
    pairwise = make_client().score(queries, documents)
    fake.limits = small_limits()
    client = make_client()
    split_one = client.score("the query", documents)
    split_pairs = client.score(queries, documents)
    assert split_one.data == one_to_many.data and split_pairs.data == pairwise.data
    assert [d.score for d in split_one.data] == [fake_score("the query", d) for d in documents]
    assert [d.score for d in split_pairs.data] == [fake_score(q, d) for q, d in zip(queries, documents, strict=True)]
    assert [d.index for d in split_pairs.data] == list(range(9))
    pair_bodies = sorted((s.body for s in fake.requests_to("/score")[-3:]), key=lambda b: b["queries"][0])
    assert [b["queries"] for b in pair_bodies] == [queries[0:4], queries[4:8], queries[8:9]]
    assert split_pairs.usage.total_tokens == 9


def test_a_score_mismatch_is_sent_as_is_for_the_server_to_explain(fake, make_client):
    """Double: the fake answers the mismatch with 422, as the server does."""
    from clients import BadRequestError

    fake.limits = small_limits()
    with pytest.raises(BadRequestError, match="as many as documents"):
        make_client().score(["a", "b"], ["x", "y", "z", "w", "v", "u"])
    assert fake.requests_to("/score")[0].body["queries"] == ["a", "b"]


# ---------------------------------------------------------------- search
def test_a_list_of_queries_is_split_by_max_queries_per_search(fake, make_client):
    """Double: /info advertises 2 queries per search."""
    fake.limits = small_limits()
    client = make_client()
    fake.collections["facts"] = {f"f{i}": {"id": f"f{i}", "text": f"fact number {i}", "metadata": None}
                                 for i in range(6)}
    queries = [f"question {i}" for i in range(5)]
    answers = client.search("facts", queries, top_n=2, rerank=True)
    assert sorted(s.body["query"] for s in fake.requests_to("/v1/collections/facts/search")) == [
        queries[0:2], queries[2:4], queries[4:5]]
    assert len(answers) == 5
    for query, answer in zip(queries, answers, strict=True):
        best = max(range(6), key=lambda i: fake_score(query, f"fact number {i}"))
        assert answer.results[0].id == f"f{best}" and len(answer.results) == 2
    one = client.search("facts", "question 3", top_n=1, filter={"k": "v"})
    assert one.results[0].id == answers[3].results[0].id
    assert fake.seen[-1].body == {"query": "question 3", "top_n": 1, "filter": {"k": "v"}}


# ---------------------------------------------------------------- upsert
def test_upsert_streams_any_iterable_in_chunks_and_returns_the_ids_in_order(fake, make_client):
    """Double: /info advertises 10 documents per upload; the fake records what was read when."""
    fake.limits = small_limits()
    fake.collections["docs"] = {}
    consumed: list[int] = []
    read_at_request: list[int] = []
    original = fake.handle

    def spying(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/documents"):
            read_at_request.append(len(consumed))
        return original(request)

    fake.handle = spying

    def documents():
        for i in range(25):
            consumed.append(i)
            if i % 3 == 0:
                yield Document(id=f"doc/{i}", text=f"text {i}", metadata={"i": i})
            elif i % 3 == 1:
                yield {"id": f"doc/{i}", "text": f"text {i}"}
            else:
                yield {"text": f"text {i}"}  # an id is assigned

    ids = make_client(max_concurrency=1).upsert("docs", documents(), progress=False)
    sizes = [len(s.body["documents"]) for s in fake.requests_to("/v1/collections/docs/documents")]
    assert sizes == [10, 10, 5]
    assert read_at_request == [11, 21, 25]  # streamed: a chunk is sent before the next is read
    assert len(ids) == 25 and ids[0] == "doc/0" and ids[1] == "doc/1" and re.fullmatch(r"[0-9a-f]{32}", ids[2])
    assert list(fake.collections["docs"]) == ids
    assert fake.collections["docs"]["doc/3"]["metadata"] == {"i": 3}


def test_upsert_progress_bar_is_drawn_when_asked(fake, make_client, capsys):
    """Double: the number of documents uploaded is known exactly."""
    fake.limits = small_limits()
    fake.collections["docs"] = {}
    make_client().upsert("docs", [{"text": f"t{i}"} for i in range(25)], progress=True)
    err = capsys.readouterr().err
    assert "upsert docs" in err and "25/25" in err
    make_client().upsert("docs", [{"text": "t"}])  # default: no bar when stderr is not a terminal
    assert capsys.readouterr().err == ""


def test_document_paths_are_percent_encoded(fake, make_client):
    """Double: the raw request path is inspected."""
    fake.collections["docs"] = {}
    client = make_client()
    client.upsert("docs", [{"id": "a/b c?d#e", "text": "odd id"}])
    assert client.get_document("docs", "a/b c?d#e").text == "odd id"
    assert fake.seen[-1].path == "/v1/collections/docs/documents/a/b c?d#e"  # decoded by the server side
    assert client.count("docs") == 1
    assert client.delete_document("docs", "a/b c?d#e").deleted is True
    assert client.count("docs") == 0


async def test_async_fan_out_is_bounded_and_ordered():
    """Double: an async handler that takes time, to count the requests in flight at once."""
    fake = FakeServer(limits=small_limits(max_inputs_per_request=2))
    in_flight, peak = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01 if request.url.path == "/info" else 0.05 * (hash(request.content) % 3 + 1))
        in_flight -= 1
        return fake.handle(request)

    texts = [f"t{i}" for i in range(20)]
    async with AsyncClient(base_url="http://fake", max_concurrency=3,
                           http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow))) as client:
        result = await client.embed(texts)
    assert peak == 3 and len(fake.requests_to(EMBED)) == 10
    np.testing.assert_array_equal(result.embeddings, np.stack([fake_vector(t) for t in texts]))


async def test_async_upsert_takes_an_async_iterable(fake, make_async_client):
    """Double: /info advertises 10 documents per upload."""
    fake.limits = small_limits()

    async def documents():
        for i in range(12):
            await asyncio.sleep(0)
            yield {"id": str(i), "text": f"text {i}"}

    async with make_async_client() as client:
        await client.create_collection("docs")
        ids = await client.upsert("docs", documents())
        assert ids == [str(i) for i in range(12)] and await client.count("docs") == 12
    assert [len(s.body["documents"]) for s in fake.requests_to("/v1/collections/docs/documents")] == [10, 2]


# ---------------------------------------------------------------- the twins agree
async def test_sync_and_async_clients_agree(fake, make_client, make_async_client):
    """Double: both clients talk to one fake with small limits, so both split the same way."""
    fake.limits = small_limits()
    documents = [f"doc {i}" for i in range(9)]
    sync = make_client()
    sync_answers = {
        "embed": sync.embed(TEXTS, dimensions=8).embeddings,
        "rerank": sync.rerank("q", documents, top_n=5).results,
        "score": sync.score("q", documents).data,
        "create": sync.create_collection("c1", model="m"),
        "upsert": sync.upsert("c1", [{"id": d, "text": d} for d in documents]),
        "search": sync.search("c1", ["q1", "q2", "q3"], top_n=3),
        "get": sync.get_document("c1", "doc 4"),
        "list": sync.list_collections(),
        "health": sync.health(),
        "info": sync.info(),
        "deleted": sync.delete_collection("c1"),
    }
    async with make_async_client() as client:
        async_answers = {
            "embed": (await client.embed(TEXTS, dimensions=8)).embeddings,
            "rerank": (await client.rerank("q", documents, top_n=5)).results,
            "score": (await client.score("q", documents)).data,
            "create": await client.create_collection("c1", model="m"),
            "upsert": await client.upsert("c1", [{"id": d, "text": d} for d in documents]),
            "search": await client.search("c1", ["q1", "q2", "q3"], top_n=3),
            "get": await client.get_document("c1", "doc 4"),
            "list": await client.list_collections(),
            "health": await client.health(),
            "info": await client.info(),
            "deleted": await client.delete_collection("c1"),
        }
    np.testing.assert_array_equal(sync_answers.pop("embed"), async_answers.pop("embed"))
    assert sync_answers == async_answers
    assert sync_answers["deleted"].name == "c1" and len(sync_answers["search"]) == 3
    # The same requests, in any order (the sync client's chunks go out from threads).
    half = len(fake.seen) // 2
    requests = [sorted(json.dumps([s.method, s.path, s.body], sort_keys=True) for s in part)
                for part in (fake.seen[:half], fake.seen[half:])]
    assert requests[0] == requests[1]


def test_close_and_context_managers():
    """Double: none needed beyond a transport; checks who closes the pool."""
    own = Client(base_url="http://fake")
    with own:
        pass
    assert own.is_closed
    theirs = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with Client(base_url="http://fake", http_client=theirs):
        pass
    assert not theirs.is_closed  # a caller's own http_client is the caller's to close
    theirs.close()


async def test_async_close():
    client = AsyncClient(base_url="http://fake")
    async with client:
        pass
    assert client.is_closed
