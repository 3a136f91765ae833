"""TokenBudgetBatcher: the layer between requests and the model engine.

Requests from many callers are queued as items (texts, or documents of a query) with a
token length. A single worker forms each batch by a budget of padded tokens (rows x
longest row), runs it on a dedicated thread so the replica's event loop stays free for
health checks and new arrivals, and hands each caller its rows back in order.

- A request with many items is sorted by length on arrival and fed in chunks, so its
  batches pad little and other requests interleave between its chunks (round robin).
- Admission is by queued tokens: past `max_queued_tokens` a request is refused with
  `QueueFullError` (answered 429 + Retry-After), unless the queue is empty.
- A caller that goes away (client disconnect) takes its not-yet-started items with it.

No Ray and no torch here: it is plain asyncio, unit-tested on its own.
"""

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..jobs import BatchTimings, QueueFullError

__all__ = ["QueueFullError", "BatchTimings", "BatcherStats", "TokenBudgetBatcher"]

T = TypeVar("T")
R = TypeVar("R")
logger = logging.getLogger(__name__)


@dataclass
class BatcherStats:
    """Counters since start, reported to the ingress for /metrics."""

    batches: int = 0
    items: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    busy_s: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    """Items per batch of the batches run since the last `drain_batch_sizes()`."""


class _Request:
    __slots__ = ("items", "lengths", "order", "cursor", "results", "remaining", "future", "timings", "submitted",
                 "started", "seq")

    def __init__(self, items: Sequence[Any], lengths: Sequence[int], future: asyncio.Future, seq: int) -> None:
        self.items = items
        self.lengths = lengths
        self.order = sorted(range(len(items)), key=lambda i: lengths[i], reverse=True)
        self.cursor = 0
        self.results: list[Any] = [None] * len(items)
        self.remaining = len(items)
        self.future = future
        self.timings = BatchTimings(tokens=int(sum(lengths)))
        self.submitted = time.perf_counter()
        self.started = False
        self.seq = seq

    @property
    def queued_tokens(self) -> int:
        return sum(self.lengths[i] for i in self.order[self.cursor :])


class TokenBudgetBatcher(Generic[T, R]):
    """Batches items from concurrent callers by a padded-token budget."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_tokens: int,
        max_batch_size: int = 256,
        max_queued_tokens: int = 1 << 20,
        batch_wait_s: float = 0.002,
        retry_after_s: float = 1.0,
        name: str = "batcher",
    ) -> None:
        if max_batch_tokens < 1 or max_batch_size < 1:
            raise ValueError("max_batch_tokens and max_batch_size must be positive")
        self._run_batch = run_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_queued_tokens = max_queued_tokens
        self.batch_wait_s = batch_wait_s
        self.retry_after_s = retry_after_s
        self.name = name
        self.stats = BatcherStats()
        self._pending: deque[_Request] = deque()
        self._queued_tokens = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-compute")
        self._seq = itertools.count()

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    @property
    def queued_requests(self) -> int:
        return len(self._pending)

    def drain_batch_sizes(self) -> list[int]:
        sizes, self.stats.batch_sizes = self.stats.batch_sizes, []
        return sizes

    async def submit(self, items: Sequence[T], lengths: Sequence[int]) -> tuple[list[R], BatchTimings]:
        """Results for `items` in their order, and what the request cost."""
        if len(items) != len(lengths):
            raise ValueError("items and lengths differ in length")
        if not items:
            return [], BatchTimings()
        tokens = int(sum(lengths))
        if self._pending and self._queued_tokens + tokens > self.max_queued_tokens:
            raise QueueFullError(
                f"{self.name} is busy: {self._queued_tokens} tokens queued, the limit is {self.max_queued_tokens}",
                retry_after_s=self.retry_after_s,
            )
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work(), name=f"{self.name}-worker")
        request = _Request(items, lengths, loop.create_future(), next(self._seq))
        self._pending.append(request)
        self._queued_tokens += tokens
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            await request.future
        except asyncio.CancelledError:
            self._drop(request)
            raise
        return request.results, request.timings

    def _drop(self, request: _Request) -> None:
        if request in self._pending:
            self._pending.remove(request)
            self._queued_tokens -= request.queued_tokens

    def _take(self) -> list[tuple[_Request, int]]:
        """Items for one batch: round robin over requests, each in its longest-first order."""
        taken: list[tuple[_Request, int]] = []
        longest = 0
        for _ in range(len(self._pending)):
            request = self._pending[0]
            while request.cursor < len(request.order) and len(taken) < self.max_batch_size:
                index = request.order[request.cursor]
                length = request.lengths[index]
                if taken and (len(taken) + 1) * max(longest, length) > self.max_batch_tokens:
                    break
                taken.append((request, index))
                longest = max(longest, length)
                request.cursor += 1
                self._queued_tokens -= length
            self._pending.rotate(-1)
            if request.cursor == len(request.order):
                self._pending.remove(request)
            if len(taken) >= self.max_batch_size or (taken and 2 * longest > self.max_batch_tokens):
                break
        return taken

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.batch_wait_s and self._queued_tokens < self.max_batch_tokens:
                await asyncio.sleep(self.batch_wait_s)  # let requests arriving together share the batch
            batch = self._take()
            if not batch:
                continue
            started = time.perf_counter()
            for request, _ in batch:
                if not request.started:
                    request.started = True
                    request.timings.queue_s = started - request.submitted
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [r.items[i] for r, i in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - the callers get the error; the worker lives on
                logger.exception("%s: batch of %d items failed", self.name, len(batch))
                for request in {id(r): r for r, _ in batch}.values():
                    self._drop(request)
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            self._record(batch, elapsed)
            for (request, index), result in zip(batch, results, strict=True):
                request.results[index] = result
                request.remaining -= 1
            for request in {id(r): r for r, _ in batch}.values():
                request.timings.inference_s += elapsed
                request.timings.batches += 1
                if request.remaining == 0 and not request.future.done():
                    request.future.set_result(None)

    def _record(self, batch: list[tuple[_Request, int]], elapsed: float) -> None:
        lengths = [r.lengths[i] for r, i in batch]
        self.stats.batches += 1
        self.stats.items += len(batch)
        self.stats.tokens += sum(lengths)
        self.stats.padded_tokens += len(batch) * max(lengths)
        self.stats.busy_s += elapsed
        self.stats.batch_sizes.append(len(batch))

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


class TokenAdmission:
    """Admission by tokens in flight, for backends that batch inside themselves (vLLM).

    The same rule as the batcher's queue: past `max_queued_tokens` a request is refused with
    `QueueFullError` (429 + Retry-After), unless nothing is in flight.
    """

    def __init__(self, *, max_queued_tokens: int, retry_after_s: float = 1.0, name: str = "admission") -> None:
        self.max_queued_tokens = max_queued_tokens
        self.retry_after_s = retry_after_s
        self.name = name
        self.queued_tokens = 0
        self.queued_requests = 0

    async def run(self, tokens: int, compute: Callable[[], Any]) -> tuple[Any, BatchTimings]:
        """Await `compute()` if admitted; its result and timings (the backend's own queue is inside)."""
        if self.queued_requests and self.queued_tokens + tokens > self.max_queued_tokens:
            raise QueueFullError(
                f"{self.name} is busy: {self.queued_tokens} tokens in flight, the limit is {self.max_queued_tokens}",
                retry_after_s=self.retry_after_s,
            )
        self.queued_tokens += tokens
        self.queued_requests += 1
        started = time.perf_counter()
        try:
            result = await compute()
        finally:
            self.queued_tokens -= tokens
            self.queued_requests -= 1
        return result, BatchTimings(inference_s=time.perf_counter() - started, tokens=tokens, batches=1)
