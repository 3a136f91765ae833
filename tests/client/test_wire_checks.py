"""The wire types refuse what no route can serve, once, for every field: a lone surrogate in any
string, metadata and filters outside the JSON-safe policy, an id twice in one upload."""

import typing

import pytest
from pydantic import ValidationError

import clients.types as wire
from clients.types._base import StrictRequest
from clients.types._checks import INT64_MAX, INT64_MIN, MAX_JSON_DEPTH, check_json_value, text_problem

LONE = "\ud800"

MINIMAL = {
    wire.EmbeddingRequest: {"input": "x"},
    wire.TEIEmbedRequest: {"inputs": "x"},
    wire.RerankRequest: {"query": "q", "documents": ["d"]},
    wire.CohereRerankRequest: {"query": "q", "documents": ["d"]},
    wire.TEIRerankRequest: {"query": "q", "texts": ["t"]},
    wire.ScoreRequest: {"text_1": "q", "text_2": "d"},
    wire.RerankDocument: {"text": "t"},
    wire.CreateCollectionRequest: {},
    wire.Document: {"text": "t"},
    wire.UpsertRequest: {"documents": [{"text": "t"}]},
    wire.SearchRequest: {"query": "q"},
    wire.HybridWeights: {},
    wire.CohereEmbedRequest: {"texts": ["x"], "input_type": "search_document"},
    wire.TEITokenizeRequest: {"inputs": "x"},
    wire.TEIDecodeRequest: {"ids": [1]},
}


def _request_types() -> set[type]:
    return {getattr(wire, name) for name in wire.__all__
            if isinstance(getattr(wire, name), type) and issubclass(getattr(wire, name), StrictRequest)}


def test_every_request_type_is_covered_here():
    assert _request_types() == set(MINIMAL)


def _text_fields(cls: type) -> list[tuple[str, object]]:
    """(field, a value holding a lone surrogate) for each field that can hold text."""
    fields = []
    for name, info in cls.model_fields.items():
        annotation = repr(info.annotation)
        if "str" not in annotation or "Literal" in annotation:
            continue
        fields.append((name, LONE if typing.get_origin(info.annotation) is not list else [LONE]))
    return fields


@pytest.mark.parametrize("cls", sorted(MINIMAL, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_a_lone_surrogate_in_any_text_field_is_refused_naming_it(cls):
    fields = _text_fields(cls)
    # UpsertRequest's text is in its documents (Document); HybridWeights holds numbers only.
    assert fields or cls in (wire.UpsertRequest, wire.HybridWeights)
    for name, value in fields:
        with pytest.raises(ValidationError) as caught:
            cls.model_validate({**MINIMAL[cls], name: value})
        assert any(error["loc"][:1] == (name,) for error in caught.value.errors()), (cls, name, caught.value)


def test_a_lone_surrogate_after_a_document_object_is_refused():
    # The list mixes models and strings: each string is checked, whatever comes first.
    with pytest.raises(ValidationError, match="surrogate"):
        wire.RerankRequest.model_validate({"query": "q", "documents": [{"text": "ok"}, "bad " + LONE]})


def test_text_problems():
    assert text_problem("plain") is None and text_problem("café \U0001F600") is None
    assert "surrogate" in text_problem("a\udfffb")
    assert text_problem("nul\x00") is None and "NUL" in text_problem("nul\x00", stored=True)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, float("nan"), float("inf"), LONE, b"bytes",
                                   {"k": {1: "non-string key"}}, [set()]])
def test_values_outside_the_json_policy(value):
    with pytest.raises(Exception, match="metadata"):
        check_json_value({"v": value}, what="metadata")


def test_values_inside_the_json_policy():
    deep: object = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = [deep]
    value = {"max": INT64_MAX, "min": INT64_MIN, "f": -0.5, "t": True, "n": None, "s": "ok", "deep": deep}
    assert check_json_value(value, what="metadata") is value
    with pytest.raises(Exception, match="levels"):
        check_json_value({"deeper": [deep]}, what="metadata")


def test_a_filter_follows_the_same_rules():
    with pytest.raises(ValidationError, match="filter"):
        wire.SearchRequest.model_validate({"query": "q", "filter": {"k": {"$in": [2**80]}}})
    assert wire.SearchRequest.model_validate({"query": "q", "filter": {"k": {"$in": [1, "a"]}}}).filter


def test_ids_once_per_upload():
    with pytest.raises(ValidationError, match="'x' appears more than once"):
        wire.UpsertRequest.model_validate({"documents": [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]})
    assert len(wire.UpsertRequest.model_validate({"documents": [{"text": "a"}, {"text": "a"}]}).documents) == 2
