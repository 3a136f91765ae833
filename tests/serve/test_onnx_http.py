"""A Qwen3-Reranker ONNX folder served over HTTP by real Ray Serve, picked by `backend: auto`.

The folder is what `qwen3-search export-onnx` writes (the public ONNX release's layout), named
by $RERANKER_MODEL over a config that names the transformers folder, as
`RERANKER_MODEL=/path/to/onnx-folder serve run serve_config.yaml` does.
"""

import socket

import httpx
import numpy as np
import pytest

from clients.cli import main as cli_main
from deployments.engine import RerankEngine
from tests.conftest import default_tokenizer_source, mixed_texts
from tests.model_card_reference import CardOnnxReranker

APP = "onnx-reranker"
QUERY = "Which protein drives cancer cell growth in the ocean city?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def folders(model_factory, tmp_path_factory):
    source = model_factory("reranker", default_tokenizer_source())
    onnx_dir = tmp_path_factory.mktemp("served-onnx-reranker")
    assert cli_main(["export-onnx", str(source), str(onnx_dir)]) == 0
    return source, onnx_dir


@pytest.fixture(scope="module")
def onnx_app(request, folders, model_factory, tmp_path_factory):
    """(base URL, headers): its own Ray when none runs, else a second application beside the suite's."""
    import ray
    from ray import serve

    from deployments.app import build_app

    source, onnx_dir = folders
    own_ray = not ray.is_initialized()
    if own_ray:
        port = _free_port()
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}})
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        url, headers = f"http://127.0.0.1:{port}/onnx", {}
    else:  # the session's application holds Ray and Serve's proxy (and sets API keys)
        suite = request.getfixturevalue("serve_app")
        url, headers = f"{suite.url}/onnx", suite.headers
    small = {"ray_actor_options": {"num_cpus": 0.5}, "health_check_period_s": 1.0}
    args = {
        "embedding_models": [{"model": str(model_factory("embedding", default_tokenizer_source())), "name": "emb",
                              "deployment": small}],
        "reranker_models": [{"model": str(source), "name": "onnx-reranker", "deployment": small}],
        "index": {"storage_path": str(tmp_path_factory.mktemp("onnx-index")), "shards": 1,
                  "deployment": small},
        "pipeline": small,
        "ingress": {"ray_actor_options": {"num_cpus": 0.1}},
    }
    patch = pytest.MonkeyPatch()
    patch.setenv("RERANKER_MODEL", str(onnx_dir))  # read by build_app in this process
    patch.delenv("RERANKER_BACKEND", raising=False)
    try:
        serve.run(build_app(args), name=APP, route_prefix="/onnx")
    finally:
        patch.undo()
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        assert client.get("/health").status_code == 200
        yield client
    serve.delete(APP)
    if own_ray:
        serve.shutdown()
        ray.shutdown()


def test_info_names_the_onnx_backend(onnx_app):
    models = {m["id"]: m for m in onnx_app.get("/info").json()["models"]}
    assert models["onnx-reranker"]["backend"] == "onnx" and models["onnx-reranker"]["kind"] == "reranker"


def test_http_scores_equal_the_model_card_and_the_torch_backend(onnx_app, folders):
    source, onnx_dir = folders
    documents = mixed_texts(12, seed=31, max_words=160)
    body = onnx_app.post("/v1/rerank", json={"query": QUERY, "documents": documents, "model": "onnx-reranker"})
    assert body.status_code == 200, body.text
    by_index = {r["index"]: r["relevance_score"] for r in body.json()["results"]}
    served = np.array([by_index[i] for i in range(len(documents))])
    card = np.array(CardOnnxReranker(str(onnx_dir)).score(QUERY, documents))
    assert card.std() > 0.005
    np.testing.assert_allclose(served, card, atol=1e-4)
    torch_scores = RerankEngine.load(str(source), backend="torch", dtype="float32").score(QUERY, documents)
    np.testing.assert_allclose(served, torch_scores, atol=1e-4)

    cohere = onnx_app.post("/v2/rerank", json={"query": QUERY, "documents": documents[:5], "top_n": 5}).json()
    np.testing.assert_allclose([r["relevance_score"] for r in cohere["results"]],
                               sorted(card[:5], reverse=True), atol=1e-4)
