"""RerankEngine: Qwen3-Reranker relevance scores, exact to the model card.

The engine renders the model card's prompt (system prefix, instruction, query, document,
assistant suffix) as token ids split at the part every document of a query shares, and
truncates only the body, as the model card does. Its backend (torch, vLLM or ONNX Runtime,
see `backend.py`) turns those ids into `logit(yes) - logit(no)`; the score is its sigmoid,
which equals the model card's `softmax([logit_no, logit_yes])[1]`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import BackendChoice, BackendOptions, RerankBackend, RerankInputs, load_rerank_backend, resolve_backend
from .errors import InputTooLongError, InvalidInputError, UnsupportedModelError
from .model_files import read_config, resolve_model_dir
from .prompts import DEFAULT_INSTRUCTION, RERANK_PREFIX, RERANK_SUFFIX, rerank_body_head, rerank_body_tail
from .tokenization import TokenizerAdapter, check_texts

__all__ = ["RerankEngine", "RerankInputs", "RerankModelInfo", "sigmoid"]


@dataclass(frozen=True)
class RerankModelInfo:
    name: str
    max_length: int
    default_instruction: str
    device: str
    dtype: str
    backend: str


class RerankEngine:
    """Scores (query, document) pairs with a Qwen3-Reranker. Thread-safe."""

    def __init__(self, *, name: str, backend: RerankBackend, tokenizer: TokenizerAdapter, max_length: int) -> None:
        self.name = name
        self.backend = backend
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._prefix_ids = tokenizer.encode([RERANK_PREFIX])[0]
        self._suffix_ids = tokenizer.encode([RERANK_SUFFIX])[0]
        self.max_body_length = max_length - len(self._prefix_ids) - len(self._suffix_ids)
        if self.max_body_length < 1:
            raise InvalidInputError(f"max_length {max_length} leaves no room for the reranker prompt",
                                    param="max_length")

    @classmethod
    def load(
        cls,
        model: str,
        *,
        backend: BackendChoice = "auto",
        device: str = "auto",
        dtype: str = "auto",
        max_length: int = 8192,
        max_batch_tokens: int | None = None,
        max_batch_size: int = 256,
        prefix_cache_min_documents: int = 2,
        threads: int | None = None,
        num_gpus: float = 0.0,
        backend_options: dict[str, Any] | None = None,
    ) -> "RerankEngine":
        """Load a Qwen3-Reranker folder or hub id; `backend="auto"` is ONNX Runtime for a folder
        with `model.onnx`, torch otherwise."""
        from transformers import AutoTokenizer

        model_dir = resolve_model_dir(model)
        config = read_config(model_dir)
        if not str(config.get("model_type", "")).startswith(("qwen3", "qwen2")):
            raise UnsupportedModelError(
                f"{model_dir} is a {config.get('model_type')!r} model; the reranker serves Qwen3-Reranker models"
            )
        adapter = TokenizerAdapter(AutoTokenizer.from_pretrained(str(model_dir)))
        yes_id, no_id = adapter.token_id("yes"), adapter.token_id("no")
        if yes_id is None or no_id is None:
            raise UnsupportedModelError(f"{model_dir}: the tokenizer lacks the single tokens 'yes' and 'no'")
        options = BackendOptions(device=device, dtype=dtype, max_length=max_length, max_batch_tokens=max_batch_tokens,
                                 max_batch_size=max_batch_size, threads=threads, num_gpus=num_gpus,
                                 pad_id=adapter.pad_id, prefix_cache_min_documents=prefix_cache_min_documents,
                                 extra=dict(backend_options or {}))
        computed = load_rerank_backend(resolve_backend(backend, model_dir), model_dir, yes_id=yes_id, no_id=no_id,
                                       options=options)
        return cls(name=model, backend=computed, tokenizer=adapter,
                   max_length=min(x for x in (max_length, computed.max_length) if x))

    @property
    def max_batch_tokens(self) -> int:
        return self.backend.max_batch_tokens

    @property
    def default_instruction(self) -> str:
        return DEFAULT_INSTRUCTION

    @property
    def info(self) -> RerankModelInfo:
        return RerankModelInfo(
            name=self.name,
            max_length=self.max_length,
            default_instruction=DEFAULT_INSTRUCTION,
            device=self.backend.device,
            dtype=self.backend.dtype,
            backend=self.backend.name,
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
        """Logit differences `logit(yes) - logit(no)` for each group's documents, in order (blocking)."""
        return self.backend.logits(groups)

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

    async def check_health(self) -> None:
        await self.backend.check_health()

    def shutdown(self) -> None:
        self.backend.shutdown()


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """P(yes) from logit(yes) - logit(no), numerically stable in float32."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))).astype(np.float32)
