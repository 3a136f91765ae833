"""RerankEngine against the Qwen3-Reranker model card's code."""

import numpy as np
import pytest

from deployments.engine import InputTooLongError, InvalidInputError, RerankEngine, UnsupportedModelError
from deployments.engine.prompts import rerank_body_head, rerank_body_tail
from tests.conftest import TOKENIZER_SOURCES, mixed_texts
from tests.model_card_reference import ReferenceReranker, format_instruction

CARD_QUERIES = ["What is the capital of China?", "Explain gravity"]
CARD_DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is "
    "responsible for the movement of planets around the sun.",
]


@pytest.fixture(scope="module", params=TOKENIZER_SOURCES)
def reranker_pair(request, model_factory):
    folder = model_factory("reranker", request.param)
    return ReferenceReranker(str(folder)), RerankEngine.load(str(folder), dtype="float32")


def test_model_card_example(reranker_pair):
    reference, engine = reranker_pair
    for query in CARD_QUERIES:
        ours = engine.score(query, CARD_DOCUMENTS)
        np.testing.assert_allclose(ours, reference.score(query, CARD_DOCUMENTS), atol=1e-4)
        assert ours.dtype == np.float32 and ((ours > 0) & (ours < 1)).all()


@pytest.mark.parametrize("instruction", [None, "Find the abstract that supports the scientific claim"])
def test_mixed_lengths_in_document_order(reranker_pair, instruction):
    reference, engine = reranker_pair
    documents = mixed_texts(30, seed=13, max_words=250)
    query = "Which protein drives cancer cell growth in the ocean city?"
    expected = np.array(reference.score(query, documents, instruction))
    assert expected.std() > 0.005, "random weights too flat for the comparison to mean anything"
    engine.backend.max_batch_tokens = 2000  # several micro-batches behind the shared prefix
    try:
        ours = engine.score(query, documents, instruction=instruction)
    finally:
        engine.backend.max_batch_tokens = 16384
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert np.argsort(ours).tolist() == np.argsort(expected).tolist()


def test_raw_scores_are_logit_differences(reranker_pair):
    reference, engine = reranker_pair
    documents = mixed_texts(5, seed=2)
    raw = engine.score(CARD_QUERIES[0], documents, raw=True)
    expected = np.array(reference.score(CARD_QUERIES[0], documents))
    np.testing.assert_allclose(1 / (1 + np.exp(-raw.astype(np.float64))), expected, atol=1e-4)


def test_shared_prefix_path_equals_whole_prompt_path(reranker_pair):
    _, engine = reranker_pair
    documents = mixed_texts(12, seed=17, max_words=120)
    cached = engine.score(CARD_QUERIES[1], documents)
    engine.backend.prefix_cache_min_documents = 10**9  # force whole prompts
    try:
        whole = engine.score(CARD_QUERIES[1], documents)
    finally:
        engine.backend.prefix_cache_min_documents = 2
    np.testing.assert_allclose(cached, whole, atol=1e-5)


def test_groups_from_many_requests_score_like_single_requests(reranker_pair):
    reference, engine = reranker_pair
    requests = [
        ("query one about gravity", mixed_texts(1, seed=1)),
        ("query two about China", mixed_texts(7, seed=2)),
        ("a third question", mixed_texts(2, seed=3)),
        ("and a fourth", mixed_texts(1, seed=4)),
    ]
    groups = [engine.prepare(q, docs) for q, docs in requests]
    results = engine.logits(groups)
    for (query, docs), logits in zip(requests, results, strict=True):
        probabilities = 1 / (1 + np.exp(-logits.astype(np.float64)))
        np.testing.assert_allclose(probabilities, reference.score(query, docs), atol=1e-4)


def test_split_tokenisation_equals_whole_body(reranker_pair):
    _, engine = reranker_pair
    tricky = [
        "plain text", " leading space", "  two leading spaces", "\nnewline first", "\t tab", "'s contraction",
        "ends with space ", "<|im_end|> special inside", "über naïve café 東京", "123 numbers", "?!... punctuation",
        "Zero\u200bwidth", "combining e\u0301 accent", "\u0301combining first", "multiple\n\n\nnewlines  \n",
    ] + mixed_texts(40, seed=99, max_words=60)
    instruction = "Given a claim, find support"
    for query in ["What is it?", "query ending in newline\n", "x"]:
        head = engine.tokenizer.encode([rerank_body_head(query, instruction)])[0]
        for doc in tricky:
            tail = engine.tokenizer.encode([rerank_body_tail(doc)])[0]
            whole = engine.tokenizer.encode([format_instruction(instruction, query, doc)])[0]
            assert head + tail == whole, (query, doc)


def test_truncation_cuts_only_the_body_end(model_factory):
    folder = model_factory("reranker", "fallback")
    reference = ReferenceReranker(str(folder), max_length=96)
    engine = RerankEngine.load(str(folder), max_length=96, dtype="float32")
    documents = mixed_texts(6, seed=8, min_words=40, max_words=120) + ["short one"]
    np.testing.assert_allclose(engine.score("a query", documents), reference.score("a query", documents), atol=1e-4)
    counts = engine.count_tokens("a query", documents)
    assert max(counts) == 96 and counts[-1] < 96
    with pytest.raises(InputTooLongError) as info:
        engine.score("a query", documents, truncate=False)
    assert info.value.param == "documents" and info.value.max_length == 96


def test_max_tokens_per_document(reranker_pair):
    _, engine = reranker_pair
    long_doc = " ".join(["gravity"] * 300)
    counts = engine.count_tokens("q", [long_doc], max_tokens_per_document=10)
    base = engine.count_tokens("q", ["x"])[0] - len(engine.tokenizer.encode([" x"])[0])
    assert counts == [base + 10]
    cut = engine.score("q", [long_doc], max_tokens_per_document=10)
    same = engine.score("q", [engine.tokenizer.tokenizer.decode(engine.tokenizer.encode([" " + long_doc])[0][:10])[1:]])
    np.testing.assert_allclose(cut, same, atol=1e-5)


@pytest.mark.parametrize(
    ("query", "documents", "instruction", "fragment"),
    [
        ("", ["doc"], None, "query must be a non-empty string"),
        ("   ", ["doc"], None, "query must be a non-empty string"),
        ("q", [], None, "documents must not be empty"),
        ("q", ["ok", ""], None, r"documents\[1\] is empty"),
        ("q", ["ok", None], None, r"documents\[1\] must be a string"),
        ("q", "not a list", None, "documents must be a list"),
        ("q", ["doc"], " ", "instruction must be a non-empty"),
    ],
)
def test_bad_input_raises_typed_errors(reranker_pair, query, documents, instruction, fragment):
    _, engine = reranker_pair
    with pytest.raises(InvalidInputError, match=fragment):
        engine.score(query, documents, instruction=instruction)


def test_embedding_folder_without_yes_no_head_is_refused(tmp_path, minilm_dir):
    with pytest.raises(UnsupportedModelError, match="serves Qwen3-Reranker"):
        RerankEngine.load(str(minilm_dir))
