"""Why a deployment is down, as the Serve controller tells it.

Ray Serve answers a call to a deployment that failed to deploy with `DeploymentUnavailableError`,
which names the deployment but not the cause; the cause is in the controller's status of that
deployment (the last line of the replica constructor's traceback). `DeploymentStatuses` reads it,
so that /health and every route can say what failed and what to change, as a `ModelFailed`
(503 `model_failed`, no Retry-After: no retry helps until the configuration changes).
"""

import asyncio
import re
import time
from collections.abc import Callable

from ..errors import ModelFailed

__all__ = ["DeploymentStatuses", "failure_cause", "read_serve_status", "is_deployment_unavailable",
           "FAILED_STATES"]

FAILED_STATES = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit)(?:\([^)]*\))?: (.+)$")


def failure_cause(message: str) -> str:
    """The error at the end of a status message (a traceback's last line, without the exception's class path)."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    if not lines:
        return "no cause reported"
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match:
            return match.group(1)
    return lines[-1] if len(lines) > 1 and lines[-2].endswith("Error:") else lines[0]


def read_serve_status() -> dict[str, tuple[str, str]]:
    """Deployment name -> (status, message) of this replica's application (blocking: call in a thread)."""
    from ray import serve

    try:
        app_name: str | None = serve.get_replica_context().app_name
    except Exception:  # noqa: BLE001 - outside a replica: every application
        app_name = None
    states: dict[str, tuple[str, str]] = {}
    for name, app in serve.status().applications.items():
        if app_name is not None and name != app_name:
            continue
        for deployment, status in app.deployments.items():
            states[deployment] = (str(getattr(status.status, "value", status.status)), status.message or "")
    return states


def is_deployment_unavailable(exc: BaseException) -> bool:
    """Ray's 'failed to deploy' error, raised here or in a deployment this one called."""
    from ray.serve.exceptions import DeploymentUnavailableError

    return isinstance(exc, DeploymentUnavailableError)


def _deployment_of(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "cause", None)):
        name = getattr(getattr(candidate, "_deployment_id", None), "name", None)
        if isinstance(name, str):
            return name
    found = re.search(r"Deployment\(name='([^']+)'", str(getattr(exc, "message", "")) or str(exc))
    return found.group(1) if found else None


class DeploymentStatuses:
    """The controller's deployment statuses, read at most every `ttl_s` seconds, off the event loop."""

    def __init__(self, read: Callable[[], dict[str, tuple[str, str]]] = read_serve_status, *,
                 ttl_s: float = 5.0, timeout_s: float = 5.0) -> None:
        self._read = read
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._states: dict[str, tuple[str, str]] = {}
        self._read_at = -float("inf")

    async def states(self) -> dict[str, tuple[str, str]]:
        if time.monotonic() - self._read_at > self.ttl_s:
            try:
                self._states = await asyncio.wait_for(asyncio.to_thread(self._read), self.timeout_s)
            except Exception:  # noqa: BLE001 - the controller is busy or gone: say what is known
                return self._states
            self._read_at = time.monotonic()
        return self._states

    async def failure(self, deployment: str) -> str | None:
        """Why `deployment` is down ("DEPLOY_FAILED: <cause>", or a start being retried after one), or None
        when the controller reports no failure."""
        status, message = (await self.states()).get(deployment, ("", ""))
        if status in FAILED_STATES:
            return f"{status}: {failure_cause(message)}"
        if message.startswith("A replica failed to start"):  # Serve retries a few times before DEPLOY_FAILED
            return f"{status or 'starting'}, retrying a replica that failed to start: {failure_cause(message)}"
        return None

    async def failed_error(self, exc: BaseException) -> ModelFailed:
        """The `ModelFailed` for Ray's `DeploymentUnavailableError`, with the cause the controller reports."""
        deployment = _deployment_of(exc) or "a deployment"
        status, message = (await self.states()).get(deployment, ("", ""))
        cause = failure_cause(message) if message else "the Serve controller reports no cause (see `serve status`)"
        return ModelFailed(f"{deployment} failed to start{f' ({status})' if status else ''}: {cause}; it stays down "
                           "until its configuration is fixed and the application is deployed again")
