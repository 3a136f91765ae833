"""The serving layer's deployment bodies called directly, without Ray: they are plain classes.

`LocalHandle` stands in for a Ray `DeploymentHandle` (a test double for Ray's transport only):
`handle.method.remote(*args)` awaits the real object's method in this process.
"""

from typing import Any

import numpy as np
import pytest

from deployments.catalog import ModelEntry
from deployments.config import EmbeddingModelConfig, RerankerModelConfig, SearchDefaults
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
    stored = await pipeline.upsert("docs", [(f"d{i}", t, {"topic": i % 3}) for i, t in enumerate(texts)])
    assert not isinstance(stored, Refusal) and stored.ids == [f"d{i}" for i in range(12)]
    # the embedder's batches come back for the ingress's metrics (12 texts, chunks of 64: one call)
    assert [model for model, _ in stored.reports] == ["tiny"] and sum(stored.reports[0][1].batch_sizes) == 12
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


class _Counting(LocalHandle):
    """A LocalHandle that counts the calls of each method."""

    def __init__(self, target: Any) -> None:
        super().__init__(target)
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> _Remote:
        self.calls[name] = self.calls.get(name, 0) + 1
        return super().__getattr__(name)


async def test_pipeline_search_modes(embedder, reranker, tmp_path):
    shards = [IndexShard(i, 2, str(tmp_path)) for i in range(2)]
    embed_handle = _Counting(embedder)
    models = [ModelEntry("tiny", "embedding", "tiny", "Embedder", True),
              ModelEntry("tiny-rr", "reranker", "tiny-rr", "Reranker", True)]
    pipeline = SearchPipeline(models=models, handles={"Embedder": embed_handle, "Reranker": LocalHandle(reranker)},
                              shards=[LocalHandle(s) for s in shards])
    info, _ = await pipeline.create_collection("docs", None, 32, "auto", "english")
    assert info.lexical_language == "english"
    texts = [f"replacement seal kit for pump model XQ-{7700 + i}" for i in range(20)]
    await pipeline.upsert("docs", [(f"d{i}", t, {"even": i % 2 == 0}) for i, t in enumerate(texts)])
    embedded = embed_handle.calls.get("embed", 0)

    lexical = await pipeline.search("docs", SearchJob(queries=["XQ-7713 pumps"], mode="lexical", top_k=5, top_n=5,
                                                      rerank=False))
    assert embed_handle.calls.get("embed", 0) == embedded  # no query embedding in lexical mode
    hits = lexical.results[0]
    assert hits[0].id == "d13" and hits[0].retrievers == {"lexical": 1} and hits[0].embedding_score is None
    assert hits[0].score == hits[0].lexical_score and lexical.timings_ms["embed_ms"] < 50

    hybrid = await pipeline.search("docs", SearchJob(queries=["XQ-7713 pumps"], mode="hybrid", top_k=6, top_n=6,
                                                     rerank=False, filter={"even": False}))
    hits = hybrid.results[0]
    found = {h.id: h for h in hits}
    assert len(hits) == 6 and "d13" in found and found["d13"].retrievers["lexical"] == 1
    assert all(h.metadata == {"even": False} for h in hits)
    assert all(h.fused_score is not None and h.score == h.fused_score for h in hits)
    assert any(set(h.retrievers or {}) == {"dense", "lexical"} for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    weighted = await pipeline.search("docs", SearchJob(queries=["XQ-7713"], mode="hybrid", top_k=4, top_n=4,
                                                       rerank=False, weights={"dense": 1.0, "lexical": 0.0}))
    dense = await pipeline.search("docs", SearchJob(queries=["XQ-7713"], top_k=4, top_n=4, rerank=False))
    assert [h.id for h in weighted.results[0]] == [h.id for h in dense.results[0]]  # lexical weight 0: dense order

    reranked = await pipeline.search("docs", SearchJob(queries=["seal kit XQ-7705"], mode="hybrid", top_k=5,
                                                       top_n=3))
    candidates = {h.id for h in reranked.results[0]}
    assert len(candidates) == 3 and all(h.retrievers for h in reranked.results[0])
    scores = [h.score for h in reranked.results[0]]
    assert scores == sorted(scores, reverse=True)


class _OnGpu(LocalHandle):
    """Double: the reranker's self-description as on a GPU (there is none here); its scoring is the real one."""

    async def _describe(self) -> dict[str, Any]:
        return {**await self._target.describe(), "device": "cuda:0"}

    def __getattr__(self, name: str) -> _Remote:
        return _Remote(self._describe) if name == "describe" else super().__getattr__(name)


async def test_a_search_without_top_k_gets_the_default_for_where_its_reranker_runs(embedder, reranker, tmp_path):
    shard = IndexShard(0, 1, str(tmp_path), hnsw_threshold=1000)
    models = [ModelEntry("tiny", "embedding", "tiny", "Embedder", True),
              ModelEntry("tiny-rr", "reranker", "tiny-rr", "Reranker", True)]
    defaults = SearchDefaults(top_k=9, top_k_cpu=4)

    def pipeline_with(reranker_handle: LocalHandle) -> SearchPipeline:
        return SearchPipeline(models=models, handles={"Embedder": LocalHandle(embedder), "Reranker": reranker_handle},
                              shards=[LocalHandle(shard)], defaults=defaults)

    on_cpu = pipeline_with(LocalHandle(reranker))
    await on_cpu.create_collection("docs", None, 32, "auto")
    await on_cpu.upsert("docs", [(f"d{i}", f"document {i} on topic {i % 3}", None) for i in range(12)])

    async def search(pipeline: SearchPipeline, **fields: Any) -> tuple[int | None, int, int]:
        """The top_k the search got, its hits, and how many documents the reranker scored for it."""
        assert reranker.batcher is not None
        before = reranker.batcher.stats.items
        outcome = await pipeline.search("docs", SearchJob(queries=["topic 1"], **fields))
        assert not isinstance(outcome, Refusal)
        return outcome.top_k, len(outcome.results[0]), reranker.batcher.stats.items - before

    assert await search(on_cpu, top_n=3) == (4, 3, 4)  # the reranker is on CPU: top_k_cpu
    assert await search(on_cpu, top_n=6) == (6, 6, 6)  # never fewer candidates than results
    assert await search(on_cpu, top_n=3, rerank=False) == (9, 3, 0)  # no reranker, no reranker's cost
    assert await search(on_cpu, top_k=7, top_n=3) == (7, 3, 7)  # a request's own top_k wins
    assert await search(pipeline_with(_OnGpu(reranker)), top_n=3) == (9, 3, 9)
