"""Small types of the client's signatures."""

from typing import Final, Literal, TypeVar

import httpx

__all__ = ["NotGiven", "NOT_GIVEN", "Timeout", "T"]

T = TypeVar("T")

Timeout = float | httpx.Timeout | None
"""Seconds for every phase, an `httpx.Timeout`, or None for no limit at all."""


class NotGiven:
    """The type of `NOT_GIVEN`: an argument the caller left out.

    None cannot play this part: `timeout=None` means "no timeout", and `top_n=None` is not the
    same as "the server's default".
    """

    _instance: "NotGiven | None" = None

    def __new__(cls) -> "NotGiven":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()
