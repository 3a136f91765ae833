"""The serving layer's deployment bodies called directly, without Ray: they are plain classes.

`LocalHandle` stands in for a Ray `DeploymentHandle` (a test double for Ray's transport only):
`handle.method.remote(*args)` awaits the real object's method in this process.
"""

from typing import Any

import numpy as np
import pytest

from deployments.catalog import ModelEntry
from deployments.config import EmbeddingModelConfig, RerankerModelConfig
from deployments.engine.reranking import sigmoid
from deployments.index import IndexShard
from deployments.index.errors import CollectionNotFound
from deployments.jobs import DecodeJob, EmbedJob, Refusal, RerankJob, SearchJob, TokenizeJob
from deployments.serving.pipeline import SearchPipeline
from deployments.serving.replicas import Embedder, Reranker
from tests.conftest import default_tokenizer_source


class _Remote:
    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)


class LocalHandle:
    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> _Remote:
        return _Remote(getattr(self._target, name))


@pytest.fixture(scope="module")
def embedder(model_factory) -> Embedder:
    folder = model_factory("embedding", default_tokenizer_source())
    return Embedder(EmbeddingModelConfig(model=str(folder), name="tiny", max_batch_tokens=256))


@pytest.fixture(scope="module")
def reranker(model_factory) -> Reranker:
    folder = model_factory("reranker", default_tokenizer_source())
    return Reranker(RerankerModelConfig(model=str(folder), name="tiny-rr"))


async def test_embedder_answers_like_its_engine(embedder):
    texts = ["a short one", "a somewhat longer text about search " * 5, "third"]
    outcome = await embedder.embed(EmbedJob(texts=texts, dimensions=32))
    np.testing.assert_allclose(outcome.vectors, embedder.engine.embed(texts, dimensions=32), atol=1e-6)
    assert outcome.token_counts == embedder.engine.count_tokens(texts)
    assert outcome.report.batch_sizes and sum(outcome.report.batch_sizes) == len(texts)
    described = await embedder.describe()
    assert described["backend"] == "torch" and described["dimensions"] == embedder.engine.dimensions
    await embedder.check_health()


async def test_embedder_refuses_bad_input_as_a_value(embedder):
    refusal = await embedder.embed(EmbedJob(texts=["fine", "  "]))
    assert isinstance(refusal, Refusal) and refusal.error.param == "input"
    refusal = await embedder.embed(EmbedJob(texts=["x"], dimensions=10**6))
    assert isinstance(refusal, Refusal) and refusal.error.param == "dimensions"


async def test_tokenize_and_decode_with_the_model_tokenizer(embedder, reranker):
    text = "The capital of China is Beijing. Café"
    listed = (await embedder.tokenize(TokenizeJob(texts=[text])))[0]
    assert [t.id for t in listed] == embedder.engine.tokenize([text])[0]  # the ids the model is fed
    assert listed[-1].special and not any(t.special for t in listed[:-1])
    raw = text.encode()
    assert all(raw[t.start:t.stop].decode() == t.text for t in listed[:-1])
    assert "".join(t.text for t in listed[:-1]) == text
    plain = (await embedder.tokenize(TokenizeJob(texts=[text], add_special_tokens=False)))[0]
    assert [t.id for t in plain] == [t.id for t in listed[:-1]]
    query = (await embedder.tokenize(TokenizeJob(texts=["q"], prompt_name="query")))[0]
    assert len(query) > 3 and query[-2].text == "q"
    assert await embedder.decode(DecodeJob(token_ids=[[t.id for t in listed]])) == [text]
    refusal = await embedder.tokenize(TokenizeJob(texts=["x"], prompt_name="nope"))
    assert isinstance(refusal, Refusal) and refusal.error.param == "prompt_name"
    refusal = await embedder.decode(DecodeJob(token_ids=[[10**9]]))
    assert isinstance(refusal, Refusal) and refusal.error.param == "ids"
    listed = (await reranker.tokenize(TokenizeJob(texts=[text], add_special_tokens=False)))[0]
    assert "".join(t.text for t in listed) == text
    assert isinstance(await reranker.tokenize(TokenizeJob(texts=["x"], prompt_name="query")), Refusal)


async def test_reranker_answers_like_its_engine(reranker):
    docs = ["Beijing is the capital.", "Bananas are yellow.", "Gravity pulls."]
    outcome = await reranker.rerank(RerankJob(groups=[("capital of China?", docs), ("fruit", docs[:1])]))
    np.testing.assert_allclose(sigmoid(outcome.logits[0]), reranker.engine.score("capital of China?", docs),
                               atol=1e-6)
    np.testing.assert_allclose(sigmoid(outcome.logits[1]), reranker.engine.score("fruit", docs[:1]), atol=1e-6)
    assert (await reranker.describe())["backend"] == "torch"


async def test_pipeline_over_local_shards_and_models(embedder, reranker, tmp_path):
    shards = [IndexShard(i, 2, str(tmp_path), hnsw_threshold=1000) for i in range(2)]
    models = [ModelEntry("tiny", "embedding", "tiny", "Embedder", True),
              ModelEntry("tiny-rr", "reranker", "tiny-rr", "Reranker", True)]
    pipeline = SearchPipeline(models=models, handles={"Embedder": LocalHandle(embedder),
                                                      "Reranker": LocalHandle(reranker)},
                              shards=[LocalHandle(s) for s in shards])
    info, created = await pipeline.create_collection("docs", None, 32, "auto")
    assert created and info.dimensions == 32 and info.model == "tiny"
    texts = [f"document number {i} about topic {i % 3}" for i in range(12)]
    ids = await pipeline.upsert("docs", [(f"d{i}", t, {"topic": i % 3}) for i, t in enumerate(texts)])
    assert ids == [f"d{i}" for i in range(12)]
    assert (await pipeline.get_collection("docs")).count == 12
    assert sum(len(s._collections["docs"].vectors) for s in shards) == 12  # spread over both shards
    outcome = await pipeline.search("docs", SearchJob(queries=[texts[4]], top_k=5, top_n=3, filter={"topic": 1},
                                                      rerank=False))
    hits = outcome.results[0]
    assert hits[0].id == "d4" and all(h.metadata == {"topic": 1} for h in hits)
    reranked = await pipeline.search("docs", SearchJob(queries=["topic 2"], top_k=4, top_n=4))
    scores = reranker.engine.score("topic 2", [h.text for h in reranked.results[0]])
    assert [h.score for h in reranked.results[0]] == pytest.approx(sorted(scores.tolist(), reverse=True), abs=1e-6)
    await pipeline.delete_collection("docs")
    refusal = await pipeline.get_collection("docs")
    assert isinstance(refusal, Refusal) and isinstance(refusal.error, CollectionNotFound)
