"""The Serve ingress: the FastAPI app of `deployments.http`, served by a Ray Serve deployment
that reaches the model deployments and the search pipeline through `DeploymentHandle`s."""

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from ..catalog import ModelEntry, ModelKind, resolve_entry
from ..config import LimitsConfig
from ..engine.tokenization import TokenSpan
from ..errors import ModelFailed
from ..http import create_app
from ..http.metrics import APIMetrics
from ..index.base import CollectionInfo
from ..jobs import (
    DecodeJob,
    EmbedJob,
    EmbedOutcome,
    QueueFullError,
    ReplicaReport,
    RerankJob,
    RerankOutcome,
    SearchJob,
    SearchOutcome,
    TokenizeJob,
    UpsertOutcome,
    unwrap,
)
from .status import DeploymentStatuses

__all__ = ["APIIngress", "HandleModelService", "HandleSearchService", "read_api_keys"]

_KEY_REFRESH_S = 10.0
_EDGE = "deployments.http.edge:proxy_middlewares"
logger = logging.getLogger(__name__)


def read_api_keys(env_name: str, file_env_name: str, environ: dict[str, str] | None = None
                  ) -> tuple[frozenset[str] | None, str | None]:
    """Keys from $env_name (comma-separated) and the file named by $file_env_name (one per line),
    and what is wrong with a configured source.

    (None, None): neither variable set (or both empty): authentication is off. A key file that
    is named but missing, unreadable or empty gives an empty set, and every request is refused
    (fail closed) until it holds a key again.
    """
    env = os.environ if environ is None else environ
    listed, path = env.get(env_name, "").strip(), env.get(file_env_name, "").strip()
    if not listed and not path:
        return None, None
    keys = {k.strip() for k in listed.split(",") if k.strip()}
    problem = None
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                keys |= {line.strip() for line in f if line.strip() and not line.startswith("#")}
            problem = f"API key file {path} (${file_env_name}) holds no key"
        except OSError as exc:
            problem = f"API key file {path} (${file_env_name}) cannot be read: {exc.strerror or exc}"
    if not keys:
        problem = problem or f"${env_name} holds no key"
    return frozenset(keys), (problem if not keys else None)


async def _call(target: Any, method: str, *args: Any, what: str, statuses: DeploymentStatuses | None = None) -> Any:
    """`target.method.remote(*args)` with Serve's refusals turned into our typed errors."""
    try:
        return unwrap(await getattr(target, method).remote(*args))
    except BackPressureError as exc:
        # Serve's own handler would answer in plain text; ours keeps the error envelope.
        raise QueueFullError(f"{what} is at capacity ({exc.message}); retry later",
                             retry_after_s=exc.retry_after_s or 1.0) from exc
    except DeploymentUnavailableError as exc:  # failed to deploy (here, or a deployment the pipeline called)
        raise await (statuses or DeploymentStatuses()).failed_error(exc) from None


class HandleSearchService:
    """The SearchService of the HTTP layer: one typed call per pipeline method."""

    def __init__(self, pipeline: Any, statuses: DeploymentStatuses | None = None, failure: str | None = None,
                 on_report: Callable[[str, ReplicaReport], None] | None = None) -> None:
        self._pipeline = pipeline
        self._statuses = statuses
        self._failure = failure
        self._on_report = on_report
        """Where the model replicas' reports that come back through the pipeline go (the metrics)."""

    def _record(self, reports: list[tuple[str, ReplicaReport]]) -> None:
        if self._on_report is not None:
            for model, report in reports:
                self._on_report(model, report)

    async def _call(self, method: str, *args: Any) -> Any:
        if self._failure is not None:
            raise ModelFailed(self._failure)
        return await _call(self._pipeline, method, *args, what="the search pipeline", statuses=self._statuses)

    async def create_collection(self, name: str, model: str | None, dimensions: int | None, index: str,
                                lexical_language: str = "simple") -> tuple[CollectionInfo, bool]:
        return await self._call("create_collection", name, model, dimensions, index, lexical_language)

    async def list_collections(self) -> list[CollectionInfo]:
        return await self._call("list_collections")

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self._call("get_collection", name)

    async def delete_collection(self, name: str) -> None:
        await self._call("delete_collection", name)

    async def upsert(self, name: str, documents: list[tuple[str | None, str, dict | None]], truncate: bool
                     ) -> list[str]:
        outcome: UpsertOutcome = await self._call("upsert", name, documents, truncate)
        self._record(outcome.reports)
        return outcome.ids

    async def get_document(self, name: str, doc_id: str) -> dict:
        return await self._call("get_document", name, doc_id)

    async def delete_document(self, name: str, doc_id: str) -> None:
        await self._call("delete_document", name, doc_id)

    async def search(self, name: str, job: SearchJob) -> SearchOutcome:
        outcome: SearchOutcome = await self._call("search", name, job)
        self._record(outcome.reports)
        return outcome


class HandleModelService:
    """The ModelService of the HTTP layer, backed by Serve deployment handles."""

    def __init__(self, *, models: list[ModelEntry], handles: dict[str, Any], pipeline: Any,
                 components: dict[str, Any], limits: LimitsConfig, api_keys_env: str, api_keys_file_env: str,
                 health_timeout_s: float = 5.0, failures: dict[str, str] | None = None,
                 startup_failure: str | None = None) -> None:
        self.entries = [entry.bound(handles) for entry in models]
        self.statuses = DeploymentStatuses()
        self.failures = dict(failures or {})
        """Deployment -> why it was not started (the build found that its model cannot load). The application
        is then this ingress alone: /health says so, and every route that needs a model answers 503
        `model_failed` with `startup_failure`, the line the build logged."""
        self.startup_failure = startup_failure or "; ".join(f"{n}: {c}" for n, c in self.failures.items()) or None
        self._pipeline = pipeline
        self._components = components
        self.limits = limits
        self.metrics = APIMetrics()
        self.search = HandleSearchService(pipeline, self.statuses, failure=self.startup_failure,
                                          on_report=self.metrics.record_replica_report)
        self._keys_env, self._keys_file_env = api_keys_env, api_keys_file_env
        self._keys, self.key_problem = read_api_keys(api_keys_env, api_keys_file_env)
        self._keys_read_at = time.monotonic()
        self._described: dict[str, dict[str, Any]] = {}
        self._in_flight: dict[str, int] = {}
        self.health_timeout_s = health_timeout_s

    def api_keys(self) -> frozenset[str] | None:
        # Re-read now and then, so a rotated Secret takes effect without a restart.
        if time.monotonic() - self._keys_read_at > _KEY_REFRESH_S:
            self._keys, self.key_problem = read_api_keys(self._keys_env, self._keys_file_env)
            self._keys_read_at = time.monotonic()
        return self._keys

    def resolve(self, kind: ModelKind, name: str | None) -> ModelEntry:
        return resolve_entry(self.entries, kind, name)

    async def _entry_call(self, entry: ModelEntry, method: str, *args: Any) -> Any:
        if self.startup_failure:
            raise ModelFailed(self.startup_failure)
        return await _call(entry.handle, method, *args, what=f"model {entry.name!r}", statuses=self.statuses)

    async def _model_call(self, entry: ModelEntry, method: str, job: EmbedJob | RerankJob) -> Any:
        in_flight = self._in_flight.get(entry.name, 0)
        if entry.admits is not None and in_flight >= entry.admits:
            # What Ray would answer after routing (BackPressureError), answered before any of it: under a
            # burst that is the difference between a 429 in milliseconds and one in seconds.
            raise QueueFullError(f"model {entry.name!r} is at capacity ({in_flight} requests in flight from this "
                                 f"ingress, the most it admits is {entry.admits}); retry later",
                                 retry_after_s=entry.retry_after_s)
        self._in_flight[entry.name] = in_flight + 1
        gauge = self.metrics.in_flight.labels(entry.name)
        gauge.inc()
        try:
            outcome = await self._entry_call(entry, method, job)
        finally:
            gauge.dec()
            self._in_flight[entry.name] -= 1
        self.metrics.record_model_call(entry.name, entry.kind, job.count, outcome.timings.tokens,
                                       outcome.timings.queue_s, outcome.timings.inference_s, outcome.report)
        return outcome

    async def embed(self, entry: ModelEntry, job: EmbedJob) -> EmbedOutcome:
        return await self._model_call(entry, "embed", job)

    async def rerank(self, entry: ModelEntry, job: RerankJob) -> RerankOutcome:
        return await self._model_call(entry, "rerank", job)

    async def tokenize(self, entry: ModelEntry, job: TokenizeJob) -> list[list[TokenSpan]]:
        result: list[list[TokenSpan]] = await self._entry_call(entry, "tokenize", job)
        return result

    async def decode(self, entry: ModelEntry, job: DecodeJob) -> list[str]:
        result: list[str] = await self._entry_call(entry, "decode", job)
        return result

    async def describe(self) -> list[dict[str, Any]]:
        missing = [e for e in self.entries if e.name not in self._described]
        answers = await asyncio.gather(*(self._entry_call(e, "describe") for e in missing))
        for entry, answer in zip(missing, answers, strict=True):
            self._described[entry.name] = answer
        return [self._described[e.name] for e in self.entries]

    async def health(self) -> dict[str, str]:
        async def ping(name: str, handle: Any) -> str:
            try:
                return str(await asyncio.wait_for(handle.ping.remote(), self.health_timeout_s))
            except TimeoutError:
                # Failed (Serve keeps the handle waiting for replicas that will not come), or starting.
                return await self.statuses.failure(name) or f"no answer within {self.health_timeout_s:g}s"
            except DeploymentUnavailableError:
                return await self.statuses.failure(name) or "DEPLOY_FAILED (see `serve status` for the cause)"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                return _summary(exc)

        if self.startup_failure:  # nothing but this ingress was started
            states = {e.deployment: f"not started: {self.failures.get(e.deployment, 'another model cannot load')}"
                      for e in self.entries}
            return states | ({"auth": self.key_problem} if self.key_problem else {})
        targets = {e.deployment: e.handle for e in self.entries} | self._components
        states = dict(zip(targets, await asyncio.gather(*(ping(n, h) for n, h in targets.items())), strict=True))
        if self._pipeline is not None and states.get("SearchPipeline") == "ok":
            # The index behind the pipeline (postgres: the database; embedded: nothing more, its shards
            # are deployments pinged above).
            states |= await self._index_states()
        if self.key_problem:
            states["auth"] = self.key_problem
        return states


    async def _index_states(self) -> dict[str, str]:
        try:
            states: dict[str, str] = await asyncio.wait_for(self._pipeline.index_health.remote(),
                                                            self.health_timeout_s)
        except TimeoutError:
            return {"index": f"unavailable: no answer within {self.health_timeout_s:g}s"}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return {"index": f"unavailable: {_summary(exc)}"}
        return states


def _summary(exc: BaseException) -> str:
    """An exception in one line for /health: its type and the last line of its text (a Ray error's
    text ends with the cause)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}"


@serve.ingress()
class APIIngress:
    """HTTP entry point; arguments as `HandleModelService` takes them."""

    def __init__(self, **service_args: Any) -> None:
        self.service = HandleModelService(**service_args)
        if os.environ.get("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH") != _EDGE:
            logger.warning("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH is not %s in this node's environment: "
                           "Serve's proxy then passes slow request bodies on to this ingress and obeys clients' "
                           "control headers (see docs/deployment.md, 'The edge')", _EDGE)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Built in the replica after __init__, so the routes reach this replica's service.
        # Serve's proxy sets and echoes x-request-id itself; the app reuses that id.
        return create_app(lambda: self.service, echo_request_id=False)
