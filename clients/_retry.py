"""When a failed request is tried again, and after how long.

What is retried
    * no answer: a refused or dropped connection, a timeout to connect, to get a pooled connection or
      to send the body (`APIConnectionError`, `APITimeoutError`). Not a timeout waiting for the answer
      (a read timeout): the request arrived and the server is computing it, so a retry would run the
      same work again beside the first. This client hangs up instead, and the server stops the work
      it abandoned (its queued batches are dropped); `APITimeoutError.hint` says what to change.
    * 408 (request timeout), 429 (queues full), 503 (a model deployment starting or replaced) and every
      other 5xx (a replica that died mid-request answers 500 or 503; a new one takes the retry).
    Nothing else: a 4xx other than 408 and 429 says the request itself is wrong, and sending it again
    gets the same answer. 409 in particular is a collection bound to another model, not a lock. Nor
    a 503 with code `model_failed` and no Retry-After: a model that failed to start, which stays
    down until the server's configuration changes.

After how long
    `INITIAL_RETRY_DELAY * 2**attempt`, capped at `MAX_RETRY_DELAY`, times a jitter factor in
    [1 - RETRY_JITTER, 1]. A `Retry-After` (or `Retry-After-Ms`) header wins over that computed
    delay: the server knows how long its queue or its start-up takes. It is capped at
    `MAX_RETRY_AFTER`, so a wrong header cannot park a client for an hour.

Why every request of this API may be retried
    A client must never retry a request whose repetition changes the outcome: after a timeout or a
    dropped connection it cannot know whether the server acted on the first attempt. Every route of
    this service is safe to repeat:
    * POST /v1/embeddings, /v1/rerank, /score and /v1/collections/{name}/search are pure
      computations: they read, they write nothing.
    * POST /v1/collections/{name}/documents replaces documents by id, so sending the same documents
      twice stores them once. That holds only when the ids are in the request: a document without an
      id would get a fresh server-side id on each attempt and be stored twice. The client therefore
      assigns ids (UUID4 hex, as the server would) to documents that have none *before* the first
      attempt, and every retry carries the same ids.
    * PUT /v1/collections/{name} answers 200 when an identical collection already exists.
    * DELETE is idempotent in effect but not in answer: the retry of a delete that did happen is
      answered 404. A 404 to a *retried* delete is therefore reported as the success it was.
    A route added later that is not safe to repeat must be sent with `max_retries=0`.
"""

import random
from collections.abc import Callable

from ._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER, MAX_RETRY_DELAY, RETRY_JITTER

__all__ = ["RETRYABLE_STATUSES", "is_retryable_status", "retry_delay"]

RETRYABLE_STATUSES = frozenset({408, 429})
"""Below 500, the statuses worth another attempt (every status from 500 up is one too)."""


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUSES or status_code >= 500


def retry_delay(retries_done: int, retry_after: float | None, *,
                random_fraction: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `retries_done + 1`."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
    delay = min(INITIAL_RETRY_DELAY * (2.0 ** retries_done), MAX_RETRY_DELAY)
    return delay * (1.0 - RETRY_JITTER * random_fraction())
