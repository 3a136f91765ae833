"""RerankEngine: Qwen3-Reranker relevance scores, exact to the model card, without its waste.

Three things make it fast while computing the same number as the model card's code:
- the full-vocabulary `lm_head` is never applied: the score is the final hidden state of
  the last token dotted with `W[yes] - W[no]` (sigmoid of that is softmax([no, yes])[1]);
- documents are sorted by length and cut into micro-batches by a token budget, so padding
  stays small (the model card pads every document to the longest one);
- the prompt prefix, instruction and query are the same for every document of a query:
  their key/value cache is computed once and shared by all its documents.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .batching import plan_micro_batches
from .errors import InputTooLongError, InvalidInputError, UnsupportedModelError
from .model_files import read_config, resolve_model_dir
from .prompts import DEFAULT_INSTRUCTION, RERANK_PREFIX, RERANK_SUFFIX, rerank_body_head, rerank_body_tail
from .runtime import default_batch_tokens, load_pretrained, resolve_device, resolve_dtype
from .tokenization import TokenizerAdapter, check_texts

__all__ = ["RerankEngine", "RerankInputs", "RerankModelInfo"]


@dataclass(frozen=True)
class RerankInputs:
    """One query's documents as token ids: `shared + documents[i]` is the i-th full prompt."""

    shared: list[int]
    """System prefix, instruction and query: identical for every document of the query."""
    documents: list[list[int]]
    """Each document's tokens followed by the assistant suffix."""

    @property
    def token_counts(self) -> list[int]:
        return [len(self.shared) + len(doc) for doc in self.documents]


@dataclass(frozen=True)
class RerankModelInfo:
    name: str
    max_length: int
    default_instruction: str
    device: str
    dtype: str


def _cache_from_tensors(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    from transformers.cache_utils import DynamicCache

    try:
        return DynamicCache(layers)
    except TypeError:  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(layers))


def _cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # transformers 4.x


class RerankEngine:
    """Scores (query, document) pairs with a Qwen3-Reranker. Thread-safe."""

    def __init__(
        self,
        *,
        name: str,
        body: Any,
        direction: torch.Tensor,
        tokenizer: TokenizerAdapter,
        device: torch.device,
        max_length: int,
        max_batch_tokens: int,
        max_batch_size: int,
        prefix_cache_min_documents: int = 2,
    ) -> None:
        self.name = name
        self.body = body
        self.direction = direction
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.prefix_cache_min_documents = prefix_cache_min_documents
        self._prefix_ids = tokenizer.encode([RERANK_PREFIX])[0]
        self._suffix_ids = tokenizer.encode([RERANK_SUFFIX])[0]
        self.max_body_length = max_length - len(self._prefix_ids) - len(self._suffix_ids)
        if self.max_body_length < 1:
            raise InvalidInputError(f"max_length {max_length} leaves no room for the reranker prompt",
                                    param="max_length")
        self._compute_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        max_length: int = 8192,
        max_batch_tokens: int | None = None,
        max_batch_size: int = 256,
        prefix_cache_min_documents: int = 2,
    ) -> "RerankEngine":
        """Load a Qwen3-Reranker folder or hub id through `from_pretrained`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = resolve_model_dir(model)
        config = read_config(model_dir)
        if not str(config.get("model_type", "")).startswith(("qwen3", "qwen2")):
            raise UnsupportedModelError(
                f"{model_dir} is a {config.get('model_type')!r} model; the reranker serves Qwen3-Reranker models"
            )
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        adapter = TokenizerAdapter(AutoTokenizer.from_pretrained(str(model_dir)))
        yes_id, no_id = adapter.token_id("yes"), adapter.token_id("no")
        if yes_id is None or no_id is None:
            raise UnsupportedModelError(f"{model_dir}: the tokenizer lacks the single tokens 'yes' and 'no'")
        causal_lm = load_pretrained(AutoModelForCausalLM, model_dir, torch_device, torch_dtype)
        weight = causal_lm.get_output_embeddings().weight
        direction = (weight[yes_id].float() - weight[no_id].float()).detach().clone()
        body = causal_lm.model
        causal_lm.lm_head = None  # the full-vocabulary head is never used; free it if untied
        limits = [max_length, getattr(causal_lm.config, "max_position_embeddings", None)]
        return cls(
            name=model,
            body=body,
            direction=direction,
            tokenizer=adapter,
            device=torch_device,
            max_length=min(limit for limit in limits if limit),
            max_batch_tokens=max_batch_tokens or default_batch_tokens(torch_device),
            max_batch_size=max_batch_size,
            prefix_cache_min_documents=prefix_cache_min_documents,
        )

    @property
    def default_instruction(self) -> str:
        return DEFAULT_INSTRUCTION

    @property
    def info(self) -> RerankModelInfo:
        return RerankModelInfo(
            name=self.name,
            max_length=self.max_length,
            default_instruction=DEFAULT_INSTRUCTION,
            device=str(self.device),
            dtype=str(next(self.body.parameters()).dtype).removeprefix("torch."),
        )

    # ----- text -> token ids -----
    def prepare(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        truncate: bool = True,
        max_tokens_per_document: int | None = None,
    ) -> RerankInputs:
        """The model card's prompt for each document, as token ids split at the shared head.

        Only the body (instruction, query, document) is ever truncated, from its end, as in
        the model card; the system prefix and the assistant suffix are never cut.
        `max_tokens_per_document` (Cohere's `max_tokens_per_doc`) cuts each document first.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query must be a non-empty string", param="query")
        documents = check_texts(documents, param="documents")
        if instruction is None:
            instruction = DEFAULT_INSTRUCTION
        elif not isinstance(instruction, str) or not instruction.strip():
            raise InvalidInputError("instruction must be a non-empty string", param="instruction")
        if max_tokens_per_document is not None and max_tokens_per_document < 1:
            raise InvalidInputError("max_tokens_per_document must be at least 1", param="max_tokens_per_doc")
        encoded = self.tokenizer.encode(
            [rerank_body_head(query, instruction)] + [rerank_body_tail(doc) for doc in documents]
        )
        head, tails = encoded[0], encoded[1:]
        if max_tokens_per_document is not None:
            tails = [tail[:max_tokens_per_document] for tail in tails]
        budget = self.max_body_length
        if len(head) + max(len(t) for t in tails) > budget and not truncate:
            index = max(range(len(tails)), key=lambda i: len(tails[i]))
            total = len(self._prefix_ids) + len(head) + len(tails[index]) + len(self._suffix_ids)
            raise InputTooLongError(
                f"documents[{index}] makes a prompt of {total} tokens, more than the maximum of "
                f"{self.max_length}; shorten it or allow truncation",
                length=total, max_length=self.max_length, param="documents", index=index,
            )
        if len(head) > budget:  # an enormous query: the reference cuts into the query itself
            head = head[:budget]
        room = budget - len(head)
        return RerankInputs(
            shared=self._prefix_ids + head,
            documents=[tail[:room] + self._suffix_ids for tail in tails],
        )

    def count_tokens(self, query: str, documents: Sequence[str], **options: Any) -> list[int]:
        return self.prepare(query, documents, **options).token_counts

    # ----- token ids -> scores -----
    def logits(self, groups: Sequence[RerankInputs]) -> list[np.ndarray]:
        """Logit differences `logit(yes) - logit(no)` for each group's documents, in order.

        Groups may come from different requests; each large group's shared prefix is
        computed once, small groups are run as whole prompts batched together.
        """
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

    def _logits_with_shared_prefix(self, group: RerankInputs) -> np.ndarray:
        shared = torch.tensor([group.shared], dtype=torch.long, device=self.device)
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
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        ids = np.full((len(rows), int(lengths.max())), self.tokenizer.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        input_ids = torch.from_numpy(ids).to(self.device)
        hidden = self.body(input_ids=input_ids, past_key_values=past, use_cache=past is not None).last_hidden_state
        last = hidden[torch.arange(len(rows), device=self.device), torch.from_numpy(lengths - 1).to(self.device)]
        return (last.float() @ self.direction).cpu().numpy()

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        truncate: bool = True,
        max_tokens_per_document: int | None = None,
        raw: bool = False,
    ) -> np.ndarray:
        """P(yes) for each document in document order, or the raw logit difference with `raw`."""
        inputs = self.prepare(query, documents, instruction=instruction, truncate=truncate,
                              max_tokens_per_document=max_tokens_per_document)
        logits = self.logits([inputs])[0]
        return logits if raw else sigmoid(logits)

    def check_health(self) -> None:
        (torch.ones(1, device=self.device) + 1).item()


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(yes) from logit(yes) - logit(no), numerically stable in float32."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))).astype(np.float32)
