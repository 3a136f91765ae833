"""The edge: what the HTTP front end enforces before a request takes a slot anywhere in the cluster.

Ray Serve's HTTP proxy is uvicorn on every node. It hands a request to the ingress replica as soon
as its headers are in, and the ingress replica then waits for the body: a few hundred clients that
trickle their bodies hold every ingress slot, and `/health` waits behind them. The proxy also honours
control headers from anyone (`x-request-timeout-seconds: 0` turns the request timeout off,
`x-request-disconnect-disabled: ?1` keeps work running after the client left). So, in the proxy:

- `EdgeMiddleware` (ASGI, outermost) drops those headers, reads the whole body itself within a size
  limit (413, cut as soon as it is passed) and a deadline (408), and only then passes the request on;
  it also writes the proxy's own plain-text answers (408, 429, 503, 500) as the error envelope.
- past `max_in_flight` requests in this proxy it answers 429 + Retry-After itself, in microseconds: a
  burst is refused before Ray's routing spends seconds of a loaded machine on requests it will refuse
  anyway (`/health`, `/metrics` and Serve's `/-/` routes are always let through);
- `HeadTimeoutProtocol` (uvicorn) closes a connection whose request head is not complete within
  `header_timeout_s`, answering 408, so stalled connections cannot pile up; its answer to a request
  that is not HTTP (uvicorn's text/plain 400) is the envelope too.

Installed with `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=deployments.http.edge:proxy_middlewares`
in the environment of every Ray node (the Dockerfile sets it; Ray calls it in each proxy process).
Without it, the ingress still refuses the control headers and bounds the body read itself
(`middleware.py`), but slow bodies then hold ingress slots until that bound.

Settings come from the environment: QWEN3_SEARCH_HEADER_TIMEOUT_S (10), QWEN3_SEARCH_BODY_TIMEOUT_S (30),
QWEN3_SEARCH_MAX_BODY_BYTES (32 MiB: keep it at or above `limits.max_request_bytes`),
QWEN3_SEARCH_MAX_IN_FLIGHT (1024 per proxy, 0: no cap; keep it at or above what the ingress replicas behind
one proxy hold: max_ongoing_requests x replicas) and QWEN3_SEARCH_RETRY_AFTER_S (1).
"""

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ..errors import MalformedHTTP, RequestTimeout, RequestTooLarge, ServiceUnavailable
from ..jobs import QueueFullError
from .errors import RouteNotFound, error_response_bytes

__all__ = ["EdgeSettings", "EdgeMiddleware", "HeadTimeoutProtocol", "RESERVED_HEADERS", "is_reserved_header",
           "proxy_middlewares", "install_head_timeout"]

logger = logging.getLogger(__name__)

RESERVED_HEADERS = frozenset({
    "x-request-timeout-seconds",  # Serve: per-request timeout; 0 or less disables it
    "x-request-disconnect-disabled",  # Serve: `?1` keeps the request running after the client left
    "serve_multiplexed_model_id",  # Serve: routes to a replica holding that model (also with '-')
    "x-session-id",  # Serve: session-sticky routing ($RAY_SERVE_SESSION_ID_HEADER_KEY)
})
"""Request headers Ray Serve reads as instructions to itself; no client may send them."""
_RESERVED_PREFIXES = ("x-serve-router-", "x-request-", "ray-")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


# Serve compares these with '-' and '_' taken as the same (proxies such as nginx swap them).
_RESERVED_NORMALIZED = frozenset(h.replace("_", "-") for h in RESERVED_HEADERS) | {
    os.environ.get("RAY_SERVE_SESSION_ID_HEADER_KEY", "x-session-id").lower().replace("_", "-")}


def is_reserved_header(name: str) -> bool:
    """Whether a (lower-case) header name is one Ray Serve acts on; `x-request-id` is the one allowed."""
    if name == "x-request-id":
        return False
    normalized = name.replace("_", "-")
    return normalized in _RESERVED_NORMALIZED or normalized.startswith(_RESERVED_PREFIXES)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        logger.warning("$%s is not a number; using %s", name, default)
        return default


@dataclass(frozen=True)
class EdgeSettings:
    header_timeout_s: float = 10.0
    """Seconds a connection may take to send a complete request head (also for an idle new connection)."""
    body_timeout_s: float = 30.0
    """Seconds for the whole body, plus one more per `min_body_bytes_per_s` received (slow links keep going)."""
    min_body_bytes_per_s: int = 256 * 1024
    max_body_bytes: int = 32 << 20
    """Bodies larger than this are refused (413) as soon as the limit is passed."""
    max_in_flight: int = 1024
    """Requests this proxy passes on at once (from a complete body to the end of the answer); 0: no cap."""
    retry_after_s: float = 1.0
    reserved: Callable[[str], bool] = field(default=is_reserved_header)

    @classmethod
    def from_environment(cls) -> "EdgeSettings":
        return cls(header_timeout_s=_env_float("QWEN3_SEARCH_HEADER_TIMEOUT_S", 10.0),
                   body_timeout_s=_env_float("QWEN3_SEARCH_BODY_TIMEOUT_S", 30.0),
                   max_body_bytes=int(_env_float("QWEN3_SEARCH_MAX_BODY_BYTES", 32 << 20)),
                   max_in_flight=int(_env_float("QWEN3_SEARCH_MAX_IN_FLIGHT", 1024)),
                   retry_after_s=_env_float("QWEN3_SEARCH_RETRY_AFTER_S", 1.0))


ALWAYS_ADMITTED = ("/health", "/metrics")
"""Cheap routes a probe or a scraper must reach during a burst (and Serve's own `/-/...` routes)."""


# The proxy's own error answers (text/plain) and the typed error each becomes.
_PROXY_ANSWERS: dict[int, Callable[[str, float | None], Exception]] = {
    404: lambda text, _: RouteNotFound(text),
    408: lambda text, _: RequestTimeout(text),
    413: lambda text, _: RequestTooLarge(text),
    429: lambda text, retry: QueueFullError(text, retry_after_s=retry or 1.0),
    503: lambda text, _: ServiceUnavailable(text),
}


class _Internal(Exception):
    """A 5xx the proxy produced itself: rendered as the internal-error envelope."""


class EdgeMiddleware:
    """Outermost ASGI middleware of the proxy: reserved headers out, body in full and in time, envelopes."""

    def __init__(self, app: Any, settings: EdgeSettings | None = None) -> None:
        self.app = app
        self.settings = settings or EdgeSettings.from_environment()
        self.in_flight = 0
        status, headers, payload = error_response_bytes(QueueFullError(
            f"the service is at capacity ({self.settings.max_in_flight} requests in flight at this proxy); "
            "retry later", retry_after_s=self.settings.retry_after_s))
        self._full = ({"type": "http.response.start", "status": status, "headers": headers},
                      {"type": "http.response.body", "body": payload})

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = []
        declared: int | None = None
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            if self.settings.reserved(key):
                continue
            if key == "x-request-id" and not _REQUEST_ID.match(value):
                continue  # Serve assigns one; a client's id must be short and plain to be echoed
            if key == "content-length":
                declared = int(value) if value.isdigit() else None
            headers.append((name, value))
        scope = dict(scope)
        scope["headers"] = headers
        try:
            if declared is not None and declared > self.settings.max_body_bytes:
                raise RequestTooLarge(f"request body is larger than the limit of {self.settings.max_body_bytes} bytes")
            body = await self._read_body(receive)
        except (RequestTooLarge, RequestTimeout) as exc:
            await self._answer(send, exc)
            return
        except _Disconnected:
            return
        path = scope.get("path", "")
        capped = self.settings.max_in_flight > 0 and not (path in ALWAYS_ADMITTED or path.startswith("/-/"))
        if capped and self.in_flight >= self.settings.max_in_flight:
            await send(self._full[0])  # built once: a refusal in a burst costs next to nothing
            await send(self._full[1])
            return
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the client to go away

        self.in_flight += capped
        try:
            await self.app(scope, replay, _EnvelopeSend(send))
        finally:
            self.in_flight -= capped

    async def _read_body(self, receive: Callable) -> bytes:
        settings = self.settings
        started = time.monotonic()
        chunks: list[bytes] = []
        received = 0
        while True:
            allowed = settings.body_timeout_s + received / settings.min_body_bytes_per_s
            left = started + allowed - time.monotonic()
            if left <= 0:
                raise RequestTimeout(f"the request body did not arrive within {allowed:.0f} s")
            try:
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {allowed:.0f} s") from None
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > settings.max_body_bytes:
                raise RequestTooLarge(f"request body is larger than the limit of {settings.max_body_bytes} bytes")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _answer(send: Callable, exc: Exception) -> None:
        status, headers, payload = error_response_bytes(exc)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class _Disconnected(Exception):
    pass


class _EnvelopeSend:
    """Passes the app's answers through; the proxy's own plain-text error answers become the envelope."""

    def __init__(self, send: Callable) -> None:
        self.send = send
        self.held: dict[str, Any] | None = None
        self.text: list[bytes] = []

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status = int(message["status"])
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if status >= 400 and not content_type.startswith(b"application/json"):
                self.held = dict(message)
                return
        elif message["type"] == "http.response.body" and self.held is not None:
            self.text.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._send_envelope()
            return
        await self.send(message)

    async def _send_envelope(self) -> None:
        assert self.held is not None
        status = int(self.held["status"])
        original = {k.lower(): v for k, v in self.held.get("headers", [])}
        text = b"".join(self.text).decode("utf-8", "replace").strip()[:1000] or f"HTTP {status}"
        retry = original.get(b"retry-after", b"")
        make = _PROXY_ANSWERS.get(status)
        exc = make(text, float(retry) if retry.isdigit() else None) if make else _Internal(text)
        code, headers, payload = error_response_bytes(exc)
        if make is None:
            code = status  # keep what the proxy said (500, 502, 504); the body is the internal envelope
        keep = [(k, v) for k, v in self.held.get("headers", []) if k.lower() in (b"x-request-id",)]
        await self.send({"type": "http.response.start", "status": code, "headers": headers + keep})
        await self.send({"type": "http.response.body", "body": payload})


class HeadTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol with a deadline for each request head (uvicorn has none of its own).

    The deadline starts when a connection opens and when the first bytes of a further request arrive
    on a kept-alive one; it ends when the head is parsed (uvicorn starts a request cycle). Idle time
    between requests is uvicorn's keep-alive timeout (`http_options.keep_alive_timeout_s`).
    """

    header_timeout_s = EdgeSettings().header_timeout_s

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        waiting = before is None or before.response_complete
        super().data_received(data)
        if self.cycle is not before:  # a request head is complete
            self._cancel_head_timer()
        elif waiting and self._head_timer is None:  # the first bytes of the next request's head
            self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        self._answer_and_close(RequestTimeout(f"the request head did not arrive within {self.header_timeout_s:g} s"),
                               b"Request Timeout")

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answer to a request that is not HTTP (text/plain), as the error envelope.
        self._answer_and_close(MalformedHTTP(f"the request is not valid HTTP/1.1 ({msg.rstrip('.')})"),
                               b"Bad Request")

    def _answer_and_close(self, exc: Exception, reason: bytes) -> None:
        status, headers, payload = error_response_bytes(exc)
        head = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
        self.transport.write(b"HTTP/1.1 %d %s\r\n%s\r\n%s" % (status, reason, head, payload))
        self.transport.close()


def install_head_timeout(header_timeout_s: float) -> None:
    """Make uvicorn's default ("auto") HTTP protocol the one with a request-head deadline, in this process."""
    from uvicorn import config as uvicorn_config

    HeadTimeoutProtocol.header_timeout_s = header_timeout_s
    uvicorn_config.HTTP_PROTOCOLS["auto"] = f"{__name__}:HeadTimeoutProtocol"


def proxy_middlewares() -> list[Any]:
    """The callback Ray Serve's proxy calls ($RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH): installs the
    head deadline in this process's uvicorn and returns the edge middleware."""
    from starlette.middleware import Middleware

    settings = EdgeSettings.from_environment()
    install_head_timeout(settings.header_timeout_s)
    logger.info("qwen3-search edge: head timeout %gs, body timeout %gs, body limit %d bytes",
                settings.header_timeout_s, settings.body_timeout_s, settings.max_body_bytes)
    return [Middleware(EdgeMiddleware, settings=settings)]
