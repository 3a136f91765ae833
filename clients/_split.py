"""Splitting calls larger than the server's per-request limits, and merging the answers back.

Pure functions: no I/O, so the sync and async clients share them and tests can call them directly.

Why merging is exact:
* embeddings are computed per input: the rows of several answers, concatenated in request order,
  are the rows one big request would have had;
* a rerank score is P(yes) of one (query, document) prompt, independent of the other documents:
  sorting the union of the per-chunk results by score gives the one-request ranking, and the best
  `top_n` of the whole are among the best `top_n` of each chunk, so each chunk asks for no more;
* scores and searches are per pair and per query.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .types import (
    Document,
    EmbeddingResponse,
    EmbeddingUsage,
    RerankResponse,
    RerankUsage,
    ScoreResponse,
    ScoreUsage,
    decode_base64_embedding,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "json_bytes",
    "json_size",
    "chunk_ranges",
    "batched",
    "prepare_document",
    "decode_embeddings",
    "merge_embeddings",
    "merge_rerank",
    "merge_scores",
]

_T = TypeVar("_T")


def json_bytes(value: Any) -> bytes:
    """The request body as sent (compact UTF-8 JSON, as httpx writes it), so sizes measured here hold."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def json_size(value: Any) -> int:
    return len(json_bytes(value))


def chunk_ranges(sizes: Sequence[int], *, max_count: int, max_bytes: int) -> list[range]:
    """Consecutive index ranges of at most `max_count` items and about `max_bytes` of JSON each.

    An item larger than `max_bytes` alone goes in a range of its own (the server will answer 413
    for it, which says more than a client-side refusal). No items give one empty range: the
    request is still sent, and the server says what is wrong with an empty list.
    """
    max_count = max(1, max_count)
    ranges: list[range] = []
    start, used = 0, 0
    for i, size in enumerate(sizes):
        item = size + 1  # the separating comma
        if i > start and (i - start >= max_count or used + item > max_bytes):
            ranges.append(range(start, i))
            start, used = i, 0
        used += item
    if start < len(sizes) or not sizes:
        ranges.append(range(start, len(sizes)))
    return ranges


class _BatchBuilder(Generic[_T]):
    """Collects consecutive items into lists of at most `max_count` items and `max_bytes` bytes."""

    def __init__(self, max_count: int, max_bytes: int, size: Callable[[_T], int]) -> None:
        self.max_count, self.max_bytes, self.size = max(1, max_count), max_bytes, size
        self.batch: list[_T] = []
        self.used = 0

    def add(self, item: _T) -> list[_T] | None:
        """Adds `item`; returns the finished batch when the item had to start a new one."""
        item_size = self.size(item) + 1  # the separating comma
        finished = None
        if self.batch and (len(self.batch) >= self.max_count or self.used + item_size > self.max_bytes):
            finished, self.batch, self.used = self.batch, [], 0
        self.batch.append(item)
        self.used += item_size
        return finished


def batched(items: Iterable[_T], *, max_count: int, max_bytes: int, size: Callable[[_T], int]) -> Iterator[list[_T]]:
    """`chunk_ranges` for a stream: lists of consecutive items, read lazily from any iterable."""
    builder = _BatchBuilder(max_count, max_bytes, size)
    for item in items:
        if (finished := builder.add(item)) is not None:
            yield finished
    if builder.batch:
        yield builder.batch


async def abatched(items: AsyncIterable[_T], *, max_count: int, max_bytes: int,
                   size: Callable[[_T], int]) -> AsyncIterator[list[_T]]:
    """`batched` for an async iterable."""
    builder = _BatchBuilder(max_count, max_bytes, size)
    async for item in items:
        if (finished := builder.add(item)) is not None:
            yield finished
    if builder.batch:
        yield builder.batch


def prepare_document(document: Document | Mapping[str, Any]) -> dict[str, Any]:
    """The wire form of one document, with an id assigned when it has none.

    Assigning the id here, before the first attempt, is what makes a retried upload idempotent
    (see `clients._retry`). UUID4 hex is also what the server would have assigned.
    """
    if isinstance(document, Document):
        body = document.model_dump(exclude_none=True)
    elif isinstance(document, Mapping):
        body = dict(document)
    else:
        raise TypeError(f"a document is a clients.types.Document or a mapping with 'text', not "
                        f"{type(document).__name__}")
    if body.get("id") is None:
        body["id"] = uuid.uuid4().hex
    return body


def decode_embeddings(response: EmbeddingResponse) -> npt.NDArray[np.float32]:
    """The vectors of one answer as a (n, d) float32 array, rows in input order."""
    import numpy as np

    data = sorted(response.data, key=lambda e: e.index)
    if not data:
        return np.zeros((0, 0), dtype=np.float32)
    if all(isinstance(e.embedding, str) for e in data):
        raw = b"".join(base64.b64decode(e.embedding) for e in data if isinstance(e.embedding, str))
        # "<f4": the wire is little-endian whatever this machine is; astype copies into a writable array.
        return np.frombuffer(raw, dtype="<f4").reshape(len(data), -1).astype(np.float32)
    rows = [decode_base64_embedding(e.embedding) if isinstance(e.embedding, str) else e.embedding for e in data]
    return np.asarray(rows, dtype=np.float32)


def merge_embeddings(responses: Sequence[EmbeddingResponse]) -> tuple[npt.NDArray[np.float32], str, EmbeddingUsage]:
    """The vectors, model and summed usage of the answers of one split call, in request order."""
    import numpy as np

    arrays = [decode_embeddings(r) for r in responses]
    vectors = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    prompt = sum(r.usage.prompt_tokens for r in responses)
    total = sum(r.usage.total_tokens for r in responses)
    return vectors, responses[0].model, EmbeddingUsage(prompt_tokens=prompt, total_tokens=total)


def merge_rerank(responses: Sequence[RerankResponse], offsets: Sequence[int], top_n: int | None) -> RerankResponse:
    """One ranking from the rankings of consecutive document chunks starting at `offsets`.

    Ties are broken by document position, as the server's stable sort does. The id is the first
    request's.
    """
    if len(responses) == 1 and offsets[0] == 0:
        return responses[0]
    results = [result.model_copy(update={"index": result.index + offset})
               for response, offset in zip(responses, offsets, strict=True) for result in response.results]
    results.sort(key=lambda r: (-r.relevance_score, r.index))
    if top_n is not None:
        results = results[:top_n]
    prompts = [r.usage.prompt_tokens for r in responses]
    usage = RerankUsage(total_tokens=sum(r.usage.total_tokens for r in responses),
                        prompt_tokens=None if None in prompts else sum(p or 0 for p in prompts))
    first = responses[0]
    return first.model_copy(update={"results": results, "usage": usage})


def merge_scores(responses: Sequence[ScoreResponse], offsets: Sequence[int]) -> ScoreResponse:
    """One score list from the answers for consecutive pair chunks starting at `offsets`."""
    if len(responses) == 1 and offsets[0] == 0:
        return responses[0]
    data = [item.model_copy(update={"index": item.index + offset})
            for response, offset in zip(responses, offsets, strict=True) for item in response.data]
    usage = ScoreUsage(prompt_tokens=sum(r.usage.prompt_tokens for r in responses),
                       total_tokens=sum(r.usage.total_tokens for r in responses))
    return responses[0].model_copy(update={"data": data, "usage": usage})
