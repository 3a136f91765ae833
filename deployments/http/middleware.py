"""APIMiddleware: request ids, authentication, reserved headers, the body (in full, within its size
limit and deadline), timing headers, metrics and the error envelope, as one pure ASGI middleware
(no per-request task, unlike BaseHTTPMiddleware).

The body is read here, before any route runs: a body over the limit is refused (413) as soon as
the limit is passed, whether or not it declared a Content-Length, and a body that trickles in is
cut (408) instead of holding this replica's slot. The edge in Ray Serve's proxy (`edge.py`) does
the same before the request reaches this replica at all; this is the bound that holds without it.
"""

import asyncio
import hmac
import re
import time
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any

from ..errors import AuthenticationFailed, MalformedRequest, RequestTimeout, RequestTooLarge, ReservedHeader
from .errors import error_response_bytes
from .service import ModelService

__all__ = ["APIMiddleware", "OPEN_PATHS", "OPEN_PREFIXES", "REFUSED_HEADERS", "key_matches"]

REFUSED_HEADERS = ("x-request-timeout-seconds", "x-request-disconnect-disabled")
"""Ray Serve's proxy obeys these (no timeout; work continues after the client left) before the request
reaches the ingress; if one got this far, the edge did not strip it, and the request is refused at once."""

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


async def read_body(receive: Callable, limit: int, timeout_s: float) -> bytes:
    """The whole request body: RequestTooLarge as soon as it passes `limit` bytes (nothing more is read),
    RequestTimeout when it is not complete within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    received = 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
        if message["type"] == "http.disconnect":
            raise RequestTimeout("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise RequestTooLarge(f"request body is larger than the limit of {limit} bytes")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
            for name in REFUSED_HEADERS:
                if name in headers:
                    raise ReservedHeader(f"the {name} header is reserved for the serving system; drop it",
                                         param=name)
            service = self.service()
            keys = service.api_keys()
            path = route_path(scope)
            if keys is not None and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
                if not keys:
                    raise AuthenticationFailed("the configured API key source is missing or empty, so every "
                                               "request is refused; see GET /health")
                if not key_matches(_token(headers), keys):
                    raise AuthenticationFailed("missing or invalid API key; send 'Authorization: Bearer <key>' "
                                               "or 'x-api-key: <key>'")
            limits = service.limits
            declared = headers.get("content-length", "")
            if declared and not declared.isdigit():
                raise MalformedRequest("the Content-Length header is not a number")
            if declared and int(declared) > limits.max_request_bytes:
                raise RequestTooLarge(f"request body is larger than the limit of {limits.max_request_bytes} bytes")
            body = await read_body(receive, limits.max_request_bytes, limits.body_timeout_s)
            replayed = False

            async def replay() -> MutableMapping[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # later calls wait for the client to go away

            await self.app(scope, replay, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - every error leaves as the envelope
            if status_holder["started"]:
                raise
            status, error_headers, payload = error_response_bytes(exc, request_id, path=route_path(scope))
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


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The path within this app: without the prefix it is mounted under (a Serve route_prefix arrives as
    `root_path`, and ASGI's `path` includes it), so /health stays open at /PREFIX/health too."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path
