"""Defaults of the clients, each named once (the README and the tests refer to these names)."""

import httpx

__all__ = [
    "VERSION",
    "BASE_URL_ENV",
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "INITIAL_RETRY_DELAY",
    "MAX_RETRY_DELAY",
    "MAX_RETRY_AFTER",
    "RETRY_JITTER",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_CONNECTION_LIMITS",
    "REQUEST_BYTES_MARGIN",
]

VERSION = "0.1.0"
"""This library's version (sent in the User-Agent)."""

BASE_URL_ENV = "QWEN3_SEARCH_BASE_URL"
"""Environment variable read when no `base_url` is given."""
API_KEY_ENV = "QWEN3_SEARCH_API_KEY"
"""Environment variable read when no `api_key` is given."""
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
"""Where `serve run serve_config.yaml` listens."""

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
"""Per HTTP attempt. Generous for reading: a 64-input request to a CPU replica under load can take
tens of seconds. Short for connecting: a server that does not accept within 10 s is retried."""

DEFAULT_MAX_RETRIES = 2
"""Retries after the first attempt (so at most three attempts)."""
INITIAL_RETRY_DELAY = 0.5
"""Seconds before the first retry; doubled for each next one."""
MAX_RETRY_DELAY = 8.0
"""Cap of the computed (exponential) delay."""
MAX_RETRY_AFTER = 60.0
"""Cap of a server's `Retry-After`: longer asks are waited for this long, then retried."""
RETRY_JITTER = 0.25
"""The computed delay is multiplied by a random factor in [1 - RETRY_JITTER, 1], so that many clients
refused at the same moment do not come back at the same moment."""

DEFAULT_MAX_CONCURRENCY = 4
"""Requests of one split call (or one upsert stream) in flight at once. The server batches across
requests, so a few in flight keep it busy without queueing a whole upload on one replica."""

DEFAULT_CONNECTION_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16)

REQUEST_BYTES_MARGIN = 16 * 1024
"""Bytes kept free under the server's `max_request_bytes` for the fields around the split list."""
