"""Turning text into the exact token sequences the model cards feed their models.

One adapter serves both engines. It encodes with the tokenizer's Rust backend (a private
copy with truncation and padding switched off, since some `tokenizer.json` files ship with
them on, and because the Rust call is thread-safe and releases the GIL), truncates the
content itself, and then adds the model's special tokens. Doing the special tokens here,
not in the tokenizer, is what makes Qwen3-Embedding inputs end in exactly one
`<|endoftext|>` whether or not the tokenizer's post-processor appends it.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import InputTooLongError, InvalidInputError, UnsupportedModelError

__all__ = ["TruncationSide", "TokenizerAdapter", "TokenSpan", "check_texts", "check_token_ids", "list_tokens"]

TruncationSide = Literal["left", "right"]


def check_texts(texts: Any, *, param: str = "input") -> list[str]:
    """The texts, or an InvalidInputError naming the first bad one.

    An empty or whitespace-only string is rejected: it carries no meaning to embed or
    score, and OpenAI's embeddings API rejects it too.
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidInputError(f"{param} must be a list of strings", param=param)
    if len(texts) == 0:
        raise InvalidInputError(f"{param} must not be empty", param=param)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(
                f"{param}[{index}] must be a string, not {type(text).__name__}", param=param, index=index
            )
        if not text.strip():
            raise InvalidInputError(
                f"{param}[{index}] is empty or whitespace only; there is nothing to encode",
                param=param,
                index=index,
            )
    return list(texts)


def check_token_ids(token_ids: Any, vocab_size: int, *, param: str = "input") -> list[list[int]]:
    """Lists of token ids, checked against the vocabulary."""
    if not isinstance(token_ids, Sequence) or len(token_ids) == 0:
        raise InvalidInputError(f"{param} must be a non-empty list of token id lists", param=param)
    checked: list[list[int]] = []
    for index, ids in enumerate(token_ids):
        if isinstance(ids, str) or not isinstance(ids, Sequence) or len(ids) == 0:
            raise InvalidInputError(f"{param}[{index}] must be a non-empty list of token ids", param=param,
                                    index=index)
        for token in ids:
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
                raise InvalidInputError(
                    f"{param}[{index}] holds {token!r}, which is not a token id of this model "
                    f"(integers 0..{vocab_size - 1})",
                    param=param,
                    index=index,
                )
        checked.append(list(ids))
    return checked


class TokenizerAdapter:
    """Encodes text without special tokens, truncates, then frames with the model's specials."""

    def __init__(self, tokenizer: Any, *, end_of_text: str | None = None) -> None:
        """`end_of_text`: a token that must end every sequence exactly once (Qwen3-Embedding)."""
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self._lock = threading.Lock()
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._backend = None
        if backend is not None:
            from tokenizers import Tokenizer

            self._backend = Tokenizer.from_str(backend.to_str())
            self._backend.no_truncation()
            self._backend.no_padding()
        if end_of_text is not None:
            eot_id = self.token_id(end_of_text)
            if eot_id is None:
                raise UnsupportedModelError(f"the tokenizer has no {end_of_text} token, which this model pools")
            self.special_prefix: list[int] = []
            self.special_suffix: list[int] = [eot_id]
        else:
            self.special_prefix, self.special_suffix = self._find_special_frame()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _find_special_frame(self) -> tuple[list[int], list[int]]:
        # What the tokenizer puts around one sequence, found by encoding a probe both ways.
        probe = "hello world"
        plain = list(self.tokenizer(probe, add_special_tokens=False)["input_ids"])
        framed = list(self.tokenizer(probe, add_special_tokens=True)["input_ids"])
        for start in range(len(framed) - len(plain) + 1):
            if framed[start : start + len(plain)] == plain:
                return framed[:start], framed[start + len(plain) :]
        return [], []

    @property
    def num_special_tokens(self) -> int:
        return len(self.special_prefix) + len(self.special_suffix)

    def token_id(self, token: str) -> int | None:
        """The id of a single token, or None when the vocabulary lacks it."""
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if token_id is None or (unk is not None and token_id == unk and token != self.tokenizer.unk_token):
            return None
        return int(token_id)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens and without truncation."""
        if self._backend is not None:
            return [encoding.ids for encoding in self._backend.encode_batch(list(texts), add_special_tokens=False)]
        with self._lock:  # Python tokenizers keep per-call state
            return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def pieces(self, texts: Sequence[str]) -> list[list[tuple[int, int, int]]]:
        """(id, start, stop) of each token of each text, without special tokens; character offsets."""
        if self._backend is not None:
            return [[(i, s, e) for i, (s, e) in zip(enc.ids, enc.offsets, strict=True)]
                    for enc in self._backend.encode_batch(list(texts), add_special_tokens=False)]
        with self._lock:
            encoded = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        return [[(i, s, e) for i, (s, e) in zip(ids, offsets, strict=True)]
                for ids, offsets in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)]

    def token_string(self, token_id: int) -> str:
        return str(self.tokenizer.convert_ids_to_tokens(token_id))

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        with self._lock:
            return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens))

    def frame(
        self,
        content: list[int],
        *,
        max_length: int,
        truncate: bool = True,
        side: TruncationSide = "right",
        index: int | None = None,
        param: str = "input",
    ) -> list[int]:
        """Content truncated to fit `max_length` together with the special tokens, then framed."""
        if self.special_suffix and content[-len(self.special_suffix) :] == self.special_suffix:
            content = content[: -len(self.special_suffix)]  # already framed (token-id input)
        if self.special_prefix and content[: len(self.special_prefix)] == self.special_prefix:
            content = content[len(self.special_prefix) :]
        room = max_length - self.num_special_tokens
        if len(content) > room:
            if not truncate:
                total = len(content) + self.num_special_tokens
                where = f"{param}[{index}]" if index is not None else param
                raise InputTooLongError(
                    f"{where} has {total} tokens, more than the maximum of {max_length}; shorten it or allow "
                    "truncation",
                    length=total,
                    max_length=max_length,
                    param=param,
                    index=index,
                )
            content = content[:room] if side == "right" else content[len(content) - room :]
        return self.special_prefix + content + self.special_suffix


@dataclass(frozen=True)
class TokenSpan:
    """One token as Text Embeddings Inference's `/tokenize` lists it."""

    id: int
    text: str
    """The bytes of the input the token covers (decoded); a special token's own string."""
    special: bool
    start: int | None
    """Byte offsets in the input (prompt included); None for a special token."""
    stop: int | None


def list_tokens(adapter: TokenizerAdapter, texts: Sequence[str], *, prompt: str = "",
                add_special_tokens: bool = True) -> list[list[TokenSpan]]:
    """The tokens of each `prompt + text`, framed with the model's special tokens when asked.

    Not truncated: this shows what the text costs, the limit is applied when it is embedded.
    """
    inputs = [prompt + text for text in check_texts(texts, param="inputs")]
    listed = []
    for text, pieces in zip(inputs, adapter.pieces(inputs), strict=True):
        data = text.encode("utf-8", "surrogatepass")
        tokens = []
        for token_id, start, stop in pieces:
            byte_start, byte_stop = len(text[:start].encode("utf-8", "surrogatepass")), len(
                text[:stop].encode("utf-8", "surrogatepass"))
            tokens.append(TokenSpan(token_id, data[byte_start:byte_stop].decode("utf-8", "replace"), False,
                                    byte_start, byte_stop))
        if add_special_tokens:
            tokens = ([TokenSpan(i, adapter.token_string(i), True, None, None) for i in adapter.special_prefix]
                      + tokens
                      + [TokenSpan(i, adapter.token_string(i), True, None, None) for i in adapter.special_suffix])
        listed.append(tokens)
    return listed
