"""The clients and the CLI against the real Ray Serve application (the `serve_app` fixture).

Answers are compared with the same models run in this process (`serve_app.engine(...)`), and the
requests a call makes are counted with an httpx event hook, so splitting is checked on the wire.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from clients import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
)
from deployments.engine import DEFAULT_INSTRUCTION
from tests.conftest import mixed_texts

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Bananas are rich in potassium.",
    "The stock market fell sharply on Monday.",
]


class Counted:
    """An httpx client whose requests are counted by path (an event hook sees each attempt)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.http = httpx.Client(event_hooks={"request": [lambda request: self.paths.append(request.url.path)]})

    def count(self, path: str) -> int:
        return self.paths.count(path)


@pytest.fixture(scope="module")
def client(serve_app):
    with Client(base_url=serve_app.url, api_key=serve_app.api_key) as c:
        yield c


@pytest.fixture
def counted(serve_app):
    counter = Counted()
    with Client(base_url=serve_app.url, api_key=serve_app.api_key, http_client=counter.http) as c:
        yield c, counter
    counter.http.close()


# ---------------------------------------------------------------- service
def test_health_and_info(client, serve_app):
    health = client.health()
    assert health.status == "ok" and health.deployments["Embedder"] == "ok" and health.deployments["Reranker"] == "ok"
    info = client.info()
    models = {m.id: m for m in info.models}
    assert models["tiny-qwen"].default and models["tiny-qwen"].dimensions == serve_app.engine("tiny-qwen").dimensions
    assert models["tiny-reranker"].kind == "reranker"
    assert (info.limits.max_inputs_per_request, info.limits.max_documents_per_request) == (64, 50)
    assert info.limits.max_request_bytes == 1 << 20


# ---------------------------------------------------------------- embeddings
def test_embed_over_the_limit_is_split_and_equals_the_engine(counted, serve_app):
    client, counter = counted
    texts = mixed_texts(150, seed=3, max_words=25)
    result = client.embed(texts)
    engine = serve_app.engine("tiny-qwen")
    assert result.embeddings.shape == (150, 64) and result.embeddings.dtype == np.float32
    np.testing.assert_allclose(result.embeddings, engine.embed(texts), atol=1e-5)
    assert counter.count("/v1/embeddings") == 3 and counter.count("/info") == 1  # 64 + 64 + 22
    assert result.model == "tiny-qwen" and result.usage.prompt_tokens == sum(engine.count_tokens(texts))


def test_embed_options_reach_the_model(client, serve_app):
    engine = serve_app.engine("tiny-qwen")
    query = "What is the capital of China?"
    np.testing.assert_allclose(client.embed(query).embeddings[0], engine.embed([query])[0], atol=1e-5)
    as_query = client.embed([query], input_type="query").embeddings
    np.testing.assert_allclose(as_query, engine.embed([query], instruction=DEFAULT_INSTRUCTION), atol=1e-5)
    custom = client.embed([query], instruction="Find the city").embeddings
    np.testing.assert_allclose(custom, engine.embed([query], instruction="Find the city"), atol=1e-5)
    short = client.embed(DOCUMENTS, dimensions=32).embeddings
    np.testing.assert_allclose(short, engine.embed(DOCUMENTS, dimensions=32), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)
    minilm = client.embed(DOCUMENTS, model="all-MiniLM-L6-v2")
    assert minilm.model == "all-MiniLM-L6-v2" and minilm.dimensions == 384
    np.testing.assert_allclose(minilm.embeddings, serve_app.engine("all-MiniLM-L6-v2").embed(DOCUMENTS), atol=1e-5)


# ---------------------------------------------------------------- rerank and score
def test_rerank_over_the_limit_is_split_and_merged_exactly(counted, serve_app):
    """The merged ranking is the one-request ranking: same documents in the same order, scores equal
    to float rounding (batches of different composition round differently in the 7th digit)."""
    client, counter = counted
    documents = mixed_texts(120, seed=8, max_words=20)
    query = "Which protein drives cancer cell growth?"
    expected = serve_app.engine("tiny-reranker").score(query, documents)
    result = client.rerank(query, documents, top_n=7)
    assert counter.count("/v1/rerank") == 3  # 50 + 50 + 20
    assert [r.index for r in result.results] == np.argsort(-expected, kind="stable")[:7].tolist()
    for r in result.results:
        assert r.relevance_score == pytest.approx(float(expected[r.index]), abs=1e-5)
        assert r.document is not None and r.document.text == documents[r.index]
    everything = client.rerank(query, documents, return_documents=False)
    assert len(everything.results) == 120 and everything.results[0].document is None
    assert [r.index for r in everything.results[:7]] == [r.index for r in result.results]
    assert [r.relevance_score for r in everything.results[:7]] == pytest.approx(
        [r.relevance_score for r in result.results], abs=1e-6)


def test_rerank_instruction_and_model(client, serve_app):
    engine = serve_app.engine("tiny-reranker")
    result = client.rerank("gravity bends light", DOCUMENTS, instruction="Judge the claim", model="tiny-reranker")
    got = {r.index: r.relevance_score for r in result.results}
    np.testing.assert_allclose([got[i] for i in range(4)],
                               engine.score("gravity bends light", DOCUMENTS, instruction="Judge the claim"),
                               atol=1e-5)


def test_score_one_to_many_split_and_pairwise(counted, serve_app):
    client, counter = counted
    engine = serve_app.engine("tiny-reranker")
    documents = mixed_texts(60, seed=12, max_words=15)
    one = client.score("capital", documents)
    assert counter.count("/score") == 2 and [d.index for d in one.data] == list(range(60))
    np.testing.assert_allclose([d.score for d in one.data], engine.score("capital", documents), atol=1e-5)
    queries = ["capital", "gravity", "fruit", "market"]
    pairs = client.score(queries, DOCUMENTS)
    np.testing.assert_allclose([d.score for d in pairs.data],
                               [engine.score(q, [d])[0] for q, d in zip(queries, DOCUMENTS, strict=True)],
                               atol=1e-5)


# ---------------------------------------------------------------- errors
def test_errors_are_typed_and_carry_the_servers_envelope(client, serve_app):
    with Client(base_url=serve_app.url, api_key="wrong-key") as stranger:
        with pytest.raises(AuthenticationError) as caught:
            stranger.embed("x")
        assert stranger.health().status == "ok"  # /health needs no key
    e = caught.value
    assert (e.status_code, e.type, e.code) == (401, "authentication_error", "invalid_api_key")
    assert e.request_id == e.request.headers["x-request-id"] == e.response.headers["x-request-id"]

    with pytest.raises(NotFoundError) as caught:
        client.embed("x", model="text-embedding-3-small")
    assert caught.value.param == "model" and "tiny-qwen" in caught.value.message
    with pytest.raises(BadRequestError) as caught:
        client.embed("x", dimensions=16)
    assert (caught.value.status_code, caught.value.param) == (422, "dimensions")
    with pytest.raises(BadRequestError) as caught:
        client.rerank("q", ["d"], top_n=0)
    assert caught.value.param == "top_n"
    with pytest.raises(RequestTooLargeError) as caught:  # one input cannot be split
        client.embed("x" * (1 << 20))
    assert caught.value.code == "request_too_large" and "bytes" in caught.value.message


async def test_a_real_429_is_raised_without_retries_and_absorbed_with_them(serve_app):
    # tiny-backpressure takes one request at a time and queues one more: 8 at once are refused
    # with Retry-After: 2, which the retry loop honours.
    texts = mixed_texts(40, seed=10, min_words=40, max_words=60)

    async def burst(max_retries: int) -> list:
        async with AsyncClient(base_url=serve_app.url, api_key=serve_app.api_key, max_retries=max_retries) as c:
            return await asyncio.gather(*(c.embed(texts, model="tiny-backpressure") for _ in range(8)),
                                        return_exceptions=True)

    refused = [r for r in await burst(0) if isinstance(r, Exception)]
    assert refused and all(isinstance(r, RateLimitError) for r in refused)
    assert refused[0].retry_after == 2.0 and refused[0].type == "rate_limit_error"
    answers = await burst(10)
    assert all(not isinstance(a, Exception) for a in answers), answers
    expected = serve_app.engine("tiny-qwen").embed(texts)
    for answer in answers:
        np.testing.assert_allclose(answer.embeddings, expected, atol=1e-5)


async def test_sync_and_async_clients_agree_on_the_real_server(client, serve_app):
    texts = mixed_texts(70, seed=21, max_words=12)
    async with AsyncClient(base_url=serve_app.url, api_key=serve_app.api_key) as aclient:
        vectors = (await aclient.embed(texts)).embeddings
        ranking = await aclient.rerank("a query", texts[:55], top_n=5)
        scores = await aclient.score("a query", texts[:55])
    # Equal to float32 rounding: the server batches each request with whatever else is queued.
    np.testing.assert_allclose(vectors, client.embed(texts).embeddings, atol=1e-5)
    sync_ranking = client.rerank("a query", texts[:55], top_n=5)
    assert [r.index for r in ranking.results] == [r.index for r in sync_ranking.results]
    np.testing.assert_allclose([r.relevance_score for r in ranking.results],
                               [r.relevance_score for r in sync_ranking.results], atol=1e-5)
    np.testing.assert_allclose([d.score for d in scores.data],
                               [d.score for d in client.score("a query", texts[:55]).data], atol=1e-5)


# ---------------------------------------------------------------- the command line
def run_cli(serve_app, *args: str, api_key: str | None = None, stdin: str | None = None,
            command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QWEN3_SEARCH_BASE_URL": serve_app.url,
           "QWEN3_SEARCH_API_KEY": api_key or serve_app.api_key}
    return subprocess.run([*(command or [sys.executable, "-m", "clients.cli"]), *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=300)


def test_cli_health_info_and_errors(serve_app):
    health = run_cli(serve_app, "health")
    assert health.returncode == 0 and health.stdout.startswith("status: ok"), health.stderr
    info = run_cli(serve_app, "info", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["limits"]["max_inputs_per_request"] == 64
    table = run_cli(serve_app, "info").stdout
    assert "tiny-qwen *" in table and "max_documents_per_request=50" in table
    denied = run_cli(serve_app, "embed", "x", api_key="wrong-key")
    assert denied.returncode == 1 and "401 authentication_error" in denied.stderr and denied.stdout == ""
    missing = run_cli(serve_app, "embed", "x", "--model", "nope", "--json")
    assert missing.returncode == 1 and json.loads(missing.stderr)["error"]["status"] == 404


def test_cli_embed_matches_the_engine(serve_app):
    engine = serve_app.engine("tiny-qwen")
    result = run_cli(serve_app, "--json", "embed", "hello world", "a second text")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == "tiny-qwen" and body["dimensions"] == 64
    np.testing.assert_allclose(body["embeddings"], engine.embed(["hello world", "a second text"]), atol=1e-5)
    piped = run_cli(serve_app, "embed", "--vectors", "--dimensions", "32", stdin="line one\n\nline two\n")
    rows = [json.loads(line) for line in piped.stdout.splitlines()]
    np.testing.assert_allclose(rows, engine.embed(["line one", "line two"], dimensions=32), atol=1e-5)
    summary = run_cli(serve_app, "embed", "hello world").stdout.splitlines()
    assert summary[0].startswith("model tiny-qwen · 1 input · 64 dimensions")
    assert summary[2].split()[:2] == ["0", "1.000"] and summary[2].endswith("hello world")


def test_cli_rerank_prints_the_ranking(serve_app):
    expected = np.argsort(-serve_app.engine("tiny-reranker").score("capital", DOCUMENTS), kind="stable")
    result = run_cli(serve_app, "rerank", "capital", *DOCUMENTS, "--top-n", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["rank", "index", "score", "document"]
    assert [int(line.split()[1]) for line in lines[2:]] == expected[:3].tolist()
    assert lines[2].split()[0] == "1" and DOCUMENTS[expected[0]][:20] in lines[2]


def test_the_console_script_is_installed(serve_app):
    script = shutil.which("qwen3-search")
    if script is None:
        pytest.skip("qwen3-search is not on PATH (pip install -e .)")
    result = run_cli(serve_app, "health", "--json", command=[script])
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "ok"


def test_cli_usage_errors_exit_2(serve_app):
    assert run_cli(serve_app, "frobnicate").returncode == 2
    assert run_cli(serve_app, "search", "c", "q", "--filter", "[1]").returncode == 2
    assert run_cli(serve_app, "ingest", "c", f"/nonexistent/{uuid.uuid4().hex}.jsonl").returncode == 2
