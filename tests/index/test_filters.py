"""Metadata filters: parsing and matching."""

import pytest

from deployments.index import InvalidIndexRequest, MetadataIndex, parse_filter


@pytest.fixture()
def index():
    index = MetadataIndex()
    index.add(1, {"lang": "en", "year": 2023, "tags": ["a", "b"], "ok": True})
    index.add(2, {"lang": "fr", "year": 2024.0, "tags": ["b"], "ok": False})
    index.add(3, {"lang": "en", "year": 2024, "nested": {"x": 1}})
    index.add(4, None)
    return index


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"lang": "en"}, {1, 3}),
        ({"lang": "de"}, set()),
        ({"year": 2024}, {2, 3}),  # 2024 == 2024.0
        ({"year": {"$in": [2023, 2024]}}, {1, 2, 3}),
        ({"lang": "en", "year": 2024}, {3}),
        ({"tags": "b"}, {1, 2}),  # a list matches any of its elements
        ({"ok": True}, {1}),
        ({"ok": 1}, set()),  # booleans are not numbers
        ({"missing": "x"}, set()),
    ],
)
def test_matching(index, filter_, expected):
    assert index.matching(parse_filter(filter_)) == expected


def test_updates_and_removals_change_the_postings(index):
    index.add(1, {"lang": "fr"})
    assert index.matching(parse_filter({"lang": "fr"})) == {1, 2}
    assert index.matching(parse_filter({"tags": "a"})) == set()
    index.remove(2)
    assert index.matching(parse_filter({"lang": "fr"})) == {1}


@pytest.mark.parametrize(
    ("filter_", "message"),
    [
        ("lang=en", "JSON object"),
        ({"lang": {"$eq": "en"}}, r"\$in"),
        ({"lang": {"$in": []}}, r"\$in"),
        ({"lang": ["en", "fr"]}, "strings, numbers, booleans or null"),
        ({"x": {"$in": [{"a": 1}]}}, "strings, numbers, booleans or null"),
    ],
)
def test_bad_filters_are_explained(filter_, message):
    with pytest.raises(InvalidIndexRequest, match=message):
        parse_filter(filter_)
