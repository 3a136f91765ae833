"""TokenBudgetBatcher: batching across callers, budgets, order, fairness, admission, failures."""

import asyncio
import threading
import time

import pytest

from deployments.serving.batcher import QueueFullError, TokenBudgetBatcher


class RecordingModel:
    """A stand-in for the engine that records every batch it is given (the real engine is tested elsewhere)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.delay_s = delay_s
        self.threads: set[str] = set()

    def __call__(self, items: list[tuple[str, int]]) -> list[str]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(items)
        time.sleep(self.delay_s)
        return [f"{name}:{length}" for name, length in items]


def items_of(name: str, lengths: list[int]) -> tuple[list[tuple[str, int]], list[int]]:
    return [(f"{name}{i}", n) for i, n in enumerate(lengths)], lengths


async def test_concurrent_callers_share_batches_and_get_their_rows_in_order():
    model = RecordingModel()
    batcher = TokenBudgetBatcher(model, max_batch_tokens=1000, batch_wait_s=0.01)
    requests = [items_of(f"r{k}-", [5 + k, 50, 3]) for k in range(8)]
    results = await asyncio.gather(*(batcher.submit(items, lengths) for items, lengths in requests))
    for (items, _), (rows, timings) in zip(requests, results, strict=True):
        assert rows == [f"{name}:{length}" for name, length in items]
        assert timings.tokens == sum(length for _, length in items) and timings.batches >= 1
    assert len(model.batches) < len(requests)  # callers were batched together
    assert all(len(b) * max(n for _, n in b) <= 1000 for b in model.batches)
    assert model.threads and all(name.startswith("batcher-compute") for name in model.threads)
    batcher.close()


async def test_a_large_request_is_split_by_the_budget_longest_first():
    model = RecordingModel()
    batcher = TokenBudgetBatcher(model, max_batch_tokens=200, max_batch_size=4, batch_wait_s=0)
    lengths = [10, 90, 40, 40, 5, 60, 7, 30, 100, 1]
    items, _ = items_of("x", lengths)
    rows, timings = await batcher.submit(items, lengths)
    assert rows == [f"x{i}:{n}" for i, n in enumerate(lengths)]
    assert timings.batches == len(model.batches) > 1
    for batch in model.batches:
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * max(n for _, n in batch) <= 200
    seen = [n for batch in model.batches for _, n in batch]
    assert seen == sorted(lengths, reverse=True)
    batcher.close()


async def test_a_small_request_is_not_stuck_behind_a_large_one():
    model = RecordingModel(delay_s=0.02)
    batcher = TokenBudgetBatcher(model, max_batch_tokens=100, max_batch_size=2, batch_wait_s=0)
    big = asyncio.create_task(batcher.submit(*items_of("big", [10] * 40)))
    await asyncio.sleep(0.03)
    small_rows, _ = await batcher.submit(*items_of("small", [10]))
    assert small_rows == ["small0:10"]
    assert not big.done()  # the small one finished while the big one still had chunks to go
    await big
    batcher.close()


async def test_admission_by_queued_tokens():
    model = RecordingModel(delay_s=0.2)
    batcher = TokenBudgetBatcher(model, max_batch_tokens=100, max_queued_tokens=300, batch_wait_s=0,
                                 retry_after_s=2.5)
    first = asyncio.create_task(batcher.submit(*items_of("a", [100] * 3)))
    await asyncio.sleep(0.05)
    with pytest.raises(QueueFullError) as info:
        await batcher.submit(*items_of("b", [100] * 3))
    assert info.value.retry_after_s == 2.5 and "300" in str(info.value)
    await first
    # Once the queue is empty, even a request over the limit is admitted (and chunked).
    rows, _ = await batcher.submit(*items_of("c", [100] * 5))
    assert len(rows) == 5
    batcher.close()


async def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on():
    calls = []

    def flaky(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return [n for _, n in items]

    batcher = TokenBudgetBatcher(flaky, max_batch_tokens=1000, batch_wait_s=0)
    with pytest.raises(RuntimeError, match="device lost"):
        await batcher.submit(*items_of("a", [1, 2]))
    rows, _ = await batcher.submit(*items_of("b", [3, 4]))
    assert rows == [3, 4] and batcher.queued_tokens == 0
    batcher.close()


async def test_cancelled_callers_leave_the_queue():
    model = RecordingModel(delay_s=0.1)
    batcher = TokenBudgetBatcher(model, max_batch_tokens=10, max_batch_size=1, batch_wait_s=0)
    task = asyncio.create_task(batcher.submit(*items_of("gone", [10] * 20)))
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.25)
    assert batcher.queued_tokens == 0 and batcher.queued_requests == 0
    assert len(model.batches) < 6  # the rest of its 20 items never ran
    batcher.close()


async def test_event_loop_stays_responsive_while_a_batch_computes():
    model = RecordingModel(delay_s=0.5)
    batcher = TokenBudgetBatcher(model, max_batch_tokens=100, batch_wait_s=0)
    task = asyncio.create_task(batcher.submit(*items_of("slow", [10])))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await asyncio.sleep(0.01)
    assert time.perf_counter() - started < 0.1  # the loop was not blocked by the 0.5 s batch
    await task
    assert batcher.stats.batches == 1 and batcher.stats.tokens == 10
    batcher.close()
