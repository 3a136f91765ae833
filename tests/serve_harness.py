"""Starting and stopping the real Ray Serve application the HTTP tests talk to."""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class ServeApp:
    url: str
    api_key: str
    folders: dict[str, Path]
    storage: Path
    name: str = "qwen3-search"
    route_prefix: str = "/"
    args: dict[str, Any] | None = None
    """The builder's arguments; None: `app_args_for_tests`."""
    build_environment: dict[str, str] = field(default_factory=dict)
    """Variables set in this process while `build_app` reads the environment (as `serve run` would see them)."""
    _engines: dict[str, Any] = field(default_factory=dict)

    def deploy(self) -> None:
        """(Re)deploy the application and wait until /health answers 200."""
        import pytest
        from ray import serve

        from deployments.app import build_app

        with pytest.MonkeyPatch.context() as environment:
            for key, value in self.build_environment.items():
                environment.setenv(key, value)
            application = build_app(self.args or app_args_for_tests(self.folders, self.storage))
        serve.run(application, name=self.name, route_prefix=self.route_prefix)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the Serve application did not become healthy in 180 s")

    def restart(self) -> None:
        """Delete the whole application (every replica stops) and deploy it again on the same storage."""

        self.delete()
        self.deploy()

    def delete(self) -> None:
        from ray import serve

        serve.delete(self.name)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=120, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=120, **kwargs)

    def engine(self, name: str) -> Any:
        """The same model loaded in the test process, to compare HTTP answers with."""
        if name not in self._engines:
            from deployments.engine import EmbeddingEngine, RerankEngine

            folder = str(self.folders[name])
            load = RerankEngine.load if "reranker" in name else EmbeddingEngine.load
            self._engines[name] = load(folder, dtype="float32")
        return self._engines[name]

    def stop(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


EDGE_ENVIRONMENT = {
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "deployments.http.edge:proxy_middlewares",
    "QWEN3_SEARCH_HEADER_TIMEOUT_S": "2",
    "QWEN3_SEARCH_BODY_TIMEOUT_S": "3",
    "QWEN3_SEARCH_MAX_IN_FLIGHT": "32",  # the ingress's max_ongoing_requests below
}


def app_args_for_tests(folders: dict[str, Path], storage: Path) -> dict[str, Any]:
    small = {"ray_actor_options": {"num_cpus": 0.5}, "health_check_period_s": 1.0, "health_check_timeout_s": 10.0}
    args: dict[str, Any] = {
        "embedding_models": [
            {"model": str(folders["tiny-qwen"]), "name": "tiny-qwen", "batch_wait_ms": 20,
             "deployment": {**small, "max_ongoing_requests": 64}},
            {"model": str(folders["all-MiniLM-L6-v2"]), "name": "all-MiniLM-L6-v2", "deployment": small},
            {"model": str(folders["tiny-qwen"]), "name": "tiny-tokens", "max_batch_tokens": 64,
             "accept_token_ids": True,
             "max_queued_tokens": 300, "deployment": {**small, "retry_after_s": 3}},
            {"model": str(folders["tiny-qwen"]), "name": "tiny-backpressure",
             "deployment": {**small, "max_ongoing_requests": 1, "max_queued_requests": 1, "retry_after_s": 2}},
        ],
        "reranker_models": [
            {"model": str(folders["tiny-reranker"]), "name": "tiny-reranker", "deployment": small},
        ],
        "limits": {"max_inputs_per_request": 64, "max_documents_per_request": 50, "max_request_bytes": 1 << 20,
                   "max_documents_per_upsert": 200, "max_top_k": 200, "max_top_n": 50},
        "index": {"storage_path": str(storage), "shards": 2, "hnsw_threshold": 40,
                  "deployment": {**small, "max_ongoing_requests": 64, "max_queued_requests": -1}},
        "pipeline": {**small, "max_ongoing_requests": 64, "max_queued_requests": -1},
        # A bounded queue at the proxy, as in serve_config.yaml: a burst beyond it is 429 at once.
        "ingress": {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 32, "max_queued_requests": 64},
        # Short, so that a killed replica shows as 503 before its replacement (seconds here) is up.
        "health_timeout_s": 2.0,
    }
    # The exact path: the HTTP answers are compared with the model cards' code and with engine() in float32
    # (`auto` is bfloat16 on CPUs with bfloat16 units).
    for model in args["embedding_models"] + args["reranker_models"]:
        model["dtype"] = "float32"
    return args


def model_folders(model_factory: Any, minilm_dir: Path, tokenizer: str) -> dict[str, Path]:
    """The model folders `app_args_for_tests` serves."""
    return {
        "tiny-qwen": model_factory("embedding", tokenizer),
        "tiny-reranker": model_factory("reranker", tokenizer),
        "all-MiniLM-L6-v2": minilm_dir,
    }


def start_ray(*, port: int, api_key: str) -> str:
    """Ray and Serve's HTTP proxy on 127.0.0.1:`port`, as every application of the suite runs on them; the
    proxy's base URL. Replicas import this checkout's code: Ray's processes inherit the environment of the
    driver that starts them (PYTHONPATH included)."""
    import ray
    from ray import serve

    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "QWEN3_SEARCH_API_KEYS": api_key + ",test-key-2"}
    # The edge in every proxy (as the Dockerfile sets it), with deadlines short enough for the fault tests:
    # Ray's processes inherit this environment from the driver that starts them.
    os.environ.update(EDGE_ENVIRONMENT)
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=bool(os.environ.get("TEST_RAY_LOGS")),
             runtime_env={"env_vars": env})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def start_serve_app(model_factory: Any, minilm_dir: Path, *, port: int, api_key: str, tokenizer: str,
                    storage: Path) -> ServeApp:
    url = start_ray(port=port, api_key=api_key)
    app = ServeApp(url=url, api_key=api_key, folders=model_folders(model_factory, minilm_dir, tokenizer),
                   storage=storage)
    app.deploy()
    return app
