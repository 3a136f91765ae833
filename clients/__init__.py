"""qwen3-search client library: typed wire models (and, soon, the HTTP clients)."""

from . import types

__all__ = ["types"]
