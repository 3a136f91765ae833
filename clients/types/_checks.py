"""What every request must hold to be served: valid Unicode text, and JSON values every backend can store.

A JSON string may spell a lone UTF-16 surrogate (`"\\ud800"`): Python parses it into a `str` that no
tokenizer, UTF-8 encoder or JSON writer accepts. Metadata is stored and sent back on every search, so
it must survive every store and every encoder on the way: JSON-safe scalars only, bounded depth and size.
These checks run once, when a request body is validated into its wire type; pydantic alone.
"""

import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticCustomError

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_METADATA_BYTES",
    "INT64_MIN",
    "INT64_MAX",
    "text_problem",
    "check_text_value",
    "check_json_value",
]

MAX_JSON_DEPTH = 16
"""Nesting levels a metadata value or filter may have (the object itself is level 1)."""
MAX_METADATA_BYTES = 64 * 1024
"""Largest metadata object of one document, as compact UTF-8 JSON."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Integers in metadata must fit a signed 64-bit integer (what orjson, PostgreSQL bigint and most clients hold)."""
_TYPED_DEPTH = 64  # typed request fields are shallow; this only bounds the walk
T = TypeVar("T")


def text_problem(text: str, *, stored: bool = False) -> str | None:
    """Why `text` cannot be served (a lone surrogate; a NUL character in what is `stored`), or None."""
    if stored and "\x00" in text:
        return f"holds a NUL character (U+0000) at position {text.index(chr(0))}, which storage cannot hold"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"holds a lone surrogate (U+{ord(text[exc.start]):04X}) at position {exc.start}: "
                "not valid Unicode text")
    return None


def _where(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in path)


def _invalid(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def check_text_value(value: T) -> T:
    """Every string inside a typed field's value is valid Unicode (nested models check themselves)."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise _invalid("text_invalid", f"text at {_where(path)} {problem}" if path else f"text {problem}")
        elif depth >= _TYPED_DEPTH or isinstance(item, BaseModel):
            continue
        elif isinstance(item, list | tuple):
            # A validated list of numbers (token ids: possibly millions) holds no text; any other list
            # (`list[str | RerankDocument]` mixes strings and models) is walked item by item.
            if item and not isinstance(item[0], int | float):
                stack.extend((v, (*path, i), depth + 1) for i, v in enumerate(item))
        elif isinstance(item, dict):
            for key, v in item.items():
                stack.append((key, path, depth + 1))
                stack.append((v, (*path, key), depth + 1))
    return value


def check_json_value(value: T, *, what: str, max_depth: int = MAX_JSON_DEPTH, max_bytes: int | None = None,
                     stored: bool = True) -> T:
    """`value` as JSON every backend stores and every encoder writes back, or a validation error.

    Allowed: null, booleans, integers within 64 bits, finite floats, strings of valid Unicode (without
    NUL when `stored`), lists and objects with string keys, at most `max_depth` levels deep and (when
    `max_bytes` is given) at most that many bytes as compact JSON.
    """
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 1)]
    while stack:
        item, path, depth = stack.pop()
        where = f"{what}{_where(path)}"
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise _invalid("json_value_invalid", f"{where} is an integer outside the signed 64-bit range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _invalid("json_value_invalid", f"{where} is {item}: only finite numbers are allowed")
        elif isinstance(item, str):
            problem = text_problem(item, stored=stored)
            if problem:
                raise _invalid("json_value_invalid", f"{where} {problem}")
        elif isinstance(item, list | tuple | dict):
            if depth > max_depth:
                raise _invalid("json_value_invalid", f"{where} is nested more than {max_depth} levels deep")
            if isinstance(item, dict):
                for key, v in item.items():
                    if not isinstance(key, str):
                        raise _invalid("json_value_invalid", f"{where} has a key that is not a string: {key!r}")
                    problem = text_problem(key, stored=stored)
                    if problem:
                        raise _invalid("json_value_invalid", f"{where} has a key that {problem}")
                    stack.append((v, (*path, key), depth + 1))
            else:
                stack.extend((v, (*path, i), depth + 1) for i, v in enumerate(item))
        else:
            raise _invalid("json_value_invalid", f"{where} is a {type(item).__name__}, not a JSON value")
    if max_bytes is not None:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if size > max_bytes:
            raise _invalid("json_value_invalid", f"{what} is {size} bytes as JSON; the limit is {max_bytes}")
    return value
