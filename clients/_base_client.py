"""The transport under both clients: one pooled httpx client, the retry loop, bounded fan-out.

Everything that does not wait (building requests, deciding whether to retry, parsing answers) is
in `BaseClient` and shared; `SyncAPIClient` and `AsyncAPIClient` differ only in how they wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import ValidationError

from ._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECTION_LIMITS,
    DEFAULT_TIMEOUT,
    VERSION,
)
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    make_status_error,
    parse_retry_after,
)
from ._retry import is_retryable_status, retry_delay
from ._split import json_bytes
from ._types import NotGiven, Timeout

__all__ = ["RequestSpec", "RequestOptions", "BaseClient", "SyncAPIClient", "AsyncAPIClient"]

logger = logging.getLogger("qwen3_search")

_T = TypeVar("_T")
_X = TypeVar("_X")
_Y = TypeVar("_Y")


@dataclass(frozen=True)
class RequestSpec(Generic[_T]):
    """One HTTP request of a call, and how its answer becomes a value."""

    method: str
    path: str
    parse: Callable[[httpx.Response], _T]
    body: Any = None
    ok: frozenset[int] = frozenset({200})
    """Statuses that are answers (e.g. 503 for /health, whose body says which deployment is down)."""
    on_retried_404: Callable[[], _T] | None = None
    """For deletes: the value when a retry is answered 404 (the first attempt did the deleting)."""
    on_timeout: str | None = None
    """What to change when no answer comes in time (added to the `APITimeoutError`'s message)."""


@dataclass(frozen=True)
class RequestOptions:
    timeout: Timeout
    max_retries: int


@dataclass(frozen=True)
class _Retry:
    delay: float
    reason: str


class BaseClient:
    """Settings and the non-waiting half of the request loop."""

    base_url: str
    """The server's root URL, without a trailing slash."""
    api_key: str | None
    timeout: Timeout
    """Default timeout of every HTTP attempt."""
    max_retries: int
    """Default retries after a failed attempt."""
    max_concurrency: int
    """Requests of one split call or upload in flight at once."""

    def __init__(self, *, base_url: str | None, api_key: str | None, timeout: Timeout | NotGiven, max_retries: int,
                 max_concurrency: int) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)
        self.timeout = DEFAULT_TIMEOUT if isinstance(timeout, NotGiven) else timeout
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency

    def _default_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"qwen3-search-python/{VERSION}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _options(self, timeout: Timeout | NotGiven, max_retries: int | None) -> RequestOptions:
        retries = self.max_retries if max_retries is None else max_retries
        if retries < 0:
            raise ValueError("max_retries must be >= 0")
        return RequestOptions(timeout=self.timeout if isinstance(timeout, NotGiven) else timeout,
                              max_retries=retries)

    def _build_request(self, http: httpx.Client | httpx.AsyncClient, spec: RequestSpec[Any],
                       options: RequestOptions, request_id: str) -> httpx.Request:
        headers = {**self._default_headers(), "x-request-id": request_id}
        content = None
        if spec.body is not None:
            content = json_bytes(spec.body)
            headers["Content-Type"] = "application/json"
        # An absolute URL: a caller's own http_client may have another base_url, or none.
        return http.build_request(spec.method, self.base_url + spec.path, content=content, headers=headers,
                                  timeout=options.timeout)

    def _on_response(self, spec: RequestSpec[_T], response: httpx.Response, retries_done: int,
                     options: RequestOptions) -> _T | _Retry:
        status = response.status_code
        if status in spec.ok:
            try:
                return spec.parse(response)
            except (ValidationError, ValueError) as exc:
                raise APIResponseValidationError(
                    f"{spec.method} {spec.path} answered {status} with a body this client cannot read: {exc}",
                    response=response) from exc
        if status == 404 and retries_done > 0 and spec.on_retried_404 is not None:
            return spec.on_retried_404()
        if is_retryable_status(status) and retries_done < options.max_retries and not _failed_for_good(response):
            return _Retry(retry_delay(retries_done, parse_retry_after(response.headers)), f"status {status}")
        raise make_status_error(response)

    def _on_transport_error(self, exc: httpx.TransportError, spec: RequestSpec[Any], request: httpx.Request,
                            request_id: str, retries_done: int, options: RequestOptions) -> _Retry:
        # A read timeout is not retried: the request arrived and the server is working on it, so another
        # attempt would do the same work again beside the first (which stops when this client hangs up).
        if retries_done < options.max_retries and not isinstance(exc, httpx.ReadTimeout):
            return _Retry(retry_delay(retries_done, None), type(exc).__name__)
        if isinstance(exc, httpx.TimeoutException):
            raise APITimeoutError(_timeout_message(self.base_url, spec, request, exc), request=request,
                                  request_id=request_id, hint=spec.on_timeout) from exc
        reason = str(exc) or type(exc).__name__
        raise APIConnectionError(f"Connection error: {self.base_url}{request.url.path}: {reason}", request=request,
                                 request_id=request_id) from exc

    def _log_retry(self, spec: RequestSpec[Any], retry: _Retry, retries_done: int) -> None:
        logger.info("retrying %s %s in %.2f s (%s; retry %d)", spec.method, spec.path, retry.delay, retry.reason,
                    retries_done + 1)


def _timeout_message(base_url: str, spec: RequestSpec[Any], request: httpx.Request,
                     exc: httpx.TimeoutException) -> str:
    """What the timeout was; the call's own hint (`on_timeout`) goes beside it."""
    where = f"{spec.method} {base_url}{request.url.path}"
    if not isinstance(exc, httpx.ReadTimeout):
        return f"Request timed out: {where} ({type(exc).__name__})"
    seconds = (request.extensions.get("timeout") or {}).get("read")
    waited = f" within {seconds:g} s" if isinstance(seconds, (int, float)) else ""
    return f"No answer to {where}{waited}; not retried, since the server was working on it."


def _failed_for_good(response: httpx.Response) -> bool:
    """A 503 `model_failed` without Retry-After: a model that failed to start, which no retry brings back."""
    if response.status_code != 503 or "retry-after" in response.headers:
        return False
    try:
        return bool(response.json()["error"]["code"] == "model_failed")
    except (ValueError, KeyError, TypeError):
        return False


def _attempt_id(base: str, retries_done: int) -> str:
    # Every attempt has its own id (the server logs each), and a retry's id shows what it retries.
    return base if retries_done == 0 else f"{base}-retry{retries_done}"


class SyncAPIClient(BaseClient):
    """The blocking transport: `httpx.Client`, `time.sleep`, a thread pool for fan-out."""

    def __init__(self, *, base_url: str | None, api_key: str | None, timeout: Timeout | NotGiven, max_retries: int,
                 max_concurrency: int, http_client: httpx.Client | None,
                 sleep: Callable[[float], None] | None) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         max_concurrency=max_concurrency)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(limits=DEFAULT_CONNECTION_LIMITS, timeout=self.timeout)
        self._sleep = sleep or time.sleep

    def close(self) -> None:
        """Close the connection pool (not a caller's own `http_client`)."""
        if self._owns_http:
            self._http.close()

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    def _send(self, spec: RequestSpec[_T], options: RequestOptions) -> _T:
        base_id = uuid.uuid4().hex
        retries_done = 0
        while True:
            request_id = _attempt_id(base_id, retries_done)
            request = self._build_request(self._http, spec, options, request_id)
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                outcome: _T | _Retry = self._on_transport_error(exc, spec, request, request_id, retries_done,
                                                                 options)
            else:
                outcome = self._on_response(spec, response, retries_done, options)
            if not isinstance(outcome, _Retry):
                return outcome
            self._log_retry(spec, outcome, retries_done)
            self._sleep(outcome.delay)
            retries_done += 1

    def _run_ordered(self, fn: Callable[[_X], _Y], items: Iterable[_X], on_result: Callable[[_Y], None]) -> None:
        """`on_result(fn(item))` for each item in order, with up to `max_concurrency` `fn` running at once.

        Items are read lazily (an upload of any size streams through), and a failure stops the rest.
        """
        if self.max_concurrency == 1:
            for item in items:
                on_result(fn(item))
            return
        iterator = iter(items)
        head = [item for _, item in zip(range(2), iterator, strict=False)]
        if len(head) < 2:  # one request: no thread needed
            for item in head:
                on_result(fn(item))
            return
        pending: deque[Future[_Y]] = deque()
        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="qwen3-search") as pool:
            try:
                for item in _chain(head, iterator):
                    pending.append(pool.submit(fn, item))
                    if len(pending) >= self.max_concurrency:
                        on_result(pending.popleft().result())
                while pending:
                    on_result(pending.popleft().result())
            finally:
                for future in pending:
                    future.cancel()

    def _send_all(self, specs: list[RequestSpec[_T]], options: RequestOptions) -> list[_T]:
        results: list[_T] = []
        self._run_ordered(lambda spec: self._send(spec, options), specs, results.append)
        return results


def _chain(head: list[_X], rest: Iterable[_X]) -> Iterator[_X]:
    yield from head
    yield from rest


class AsyncAPIClient(BaseClient):
    """The asyncio transport: `httpx.AsyncClient`, `asyncio.sleep`, tasks for fan-out."""

    def __init__(self, *, base_url: str | None, api_key: str | None, timeout: Timeout | NotGiven, max_retries: int,
                 max_concurrency: int, http_client: httpx.AsyncClient | None,
                 sleep: Callable[[float], Awaitable[None]] | None) -> None:
        super().__init__(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
                         max_concurrency=max_concurrency)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(limits=DEFAULT_CONNECTION_LIMITS, timeout=self.timeout)
        self._sleep = sleep or asyncio.sleep

    async def close(self) -> None:
        """Close the connection pool (not a caller's own `http_client`)."""
        if self._owns_http:
            await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    async def _send(self, spec: RequestSpec[_T], options: RequestOptions) -> _T:
        base_id = uuid.uuid4().hex
        retries_done = 0
        while True:
            request_id = _attempt_id(base_id, retries_done)
            request = self._build_request(self._http, spec, options, request_id)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                outcome: _T | _Retry = self._on_transport_error(exc, spec, request, request_id, retries_done,
                                                                 options)
            else:
                outcome = self._on_response(spec, response, retries_done, options)
            if not isinstance(outcome, _Retry):
                return outcome
            self._log_retry(spec, outcome, retries_done)
            await self._sleep(outcome.delay)
            retries_done += 1

    async def _run_ordered(self, fn: Callable[[_X], Coroutine[Any, Any, _Y]], items: Iterable[_X] | AsyncIterable[_X],
                           on_result: Callable[[_Y], None]) -> None:
        """`on_result(await fn(item))` for each item in order, up to `max_concurrency` at once."""
        pending: deque[asyncio.Task[_Y]] = deque()
        try:
            async for item in _aiter(items):
                pending.append(asyncio.create_task(fn(item)))
                if len(pending) >= self.max_concurrency:
                    on_result(await pending.popleft())
            while pending:
                on_result(await pending.popleft())
        finally:
            for task in pending:
                task.cancel()
            if pending:  # collect them, so that no "exception was never retrieved" is logged
                await asyncio.gather(*pending, return_exceptions=True)

    async def _send_all(self, specs: list[RequestSpec[_T]], options: RequestOptions) -> list[_T]:
        if len(specs) == 1:
            return [await self._send(specs[0], options)]
        results: list[_T] = []
        await self._run_ordered(lambda spec: self._send(spec, options), specs, results.append)
        return results


async def _aiter(items: Iterable[_X] | AsyncIterable[_X]) -> AsyncIterator[_X]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item

