"""EmbeddingEngine: Qwen3-Embedding (and any sentence-transformers model) with exact model-card math.

The engine owns the text side (prompts, instructions, tokenisation, truncation, the trailing
`<|endoftext|>`, Matryoshka and normalisation); its backend (torch, vLLM or ONNX Runtime,
see `backend.py`) turns the token ids into pooled vectors.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import BackendChoice, BackendOptions, EmbeddingBackend, load_embedding_backend, resolve_backend
from .errors import InvalidInputError
from .model_files import EmbeddingModelFiles, read_embedding_model_files, resolve_model_dir
from .prompts import END_OF_TEXT, embedding_query_prompt
from .tokenization import TokenizerAdapter, TokenSpan, TruncationSide, check_texts, check_token_ids, list_tokens
from .vectors import check_dimensions, truncate_and_normalize

__all__ = ["EmbeddingEngine", "EmbeddingModelInfo"]

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
    backend: str


class EmbeddingEngine:
    """Turns texts into embedding vectors. Thread-safe; one forward pass runs at a time."""

    def __init__(self, *, name: str, backend: EmbeddingBackend, tokenizer: TokenizerAdapter,
                 files: EmbeddingModelFiles, max_length: int) -> None:
        self.name = name
        self.backend = backend
        self.tokenizer = tokenizer
        self.files = files
        self.max_length = max_length
        self.dimensions: int = backend.dimensions

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
        threads: int | None = None,
        num_gpus: float = 0.0,
        backend_options: dict[str, Any] | None = None,
    ) -> "EmbeddingEngine":
        """Load a local folder or hub id; `backend="auto"` is ONNX Runtime for a folder with
        `model.onnx`, torch otherwise."""
        from transformers import AutoTokenizer

        if max_length < 2:
            raise InvalidInputError("max_length must be at least 2", param="max_length")
        model_dir = resolve_model_dir(model)
        files = read_embedding_model_files(model_dir)
        hf_tokenizer = AutoTokenizer.from_pretrained(str(files.transformer_dir))
        last_token_qwen = files.pooling == "lasttoken" and files.model_type.startswith(_CAUSAL_MODEL_TYPES)
        adapter = TokenizerAdapter(hf_tokenizer, end_of_text=END_OF_TEXT if last_token_qwen else None)
        limit = min(x for x in (max_length, files.max_seq_length) if x)
        options = BackendOptions(device=device, dtype=dtype, max_length=limit, max_batch_tokens=max_batch_tokens,
                                 max_batch_size=max_batch_size, threads=threads, num_gpus=num_gpus,
                                 pad_id=adapter.pad_id, extra=dict(backend_options or {}))
        computed = load_embedding_backend(resolve_backend(backend, model_dir), model_dir, files, options)
        return cls(name=model, backend=computed, tokenizer=adapter, files=files,
                   max_length=min(x for x in (limit, computed.max_length) if x))

    # ----- facts -----
    @property
    def max_batch_tokens(self) -> int:
        return self.backend.max_batch_tokens

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
            device=self.backend.device,
            dtype=self.backend.dtype,
            backend=self.backend.name,
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
                # TEI's wording after the semicolon: TEI clients read the names from it (tei-client's prompt_names)
                f"unknown prompt_name {prompt_name!r}; Available prompts: [{', '.join(sorted(self.files.prompts))}]",
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

    def list_tokens(self, texts: Sequence[str], *, add_special_tokens: bool = True,
                    prompt_name: str | None = None) -> list[list[TokenSpan]]:
        """The tokens of each text after the prompt (TEI's `/tokenize`), not truncated."""
        prompt = self.prompt_for(prompt_name=prompt_name)
        return list_tokens(self.tokenizer, texts, prompt=prompt, add_special_tokens=add_special_tokens)

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
        """Pooled, un-normalised float32 vectors of full width, rows in input order (blocking)."""
        return self.backend.pool(token_ids)

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

    async def check_health(self) -> None:
        """Raises when the model can no longer run (e.g. its device failed); never blocks the loop."""
        await self.backend.check_health()

    def shutdown(self) -> None:
        self.backend.shutdown()
