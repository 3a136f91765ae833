"""The torch/transformers backend: models loaded with `from_pretrained`, run on CPU or CUDA.

Two things make it fast while computing the model cards' numbers:
- token ids are sorted by length and cut into micro-batches by a padded-token budget, so
  padding stays small (the model cards pad every input to the longest one);
- the reranker never applies the full-vocabulary `lm_head`: its score is the final hidden
  state of the last token dotted with `W[yes] - W[no]`, and the key/value cache of a
  query's shared prefix (system prompt, instruction, query) is computed once for all of
  its documents.
"""

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backend import BackendOptions, RerankInputs
from .batching import plan_micro_batches
from .model_files import EmbeddingModelFiles, read_config
from .runtime import default_batch_tokens, load_pretrained, resolve_device, resolve_dtype

__all__ = ["TorchEmbeddingBackend", "TorchRerankBackend", "load_embedding", "load_reranker"]

# Decoder models whose attention is causal: with right padding, real tokens never see the
# pads, so no attention mask is needed and SDPA runs its faster is_causal kernel.
CAUSAL_MODEL_TYPES = ("qwen2", "qwen3")


def _dtype_name(module: Any) -> str:
    return str(next(module.parameters()).dtype).removeprefix("torch.")


def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def _right_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    ids = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return ids, lengths


class _TorchBackend:
    name = "torch"
    schedules_batches = False

    def __init__(self, module: Any, device: torch.device, max_batch_tokens: int, max_batch_size: int,
                 pad_id: int) -> None:
        self.device_t = device
        self.device = str(device)
        self.dtype = _dtype_name(module)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.pad_id = pad_id
        self._compute_lock = threading.Lock()

    async def check_health(self) -> None:
        # A tiny kernel on the device, off the event loop: a wedged GPU fails here, the loop stays free.
        await asyncio.to_thread(lambda: (torch.ones(1, device=self.device_t) + 1).item())

    def shutdown(self) -> None:
        if self.device_t.type == "cuda":
            torch.cuda.empty_cache()


class TorchEmbeddingBackend(_TorchBackend):
    """Pooled vectors from a transformers `AutoModel`; thread-safe, one forward pass at a time."""

    def __init__(self, model: Any, files: EmbeddingModelFiles, device: torch.device, max_batch_tokens: int,
                 max_batch_size: int, pad_id: int) -> None:
        super().__init__(model, device, max_batch_tokens, max_batch_size, pad_id)
        self.model = model
        self.pooling = files.pooling
        self.dimensions = int(model.config.hidden_size)
        self.max_length: int | None = getattr(model.config, "max_position_embeddings", None)
        self._causal = files.model_type.startswith(CAUSAL_MODEL_TYPES)

    def pool(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.empty((len(token_ids), self.dimensions), dtype=np.float32)
        batches = plan_micro_batches([len(ids) for ids in token_ids], max_batch_tokens=self.max_batch_tokens,
                                     max_batch_size=self.max_batch_size)
        with self._compute_lock, torch.inference_mode():
            for batch in batches:
                out[batch] = self._forward([token_ids[i] for i in batch])
        return out

    async def pool_async(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        return await asyncio.to_thread(self.pool, token_ids)

    def _forward(self, rows: list[Sequence[int]]) -> np.ndarray:
        ids, lengths = _right_padded(rows, self.pad_id)
        input_ids = torch.from_numpy(ids).to(self.device_t)
        lengths_t = torch.from_numpy(lengths).to(self.device_t)
        mask = None
        if not self._causal:
            mask = (torch.arange(ids.shape[1], device=self.device_t)[None, :] < lengths_t[:, None]).long()
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if self.pooling == "lasttoken":
            pooled = hidden[torch.arange(len(rows), device=self.device_t), lengths_t - 1]
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            assert mask is not None, "mean pooling needs the padding mask"
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return pooled.float().cpu().numpy()


def _cache_from_tensors(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    from transformers.cache_utils import DynamicCache

    try:
        return DynamicCache(layers)
    except TypeError:  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(layers))  # type: ignore[attr-defined]


def _cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # transformers 4.x


class TorchRerankBackend(_TorchBackend):
    """Qwen3-Reranker logits from the causal LM's body and the yes/no rows of its head."""

    def __init__(self, body: Any, direction: torch.Tensor, device: torch.device, max_length: int | None,
                 max_batch_tokens: int, max_batch_size: int, pad_id: int, prefix_cache_min_documents: int = 2
                 ) -> None:
        super().__init__(body, device, max_batch_tokens, max_batch_size, pad_id)
        self.body = body
        self.direction = direction
        self.max_length = max_length
        self.prefix_cache_min_documents = prefix_cache_min_documents

    def logits(self, groups: Sequence[RerankInputs]) -> list[np.ndarray]:
        """Groups may come from different requests; each large group's shared prefix is computed
        once, small groups are run as whole prompts batched together."""
        results = [np.empty(len(g.documents), dtype=np.float32) for g in groups]
        loose: list[tuple[int, int]] = []  # (group, document) run as whole prompts
        with self._compute_lock, torch.inference_mode():
            for g, group in enumerate(groups):
                if len(group.documents) >= self.prefix_cache_min_documents and len(group.shared) > 1:
                    results[g][:] = self._logits_with_shared_prefix(group)
                else:
                    loose.extend((g, d) for d in range(len(group.documents)))
            if loose:
                rows = [groups[g].shared + groups[g].documents[d] for g, d in loose]
                for batch in plan_micro_batches([len(r) for r in rows], max_batch_tokens=self.max_batch_tokens,
                                                max_batch_size=self.max_batch_size):
                    values = self._last_hidden_logits([rows[i] for i in batch], past=None)
                    for value, i in zip(values, batch, strict=True):
                        g, d = loose[i]
                        results[g][d] = value
        return results

    async def logits_async(self, groups: Sequence[RerankInputs]) -> list[np.ndarray]:
        return await asyncio.to_thread(self.logits, groups)

    def _logits_with_shared_prefix(self, group: RerankInputs) -> np.ndarray:
        shared = torch.tensor([group.shared], dtype=torch.long, device=self.device_t)
        prefix_cache = _cache_tensors(self.body(input_ids=shared, use_cache=True).past_key_values)
        out = np.empty(len(group.documents), dtype=np.float32)
        lengths = [len(doc) for doc in group.documents]
        for batch in plan_micro_batches(lengths, max_batch_tokens=self.max_batch_tokens,
                                        max_batch_size=self.max_batch_size, overhead=len(group.shared)):
            n = len(batch)
            past = _cache_from_tensors(
                [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix_cache]
            )
            out[batch] = self._last_hidden_logits([group.documents[i] for i in batch], past=past)
        return out

    def _last_hidden_logits(self, rows: list[list[int]], past: Any) -> np.ndarray:
        # Right padding: with causal attention the real tokens never attend to the pads, so
        # no mask is needed and each row's last real position holds its answer.
        ids, lengths = _right_padded(rows, self.pad_id)
        input_ids = torch.from_numpy(ids).to(self.device_t)
        hidden = self.body(input_ids=input_ids, past_key_values=past, use_cache=past is not None).last_hidden_state
        last = hidden[torch.arange(len(rows), device=self.device_t), torch.from_numpy(lengths - 1).to(self.device_t)]
        return (last.float() @ self.direction).cpu().numpy()


def load_embedding(model_dir: Path, files: EmbeddingModelFiles, options: BackendOptions) -> TorchEmbeddingBackend:
    from transformers import AutoModel

    _set_threads(options.threads)
    device = resolve_device(options.device)
    model = load_pretrained(AutoModel, files.transformer_dir, device, resolve_dtype(options.dtype, device))
    return TorchEmbeddingBackend(model, files, device, options.max_batch_tokens or default_batch_tokens(device),
                                 options.max_batch_size, options.pad_id)


def load_reranker(model_dir: Path, *, yes_id: int, no_id: int, options: BackendOptions) -> TorchRerankBackend:
    from transformers import AutoModelForCausalLM

    _set_threads(options.threads)
    device = resolve_device(options.device)
    causal_lm = load_pretrained(AutoModelForCausalLM, model_dir, device, resolve_dtype(options.dtype, device))
    weight = causal_lm.get_output_embeddings().weight
    direction = (weight[yes_id].float() - weight[no_id].float()).detach().clone()
    causal_lm.lm_head = None  # the full-vocabulary head is never used; free it if untied
    max_length = getattr(causal_lm.config, "max_position_embeddings", None) or read_config(model_dir).get(
        "max_position_embeddings")
    return TorchRerankBackend(
        causal_lm.model, direction, device, max_length, options.max_batch_tokens or default_batch_tokens(device),
        options.max_batch_size, options.pad_id,
        prefix_cache_min_documents=options.prefix_cache_min_documents,
    )
