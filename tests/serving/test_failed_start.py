"""A start that cannot succeed says why, once (issue 15, item 5).

In-process, without a Ray cluster: the build-time check of the model sources, the application it
builds when a model cannot load (the ingress alone), that ingress's answers over ASGITransport,
and the ingress's reading of a deployment that Ray reports failed. Where Ray's controller or a
`DeploymentHandle` would be needed, a labelled test double stands in for it.
"""

from pathlib import Path
from typing import Any

import httpx
import huggingface_hub
import pytest
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import DeploymentUnavailableError

from deployments.app import build_app, model_source_problems, startup_failure_line
from deployments.catalog import ModelEntry
from deployments.config import AppArgs, LimitsConfig
from deployments.engine.model_files import source_problem
from deployments.http import create_app
from deployments.serving.ingress import HandleModelService
from deployments.serving.status import DeploymentStatuses, failure_cause

OFFLINE = {"HF_HUB_OFFLINE": "1"}
NOT_CACHED = "nobody-at-all/not-a-cached-model"


# ---------------------------------------------------------------- what the build can tell without loading
def test_a_missing_folder_or_a_file_is_a_problem_an_existing_folder_is_not(tmp_path: Path):
    (tmp_path / "weights.bin").write_bytes(b"0")
    assert source_problem(str(tmp_path / "absent")) == f"the model folder {str(tmp_path / 'absent')!r} does not exist"
    assert "is a file, not a model folder" in (source_problem(str(tmp_path / "weights.bin")) or "")
    assert source_problem(str(tmp_path)) is None


def test_an_uncached_hub_id_offline_is_a_problem_that_names_the_switch():
    problem = source_problem(NOT_CACHED, environ=OFFLINE)
    assert problem is not None and "not in the Hugging Face cache" in problem and "HF_HUB_OFFLINE" in problem


def _hub_answers(monkeypatch: pytest.MonkeyPatch, outcome: Any) -> list[str]:
    """Double of the hub's metadata call: `outcome` is raised (an exception) or returned."""
    asked: list[str] = []

    def fake_metadata(url: str, timeout: float | None = None, **_: Any) -> Any:
        asked.append(url)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", fake_metadata)
    return asked


def test_an_unreachable_hub_is_a_problem(monkeypatch):
    asked = _hub_answers(monkeypatch, httpx.ConnectError("[Errno -2] Name or service not known"))
    problem = source_problem(NOT_CACHED, environ={})
    assert asked and problem is not None and "cannot be reached" in problem and "Name or service" in problem


def test_a_slow_or_failing_hub_is_left_to_the_replica(monkeypatch):
    _hub_answers(monkeypatch, httpx.ReadTimeout("slow"))
    assert source_problem(NOT_CACHED, environ={}) is None
    response = httpx.Response(500, request=httpx.Request("HEAD", "https://hub/x"))
    _hub_answers(monkeypatch, huggingface_hub.errors.HfHubHTTPError("server error", response=response))
    assert source_problem(NOT_CACHED, environ={}) is None
    _hub_answers(monkeypatch, object())  # the hub has it
    assert source_problem(NOT_CACHED, environ={}) is None


def test_a_model_the_hub_does_not_have_is_a_problem(monkeypatch):
    response = httpx.Response(404, request=httpx.Request("HEAD", "https://hub/x"))
    _hub_answers(monkeypatch, huggingface_hub.errors.RepositoryNotFoundError("404", response=response))
    problem = source_problem(NOT_CACHED, environ={}) or ""
    assert "neither a local folder nor a model on the Hugging Face hub" in problem


def _args(tmp_path: Path, **changes: Any) -> AppArgs:
    return AppArgs.model_validate({"embedding_models": [{"model": str(tmp_path / "no-embedder")}],
                                   "reranker_models": [{"model": NOT_CACHED}],
                                   "index": {"storage_path": str(tmp_path / "index")}, **changes})


def test_problems_name_each_deployment_and_the_line_says_what_to_change(tmp_path):
    problems = model_source_problems(_args(tmp_path), environ=OFFLINE)
    assert set(problems) == {"Embedder", "Reranker"}
    line = startup_failure_line(problems)
    assert "\n" not in line and "Embedder: the model folder" in line and "EMBEDDER_MODEL" in line
    assert "random_model" in line and "HF_HUB_OFFLINE" in line


def test_a_failed_build_is_the_ingress_alone_with_the_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = build_app(_args(tmp_path, check_model_sources="always"))
    ingress = app._bound_deployment  # Ray's Application holds its root deployment here
    assert ingress.name == "APIIngress"
    kwargs = ingress.init_kwargs
    assert kwargs["handles"] == {} and kwargs["pipeline"] is None and set(kwargs["failures"]) == {"Embedder",
                                                                                                   "Reranker"}
    assert kwargs["startup_failure"].startswith("qwen3-search cannot start its models: Embedder:")


def test_never_leaves_the_sources_to_the_replicas(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = build_app(_args(tmp_path, check_model_sources="never"))
    assert "failures" not in app._bound_deployment.init_kwargs  # the whole application, as configured


# ---------------------------------------------------------------- what the failed-start ingress answers
def _entries() -> list[ModelEntry]:
    return [ModelEntry(name="emb", kind="embedding", source="Qwen/Qwen3-Embedding-0.6B", deployment="Embedder",
                       default=True),
            ModelEntry(name="rr", kind="reranker", source="Qwen/Qwen3-Reranker-0.6B", deployment="Reranker",
                       default=True)]


def _service(handles: dict[str, Any], **kwargs: Any) -> HandleModelService:
    return HandleModelService(models=_entries(), handles=handles, pipeline=kwargs.pop("pipeline", None),
                              components=kwargs.pop("components", {}), limits=LimitsConfig(),
                              api_keys_env="NO_SUCH_KEYS_ENV", api_keys_file_env="NO_SUCH_KEYS_FILE_ENV", **kwargs)


async def _client(service: HandleModelService) -> httpx.AsyncClient:
    app = create_app(lambda: service, echo_request_id=True)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://app")


async def test_the_failed_start_ingress_says_why_on_health_and_every_route():
    line = "qwen3-search cannot start its models: Embedder: no weights. To fix it, set EMBEDDER_MODEL."
    service = _service({}, failures={"Embedder": "no weights"}, startup_failure=line)
    async with await _client(service) as http:
        health = await http.get("/health")
        assert health.status_code == 503
        assert health.json()["deployments"] == {"Embedder": "not started: no weights",
                                                "Reranker": "not started: another model cannot load"}
        for method, path, body in [("GET", "/info", None), ("POST", "/v1/embeddings", {"input": "hi"}),
                                   ("POST", "/v1/rerank", {"query": "q", "documents": ["d"]}),
                                   ("POST", "/v1/collections/c/search", {"query": "q"}),
                                   ("GET", "/v1/collections", None)]:
            r = await http.request(method, path, json=body)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["content-type"] == "application/json" and "retry-after" not in r.headers
            assert r.json()["error"] == {"message": line, "type": "service_unavailable_error", "param": None,
                                         "code": "model_failed"}
        assert (await http.get("/v1/models")).status_code == 200  # what is configured is still known


# ---------------------------------------------------------------- a deployment Ray reports failed
RAY_MESSAGE = (
    "The deployment failed to start 3 times in a row. This may be due to a problem with its constructor or "
    "initial health check failing. See controller logs for details. Error:\n"
    "ray::ServeReplica:qwen3-search:Embedder.initialize_and_get_metadata() (pid=1, ip=10.0.0.1)\n"
    "  File \"/x/replica.py\", line 1928, in initialize\n    raise RuntimeError(traceback.format_exc()) from None\n"
    "RuntimeError: Traceback (most recent call last):\n  File \"/x/replicas.py\", line 69, in _load_engine\n"
    "deployments.engine.errors.ModelNotFoundError: embedding model 'emb' cannot load: no weights here\n"
)


def test_the_cause_is_the_last_exception_line_without_its_class_path():
    assert failure_cause(RAY_MESSAGE) == "embedding model 'emb' cannot load: no weights here"
    assert failure_cause("") == "no cause reported"
    assert failure_cause("Deployment is healthy.") == "Deployment is healthy."


class FailedHandle:
    """Double of a `DeploymentHandle` to a deployment that failed to deploy: every call raises what Ray
    raises then (the real `DeploymentUnavailableError`, which names the deployment but not the cause)."""

    def __init__(self, deployment: str) -> None:
        self.error = DeploymentUnavailableError(DeploymentID(name=deployment, app_name="qwen3-search"))

    def __getattr__(self, method: str) -> Any:
        error = self.error

        class _Method:
            async def remote(self, *args: Any) -> Any:
                raise error

        return _Method()


async def test_a_deployment_ray_reports_failed_is_503_model_failed_with_its_cause():
    service = _service({"Embedder": FailedHandle("Embedder"), "Reranker": FailedHandle("Reranker")})
    # Double of the Serve controller's status (serve.status()), as read_serve_status returns it.
    service.statuses = DeploymentStatuses(lambda: {"Embedder": ("DEPLOY_FAILED", RAY_MESSAGE),
                                                   "Reranker": ("UPDATING", "A replica failed to start with "
                                                                "exception. Retrying 2 more time(s). Error:\n"
                                                                "ValueError: bad config")})
    async with await _client(service) as http:
        r = await http.post("/v1/embeddings", json={"input": "hi"})
        assert r.status_code == 503 and "retry-after" not in r.headers
        error = r.json()["error"]
        assert error["code"] == "model_failed"
        assert error["message"].startswith("Embedder failed to start (DEPLOY_FAILED): embedding model 'emb' cannot "
                                           "load: no weights here; it stays down")
        info = await http.get("/info")
        assert info.status_code == 503 and info.json()["error"]["code"] == "model_failed"
        health = (await http.get("/health")).json()["deployments"]
        assert health["Embedder"] == "DEPLOY_FAILED: embedding model 'emb' cannot load: no weights here"
        assert health["Reranker"] == "UPDATING, retrying a replica that failed to start: bad config"
