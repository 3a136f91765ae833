"""The Serve ingress: the FastAPI app of `deployments.api`, served by a Ray Serve deployment
that reaches each model deployment through a `DeploymentHandle`."""

import asyncio
import time
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.exceptions import BackPressureError

from clients.types import ServedModel

from .api import create_app, read_api_keys
from .batcher import QueueFullError
from .catalog import ModelEntry, ModelKind, resolve_entry
from .config import LimitsConfig
from .errors import ServiceUnavailable
from .jobs import EmbedJob, EmbedOutcome, Refusal, RerankJob, RerankOutcome
from .metrics import APIMetrics

__all__ = ["APIIngress", "HandleModelService"]

_KEY_REFRESH_S = 10.0


class HandleModelService:
    """The ModelService of the HTTP layer, backed by Serve deployment handles."""

    def __init__(self, entries: list[ModelEntry], limits: LimitsConfig, keys_env: str, keys_file_env: str,
                 pipeline: Any, components: dict[str, Any], health_timeout_s: float = 5.0) -> None:
        self.entries = entries
        self._pipeline = pipeline
        self._components = components
        self.limits = limits
        self.metrics = APIMetrics()
        self._keys_env, self._keys_file_env = keys_env, keys_file_env
        self._keys = read_api_keys(keys_env, keys_file_env)
        self._keys_read_at = time.monotonic()
        self._described: dict[str, ServedModel] = {}
        self.health_timeout_s = health_timeout_s

    def api_keys(self) -> frozenset[str]:
        # Re-read now and then, so a rotated Secret takes effect without a restart.
        if time.monotonic() - self._keys_read_at > _KEY_REFRESH_S:
            self._keys, self._keys_read_at = read_api_keys(self._keys_env, self._keys_file_env), time.monotonic()
        return self._keys

    def resolve(self, kind: ModelKind, name: str | None) -> ModelEntry:
        return resolve_entry(self.entries, kind, name)

    async def _call(self, entry: ModelEntry, method: str, job: Any, inputs: int) -> Any:
        gauge = self.metrics.in_flight.labels(entry.name)
        gauge.inc()
        try:
            outcome = await getattr(entry.handle, method).remote(job)
        except BackPressureError as exc:
            # Serve's own handler would answer in plain text; ours keeps the error envelope.
            raise QueueFullError(f"model {entry.name!r} is at capacity ({exc.message}); retry later",
                                 retry_after_s=exc.retry_after_s or 1.0) from exc
        except Exception as exc:
            if type(exc).__name__ == "DeploymentUnavailableError":
                raise ServiceUnavailable(f"model {entry.name!r} is unavailable: {exc}") from exc
            raise
        finally:
            gauge.dec()
        if isinstance(outcome, Refusal):
            raise outcome.error
        self.metrics.record_model_call(entry.name, entry.kind, inputs, outcome.timings.tokens,
                                       outcome.timings.queue_s, outcome.timings.inference_s, outcome.report)
        return outcome

    async def embed(self, entry: ModelEntry, job: EmbedJob) -> EmbedOutcome:
        count = len(job.texts if job.texts is not None else job.token_ids or [])
        return await self._call(entry, "embed", job, count)

    async def rerank(self, entry: ModelEntry, job: RerankJob) -> RerankOutcome:
        return await self._call(entry, "rerank", job, sum(len(docs) for _, docs in job.groups))

    async def pipeline(self, method: str, *args: Any) -> Any:
        try:
            outcome = await getattr(self._pipeline, method).remote(*args)
        except BackPressureError as exc:
            raise QueueFullError(f"the search pipeline is at capacity ({exc.message}); retry later",
                                 retry_after_s=exc.retry_after_s or 1.0) from exc
        if isinstance(outcome, Refusal):
            raise outcome.error
        return outcome

    async def describe(self) -> list[ServedModel]:
        missing = [e for e in self.entries if e.name not in self._described]
        answers = await asyncio.gather(*(e.handle.describe.remote() for e in missing))
        for entry, answer in zip(missing, answers, strict=True):
            self._described[entry.name] = ServedModel(id=entry.name, deployment=entry.deployment,
                                                      default=entry.default, **answer)
        return [self._described[e.name] for e in self.entries]

    async def health(self) -> dict[str, str]:
        async def ping(handle: Any) -> str:
            try:
                return await asyncio.wait_for(handle.ping.remote(), self.health_timeout_s)
            except TimeoutError:
                return f"no answer within {self.health_timeout_s:g}s"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"

        targets = {e.deployment: e.handle for e in self.entries} | self._components
        states = await asyncio.gather(*(ping(handle) for handle in targets.values()))
        return dict(zip(targets, states, strict=True))


@serve.ingress()
class APIIngress:
    """HTTP entry point. `handles` maps each model deployment's name to its handle."""

    def __init__(self, catalog: list[dict[str, Any]], handles: dict[str, Any], pipeline: Any,
                 components: dict[str, Any], limits: LimitsConfig, api_keys_env: str, api_keys_file_env: str,
                 health_timeout_s: float) -> None:
        entries = [ModelEntry(handle=handles[item["deployment"]], **item) for item in catalog]
        self.service = HandleModelService(entries, limits, api_keys_env, api_keys_file_env, pipeline, components,
                                          health_timeout_s)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Built in the replica after __init__, so the routes reach this replica's service.
        # Serve's proxy sets and echoes x-request-id itself; the app reuses that id.
        return create_app(lambda: self.service, echo_request_id=False)
