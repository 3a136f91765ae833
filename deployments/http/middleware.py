"""APIMiddleware: request ids, authentication, body-size limit, timing headers, metrics and the
error envelope, as one pure ASGI middleware (no per-request task or body copy, unlike
BaseHTTPMiddleware)."""

import hmac
import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any

from ..errors import AuthenticationFailed, RequestTooLarge
from .errors import error_response_bytes
from .service import ModelService

__all__ = ["APIMiddleware", "OPEN_PATHS", "OPEN_PREFIXES", "key_matches"]

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
OPEN_PREFIXES = ("/docs/assets/",)
"""The documentation pages' scripts and styles: as open as the pages."""
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def key_matches(token: str, keys: frozenset[str]) -> bool:
    """Constant-time comparison against every key (no early exit that times which key was close)."""
    given = token.encode("utf-8", "surrogatepass")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode("utf-8", "surrogatepass"))
    return found


def _token(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")


class APIMiddleware:
    def __init__(self, app: Any, service: Callable[[], ModelService], echo_request_id: bool = True) -> None:
        self.app = app
        self.service = service
        self.echo_request_id = echo_request_id

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given_id = headers.get("x-request-id", "")
        if self.echo_request_id:
            request_id = given_id if _REQUEST_ID.match(given_id) else uuid.uuid4().hex
        else:  # behind Ray Serve's proxy, which set the header and will echo it
            request_id = given_id or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status_holder = {"status": 500, "started": False}

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"], status_holder["started"] = message["status"], True
                queue_s, inference_s, tokens = state.get("timings", (0.0, 0.0, 0))
                extra = [(b"x-request-id", request_id.encode())] if self.echo_request_id else []
                extra += [
                    (b"x-compute-time", f"{(time.perf_counter() - started) * 1000:.3f}".encode()),
                    (b"x-queue-time", f"{queue_s * 1000:.3f}".encode()),
                    (b"x-inference-time", f"{inference_s * 1000:.3f}".encode()),
                    (b"x-compute-tokens", str(tokens).encode()),
                ]
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            service = self.service()
            keys = service.api_keys()
            path = scope.get("path", "")
            if keys is not None and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
                if not keys:
                    raise AuthenticationFailed("the configured API key source is missing or empty, so every "
                                               "request is refused; see GET /health")
                if not key_matches(_token(headers), keys):
                    raise AuthenticationFailed("missing or invalid API key; send 'Authorization: Bearer <key>' "
                                               "or 'x-api-key: <key>'")
            limit = service.limits.max_request_bytes
            if int(headers.get("content-length") or 0) > limit:
                raise RequestTooLarge(f"request body is larger than the limit of {limit} bytes")
            received = 0

            async def limited_receive() -> MutableMapping[str, Any]:
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(f"request body is larger than the limit of {limit} bytes")
                return message

            await self.app(scope, limited_receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - every error leaves as the envelope
            if status_holder["started"]:
                raise
            status, error_headers, payload = error_response_bytes(exc, request_id)
            await send_with_headers({"type": "http.response.start", "status": status, "headers": error_headers})
            await send_with_headers({"type": "http.response.body", "body": payload})
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            try:
                metrics = self.service().metrics
                metrics.requests.labels(label, str(status_holder["status"])).inc()
                metrics.latency.labels(label).observe(time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - metrics never fail a request
                pass
