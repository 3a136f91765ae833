"""EmbeddingEngine against the Qwen3-Embedding model card's code and sentence-transformers."""

import numpy as np
import pytest
import torch

from deployments.engine import (
    DEFAULT_INSTRUCTION,
    EmbeddingEngine,
    InputTooLongError,
    InvalidInputError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from tests.conftest import TOKENIZER_SOURCES, mixed_texts
from tests.model_card_reference import get_detailed_instruct, reference_embed

CARD_QUERIES = ["What is the capital of China?", "Explain gravity"]
CARD_DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is "
    "responsible for the movement of planets around the sun.",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.fixture(scope="module", params=TOKENIZER_SOURCES)
def qwen_embedding(request, model_factory):
    folder = model_factory("embedding", request.param)
    return folder, EmbeddingEngine.load(str(folder), dtype="float32")


def test_model_card_example_matches_reference(qwen_embedding):
    folder, engine = qwen_embedding
    reference = reference_embed(
        str(folder), [get_detailed_instruct(DEFAULT_INSTRUCTION, q) for q in CARD_QUERIES] + CARD_DOCUMENTS
    ).numpy()
    ours = np.concatenate([engine.embed(CARD_QUERIES, instruction=DEFAULT_INSTRUCTION), engine.embed(CARD_DOCUMENTS)])
    assert ours.dtype == np.float32 and ours.shape == (4, engine.dimensions)
    assert cosines(ours, reference).min() >= 0.9999
    # Similarity matrix, as the model card prints it.
    np.testing.assert_allclose(ours[:2] @ ours[2:].T, reference[:2] @ reference[2:].T, atol=1e-4)


@pytest.mark.parametrize("instruction",
                         [None, DEFAULT_INSTRUCTION, "Retrieve scientific abstracts that support the claim"])
def test_mixed_lengths_match_reference_in_input_order(qwen_embedding, instruction):
    folder, engine = qwen_embedding
    texts = mixed_texts(24, seed=7, max_words=300)
    inputs = texts if instruction is None else [get_detailed_instruct(instruction, t) for t in texts]
    reference = reference_embed(str(folder), inputs).numpy()
    # A small budget forces many micro-batches, so re-ordering is exercised.
    engine.backend.max_batch_tokens = 600
    try:
        ours = engine.embed(texts, instruction=instruction)
    finally:
        engine.backend.max_batch_tokens = 16384
    assert cosines(ours, reference).min() >= 0.9999
    # Rows really are different vectors (a constant output would pass the check above only by luck).
    assert cosines(ours[:-1], ours[1:]).max() < 0.999


@pytest.mark.parametrize("dimensions", [32, 48, 63])
def test_matryoshka_dimensions_slice_before_normalising(qwen_embedding, dimensions):
    folder, engine = qwen_embedding
    texts = mixed_texts(6, seed=3)
    reference = reference_embed(str(folder), texts, dimensions=dimensions).numpy()
    ours = engine.embed(texts, dimensions=dimensions)
    assert ours.shape == (6, dimensions)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines(ours, reference).min() >= 0.9999
    # Equal to truncating the full unit vector and renormalising it.
    full = engine.embed(texts)[:, :dimensions]
    assert cosines(ours, full).min() >= 0.99999


def test_same_text_alone_or_in_any_batch_gives_the_same_vector(qwen_embedding):
    _, engine = qwen_embedding
    texts = mixed_texts(16, seed=11, max_words=250)
    alone = np.concatenate([engine.embed([t]) for t in texts])
    together = engine.embed(texts)
    reversed_ = engine.embed(texts[::-1])[::-1]
    assert cosines(alone, together).min() >= 0.99999
    assert cosines(alone, reversed_).min() >= 0.99999


def test_unnormalized_output_is_the_raw_last_token_state(qwen_embedding):
    folder, engine = qwen_embedding
    raw = engine.embed(CARD_DOCUMENTS, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder))
    for text, vector in zip(CARD_DOCUMENTS, raw, strict=True):
        with torch.no_grad():
            state = model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0, -1].numpy()
        np.testing.assert_allclose(vector, state, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tokenizer", TOKENIZER_SOURCES)
def test_exactly_one_end_of_text_with_or_without_post_processor(model_factory, tokenizer):
    with_eot = EmbeddingEngine.load(str(model_factory("embedding", tokenizer)), dtype="float32")
    without_eot = EmbeddingEngine.load(str(model_factory("embedding", tokenizer, end_of_text_post_processor=False)),
                                      dtype="float32")
    eot = with_eot.tokenizer.token_id("<|endoftext|>")
    texts = ["hello world", "ends with the token already<|endoftext|>", CARD_DOCUMENTS[1]]
    ids_a, ids_b = with_eot.tokenize(texts), without_eot.tokenize(texts)
    assert ids_a == ids_b
    for ids in ids_a:
        assert ids[-1] == eot and ids[-2] != eot
    # The official tokenizer (with its post-processor) gives the same ids for ordinary text.
    official = with_eot.tokenizer.tokenizer(texts[0])["input_ids"]
    assert list(official) == ids_a[0]
    # Same weights (same seed), so the vectors agree too.
    assert cosines(with_eot.embed(texts), without_eot.embed(texts)).min() >= 0.99999


def test_token_id_input_equals_text_input(qwen_embedding):
    _, engine = qwen_embedding
    texts = mixed_texts(5, seed=5)
    ids = engine.tokenize(texts)
    without_eot = [row[:-1] for row in ids]
    np.testing.assert_allclose(engine.embed_token_ids(without_eot), engine.embed(texts), atol=1e-6)
    np.testing.assert_allclose(engine.embed_token_ids(ids), engine.embed(texts), atol=1e-6)


def test_truncation_right_left_and_refusal(model_factory):
    folder = model_factory("embedding", "fallback")
    engine = EmbeddingEngine.load(str(folder), max_length=32, dtype="float32")
    long_text = " ".join(f"word{i}" for i in range(200))
    (right,), (left,) = engine.tokenize([long_text]), engine.tokenize([long_text], truncation_direction="left")
    full = engine.tokenizer.encode([long_text])[0]
    eot = engine.tokenizer.token_id("<|endoftext|>")
    assert right == full[:31] + [eot]
    assert left == full[-31:] + [eot]
    assert engine.count_tokens([long_text, "short"]) == [32, len(engine.tokenize(["short"])[0])]
    # Truncated output equals the model card's code with the same max_length.
    reference = reference_embed(str(folder), [long_text], max_length=32).numpy()
    assert cosines(engine.embed([long_text]), reference).min() >= 0.9999
    with pytest.raises(InputTooLongError) as info:
        engine.embed(["short", long_text], truncate=False)
    assert info.value.index == 1 and info.value.max_length == 32 and info.value.length > 32
    assert "input[1]" in str(info.value)


@pytest.mark.parametrize(
    ("texts", "fragment"),
    [
        ([], "must not be empty"),
        ("a single string", "list of strings"),
        (["ok", 3], "input[1] must be a string"),
        (["ok", "   \n"], "input[1] is empty"),
        (["ok", ""], "input[1] is empty"),
    ],
)
def test_bad_texts_raise_typed_errors(qwen_embedding, texts, fragment):
    _, engine = qwen_embedding
    with pytest.raises(InvalidInputError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        engine.embed(texts)


@pytest.mark.parametrize("dimensions", [0, 31, 65, 4096, True, 40.0])
def test_dimensions_out_of_range(qwen_embedding, dimensions):
    _, engine = qwen_embedding
    with pytest.raises(InvalidInputError, match="dimensions must be an integer from 32 to 64"):
        engine.embed(["text"], dimensions=dimensions)


def test_bad_token_ids_and_options(qwen_embedding):
    _, engine = qwen_embedding
    with pytest.raises(InvalidInputError, match="not a token id"):
        engine.embed_token_ids([[1, 2, engine.tokenizer.vocab_size]])
    with pytest.raises(InvalidInputError, match="not a token id"):
        engine.embed_token_ids([[1, -2]])
    with pytest.raises(InvalidInputError, match="non-empty list"):
        engine.embed_token_ids([[]])
    with pytest.raises(InvalidInputError, match="unknown prompt_name 'nope'"):
        engine.embed(["x"], prompt_name="nope")
    with pytest.raises(InvalidInputError, match="not both"):
        engine.embed(["x"], instruction="a", prompt_name="query")
    with pytest.raises(InvalidInputError, match="instruction must be a non-empty"):
        engine.embed(["x"], instruction="  ")


def test_query_prompt_name_is_the_default_instruction(qwen_embedding):
    _, engine = qwen_embedding
    np.testing.assert_allclose(
        engine.embed(CARD_QUERIES, prompt_name="query"), engine.embed(CARD_QUERIES, instruction=DEFAULT_INSTRUCTION),
        atol=1e-6,
    )
    assert not np.allclose(engine.embed(CARD_QUERIES, prompt_name="query"), engine.embed(CARD_QUERIES), atol=1e-3)


def test_loading_errors(tmp_path, minilm_dir):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        EmbeddingEngine.load(str(tmp_path / "missing"))
    with pytest.raises(UnsupportedModelError, match="no config.json"):
        EmbeddingEngine.load(str(tmp_path))
    # A transformers folder that is neither Qwen3 nor sentence-transformers.
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text((minilm_dir / "config.json").read_text())
    with pytest.raises(UnsupportedModelError, match="neither a sentence-transformers folder"):
        EmbeddingEngine.load(str(tmp_path / "bert"))
    # A hub id while offline: a clear error, not a crash.
    with pytest.raises(ModelNotFoundError, match="could not be fetched from the Hugging Face hub"):
        EmbeddingEngine.load("qwen3-search-tests/no-such-model")


# ---------------- a real sentence-transformers model ----------------
@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return EmbeddingEngine.load(str(minilm_dir), dtype="float32")


def test_minilm_matches_sentence_transformers_encode(minilm, minilm_dir):
    from sentence_transformers import SentenceTransformer

    texts = mixed_texts(40, seed=21, max_words=400) + CARD_DOCUMENTS
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, convert_to_numpy=True)
    ours = minilm.embed(texts)
    assert minilm.dimensions == 384 and minilm.info.pooling == "mean"
    assert minilm.max_length == 256  # sentence_bert_config.json's max_seq_length
    assert cosines(ours, expected).min() >= 0.9999


def test_minilm_ranks_the_relevant_text_first(minilm):
    query = minilm.embed(["What is the capital of China?"])
    candidates = [
        "Gravity is a force that attracts two bodies towards each other.",
        "The capital of China is Beijing.",
        "Bananas are rich in potassium.",
        "The stock market fell sharply on Monday.",
    ]
    scores = (minilm.embed(candidates) @ query.T).ravel()
    assert int(np.argmax(scores)) == 1
    assert scores[1] - np.sort(scores)[-2] > 0.1


def test_minilm_rejects_instructions_but_takes_no_prompt(minilm):
    with pytest.raises(InvalidInputError, match="takes no instructions"):
        minilm.embed(["x"], instruction="Given a query")
    assert minilm.default_instruction is None
