"""Timing helpers shared by the benchmarks."""

import platform
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

Timing = tuple[float, list[float]]
"""Elapsed seconds of a run, and the latency of each request in it."""


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), for the benchmarks' headers; the architecture elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_threads(call: Callable[[_T], object], requests: list[_T], concurrency: int) -> Timing:
    """Elapsed seconds and per-request latencies of `concurrency` threads draining `requests`."""
    pending: queue.Queue[_T] = queue.Queue()
    for request in requests:
        pending.put(request)
    latencies: list[float] = []

    def worker() -> None:
        while True:
            try:
                request = pending.get_nowait()
            except queue.Empty:
                return
            started = time.perf_counter()
            call(request)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies
