"""Metadata filters: equality on top-level keys, answered from an in-memory inverted index.

`{"lang": "en"}` keeps documents whose metadata["lang"] equals "en"; `{"year": {"$in": [2023, 2024]}}`
any of the values; several keys must all match. A list value in a document's metadata
matches when any of its elements does (`{"tags": ["a", "b"]}` matches `{"tags": "a"}`).
Numbers compare by value (1 == 1.0); booleans are not numbers.
"""

import json
from collections import defaultdict
from typing import Any

from .errors import InvalidIndexRequest

__all__ = ["ParsedFilter", "parse_filter", "MetadataIndex"]

ParsedFilter = list[tuple[str, frozenset[str]]]
_SCALARS = (str, int, float, bool, type(None))


def _term(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value)


def parse_filter(filter_: Any) -> ParsedFilter:
    """Checked `(key, accepted terms)` pairs; InvalidIndexRequest says what is wrong."""
    if filter_ is None:
        return []
    if not isinstance(filter_, dict):
        raise InvalidIndexRequest("filter must be a JSON object of metadata keys", param="filter")
    parsed: ParsedFilter = []
    for key, condition in filter_.items():
        if isinstance(condition, dict):
            if set(condition) != {"$in"} or not isinstance(condition["$in"], list) or not condition["$in"]:
                raise InvalidIndexRequest(
                    f"filter[{key!r}]: an object condition must be {{\"$in\": [values...]}}", param="filter")
            values = condition["$in"]
        else:
            values = [condition]
        for value in values:
            if not isinstance(value, _SCALARS):
                raise InvalidIndexRequest(
                    f"filter[{key!r}]: values must be strings, numbers, booleans or null, not {type(value).__name__}",
                    param="filter")
        parsed.append((key, frozenset(_term(v) for v in values)))
    return parsed


class MetadataIndex:
    """Postings from (key, value) to document labels."""

    def __init__(self) -> None:
        self._postings: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._terms: dict[int, list[tuple[str, str]]] = {}

    def add(self, label: int, metadata: dict[str, Any] | None) -> None:
        self.remove(label)
        terms = []
        for key, value in (metadata or {}).items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, _SCALARS):
                    terms.append((key, _term(item)))
        for term in terms:
            self._postings[term].add(label)
        if terms:
            self._terms[label] = terms

    def remove(self, label: int) -> None:
        for term in self._terms.pop(label, []):
            postings = self._postings.get(term)
            if postings is not None:
                postings.discard(label)
                if not postings:
                    del self._postings[term]

    def matching(self, parsed: ParsedFilter) -> set[int]:
        """Labels of documents that satisfy every condition."""
        result: set[int] | None = None
        for key, terms in sorted(parsed, key=lambda c: sum(len(self._postings.get((c[0], t), ())) for t in c[1])):
            labels: set[int] = set()
            for term in terms:
                labels |= self._postings.get((key, term), set())
            result = labels if result is None else result & labels
            if not result:
                return set()
        return result if result is not None else set()
