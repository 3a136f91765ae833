"""qwen3-search client library: typed clients of the HTTP API, and the wire models they speak.

    from clients import Client

    with Client(base_url="http://127.0.0.1:8000", api_key="...") as client:
        vectors = client.embed(["first text", "second text"]).embeddings   # float32 (2, d)
        ranked = client.rerank("query", ["doc a", "doc b"], top_n=1)

`AsyncClient` has the same methods as coroutines. Importing this package imports httpx and
pydantic, never Ray, torch or the server (`deployments`); numpy and tqdm are imported on first use.
"""

from . import types
from ._client import AsyncClient, Client, DocumentLike
from ._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    RETRY_JITTER,
    VERSION,
)
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
)
from ._results import EmbedResult
from ._types import NOT_GIVEN, NotGiven, Timeout
from .types import CollectionDeleted

__version__ = VERSION

__all__ = [
    "types",
    "Client",
    "AsyncClient",
    "DocumentLike",
    "EmbedResult",
    "CollectionDeleted",
    "NOT_GIVEN",
    "NotGiven",
    "Timeout",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "ConflictError",
    "RequestTooLargeError",
    "RateLimitError",
    "ServiceUnavailableError",
    "InternalServerError",
    "APIResponseValidationError",
    "APIConnectionError",
    "APITimeoutError",
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_CONCURRENCY",
    "INITIAL_RETRY_DELAY",
    "MAX_RETRY_DELAY",
    "MAX_RETRY_AFTER",
    "RETRY_JITTER",
    "__version__",
]
