"""EmbeddingEngine: Qwen3-Embedding (and any sentence-transformers model) with exact model-card math."""

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .batching import plan_micro_batches
from .errors import InvalidInputError
from .model_files import EmbeddingModelFiles, read_embedding_model_files, resolve_model_dir
from .prompts import END_OF_TEXT, embedding_query_prompt
from .runtime import default_batch_tokens, load_pretrained, resolve_device, resolve_dtype
from .tokenization import TokenizerAdapter, TruncationSide, check_texts, check_token_ids
from .vectors import check_dimensions, truncate_and_normalize

__all__ = ["EmbeddingEngine", "EmbeddingModelInfo"]

# Decoder models whose attention is causal: with right padding, real tokens never see the
# pads, so no attention mask is needed and SDPA runs its faster is_causal kernel.
_CAUSAL_MODEL_TYPES = ("qwen2", "qwen3")


@dataclass(frozen=True)
class EmbeddingModelInfo:
    """What the HTTP layer reports about a loaded embedding model."""

    name: str
    dimensions: int
    max_length: int
    pooling: str
    default_instruction: str | None
    prompts: dict[str, str]
    device: str
    dtype: str


class EmbeddingEngine:
    """Turns texts into embedding vectors. Thread-safe; one forward pass runs at a time."""

    def __init__(
        self,
        *,
        name: str,
        model: Any,
        tokenizer: TokenizerAdapter,
        files: EmbeddingModelFiles,
        device: torch.device,
        max_length: int,
        max_batch_tokens: int,
        max_batch_size: int,
    ) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.files = files
        self.device = device
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.dimensions: int = int(model.config.hidden_size)
        self._causal = files.model_type.startswith(_CAUSAL_MODEL_TYPES)
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
    ) -> "EmbeddingEngine":
        """Load a local folder or hub id through `from_pretrained`."""
        from transformers import AutoModel, AutoTokenizer

        if max_length < 2:
            raise InvalidInputError("max_length must be at least 2", param="max_length")
        model_dir = resolve_model_dir(model)
        files = read_embedding_model_files(model_dir)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        hf_tokenizer = AutoTokenizer.from_pretrained(str(files.transformer_dir))
        last_token_qwen = files.pooling == "lasttoken" and files.model_type.startswith(_CAUSAL_MODEL_TYPES)
        adapter = TokenizerAdapter(hf_tokenizer, end_of_text=END_OF_TEXT if last_token_qwen else None)
        hf_model = load_pretrained(AutoModel, files.transformer_dir, torch_device, torch_dtype)
        limits = [max_length, getattr(hf_model.config, "max_position_embeddings", None), files.max_seq_length]
        return cls(
            name=model,
            model=hf_model,
            tokenizer=adapter,
            files=files,
            device=torch_device,
            max_length=min(limit for limit in limits if limit),
            max_batch_tokens=max_batch_tokens or default_batch_tokens(torch_device),
            max_batch_size=max_batch_size,
        )

    # ----- facts -----
    @property
    def default_instruction(self) -> str | None:
        """The model's own query instruction; None when the model takes no instructions."""
        return self.files.default_instruction

    @property
    def info(self) -> EmbeddingModelInfo:
        return EmbeddingModelInfo(
            name=self.name,
            dimensions=self.dimensions,
            max_length=self.max_length,
            pooling=self.files.pooling,
            default_instruction=self.default_instruction,
            prompts=dict(self.files.prompts),
            device=str(self.device),
            dtype=str(next(self.model.parameters()).dtype).removeprefix("torch."),
        )

    # ----- text -> token ids -----
    def prompt_for(self, *, instruction: str | None = None, prompt_name: str | None = None) -> str:
        """The text put before each input: a query instruction, a named prompt, or nothing."""
        if instruction is not None and prompt_name is not None:
            raise InvalidInputError("give an instruction or a prompt_name, not both", param="instruction")
        if instruction is not None:
            if not isinstance(instruction, str) or not instruction.strip():
                raise InvalidInputError("instruction must be a non-empty string", param="instruction")
            if self.files.default_instruction is None:
                names = sorted(self.files.prompts) or "none"
                raise InvalidInputError(
                    f"model {self.name!r} takes no instructions; use a prompt_name instead (prompts: {names})",
                    param="instruction",
                )
            return embedding_query_prompt(instruction)
        if prompt_name is None:
            prompt_name = self.files.default_prompt_name
            if prompt_name is None:
                return ""
        if prompt_name not in self.files.prompts:
            raise InvalidInputError(
                f"unknown prompt_name {prompt_name!r}; this model has {sorted(self.files.prompts) or 'no prompts'}",
                param="prompt_name",
            )
        return self.files.prompts[prompt_name]

    def tokenize(
        self,
        texts: Sequence[str],
        *,
        instruction: str | None = None,
        prompt_name: str | None = None,
        truncate: bool = True,
        truncation_direction: TruncationSide = "right",
    ) -> list[list[int]]:
        """The exact token sequences the model sees, one per text."""
        texts = check_texts(texts)
        prompt = self.prompt_for(instruction=instruction, prompt_name=prompt_name)
        encoded = self.tokenizer.encode([prompt + text for text in texts] if prompt else texts)
        return [
            self.tokenizer.frame(ids, max_length=self.max_length, truncate=truncate, side=truncation_direction,
                                 index=i)
            for i, ids in enumerate(encoded)
        ]

    def prepare_token_ids(
        self, token_ids: Sequence[Sequence[int]], *, truncate: bool = True,
        truncation_direction: TruncationSide = "right",
    ) -> list[list[int]]:
        """Caller-supplied token ids, checked, truncated and framed like tokenised text."""
        checked = check_token_ids(token_ids, self.tokenizer.vocab_size)
        return [
            self.tokenizer.frame(ids, max_length=self.max_length, truncate=truncate, side=truncation_direction,
                                 index=i)
            for i, ids in enumerate(checked)
        ]

    def count_tokens(self, texts: Sequence[str], **options: Any) -> list[int]:
        """Tokens each text costs after prompt and truncation (what `usage` reports)."""
        return [len(ids) for ids in self.tokenize(texts, **options)]

    # ----- token ids -> vectors -----
    def pool(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Pooled, un-normalised float32 vectors of full width, rows in input order."""
        lengths = [len(ids) for ids in token_ids]
        out = np.empty((len(token_ids), self.dimensions), dtype=np.float32)
        batches = plan_micro_batches(lengths, max_batch_tokens=self.max_batch_tokens,
                                     max_batch_size=self.max_batch_size)
        with self._compute_lock, torch.inference_mode():
            for batch in batches:
                out[batch] = self._forward([token_ids[i] for i in batch])
        return out

    def _forward(self, rows: list[Sequence[int]]) -> np.ndarray:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max())
        ids = np.full((len(rows), width), self.tokenizer.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        input_ids = torch.from_numpy(ids).to(self.device)
        lengths_t = torch.from_numpy(lengths).to(self.device)
        mask = None
        if not self._causal:
            mask = (torch.arange(width, device=self.device)[None, :] < lengths_t[:, None]).long()
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        pooling = self.files.pooling
        if pooling == "lasttoken":
            pooled = hidden[torch.arange(len(rows), device=self.device), lengths_t - 1]
        elif pooling == "cls":
            pooled = hidden[:, 0]
        else:
            assert mask is not None, "mean pooling needs the padding mask"
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return pooled.float().cpu().numpy()

    def embed_token_ids(
        self,
        token_ids: Sequence[Sequence[int]],
        *,
        dimensions: int | None = None,
        normalize: bool = True,
        truncate: bool = True,
        truncation_direction: TruncationSide = "right",
    ) -> np.ndarray:
        """Vectors for caller-supplied token ids (OpenAI's token-array inputs)."""
        check_dimensions(dimensions, self.dimensions)
        prepared = self.prepare_token_ids(token_ids, truncate=truncate, truncation_direction=truncation_direction)
        return truncate_and_normalize(self.pool(prepared), dimensions, normalize)

    def embed(
        self,
        texts: Sequence[str],
        *,
        instruction: str | None = None,
        prompt_name: str | None = None,
        dimensions: int | None = None,
        normalize: bool = True,
        truncate: bool = True,
        truncation_direction: TruncationSide = "right",
    ) -> np.ndarray:
        """float32 array of shape (len(texts), dimensions), rows in input order.

        `instruction=None` embeds the texts as documents; with an instruction they are
        formatted as queries (`Instruct: {instruction}\\nQuery:{text}`).
        """
        check_dimensions(dimensions, self.dimensions)
        token_ids = self.tokenize(texts, instruction=instruction, prompt_name=prompt_name, truncate=truncate,
                                  truncation_direction=truncation_direction)
        return truncate_and_normalize(self.pool(token_ids), dimensions, normalize)

    def check_health(self) -> None:
        """Raises when the model can no longer run (e.g. its device failed)."""
        (torch.ones(1, device=self.device) + 1).item()
