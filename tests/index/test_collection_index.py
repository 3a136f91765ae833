"""The CollectionIndex contract, one suite run against every backend (parametrised, not copied).

- embedded: IndexShard objects behind the test adapter in embedded_adapter.py (two shards, so
  that fan-out and merging are exercised);
- postgres: PostgresIndex on the session's real PostgreSQL + pgvector server;
- postgres-shards: PostgresShards over three PostgresIndex shards (three schemas of that server
  standing in for three clusters: the same code paths).

Results are checked against numpy and against a plain-Python reading of the filter language, so
both backends must mean the same thing by a filter, an exact search and a count.
"""

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from deployments.index.base import CollectionIndex, CollectionInfo, DocumentWrite
from deployments.index.errors import CollectionConflict, CollectionNotFound, DocumentNotFound, InvalidIndexRequest

from .conftest import unique_schema
from .embedded_adapter import EmbeddedShardsIndex

pytestmark = pytest.mark.asyncio(loop_scope="session")

BACKENDS = ["embedded", "postgres", "postgres-shards"]
D = 16


@pytest_asyncio.fixture(params=BACKENDS, loop_scope="session")
async def index(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Any]:
    if request.param == "embedded":
        backend: Any = EmbeddedShardsIndex(str(tmp_path / "index"), shards=2)
    else:
        from deployments.index.postgres import PostgresIndex
        from deployments.index.postgres_config import PostgresConfig
        from deployments.index.postgres_shards import PostgresShards

        server = request.getfixturevalue("pg_server")

        def one() -> PostgresIndex:
            return PostgresIndex(PostgresConfig(dsn=server.dsn, schema_name=unique_schema(), connect_timeout_s=3),
                                 environ={})

        backend = one() if request.param == "postgres" else PostgresShards([one(), one(), one()])
    try:
        yield backend
    finally:
        await backend.close()


# ---------------------------------------------------------------- data


def unit(n: int, d: int = D, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def clustered(n: int, d: int = D, seed: int = 0, centres: int = 20, spread: float = 0.4) -> np.ndarray:
    """Unit vectors around `centres` directions that depend on (d, centres) only: calls with other seeds
    draw more points (e.g. queries) from the same clusters."""
    c = np.random.default_rng([d, centres]).standard_normal((centres, d)).astype(np.float32)
    rng = np.random.default_rng(seed)
    v = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


LANGS = ["en", "de", "fr"]


def metadata_for(i: int) -> dict[str, Any] | None:
    if i % 17 == 0:
        return None
    meta: dict[str, Any] = {"lang": LANGS[i % 3], "year": 2020 + i % 6, "tags": [["a"], ["a", "b"], ["c"], []][i % 4]}
    if i % 5 == 0:
        meta["flag"] = True
    if i % 7 == 0:
        meta["score"] = 1.0 if i % 2 else 1
    if i % 11 == 0:
        meta["note"] = None
    if i % 13 == 0:
        meta["nested"] = [["x"], {"y": 1}]
    return meta


def documents(vectors: np.ndarray, prefix: str = "d") -> list[DocumentWrite]:
    return [DocumentWrite(id=f"{prefix}{i}", text=f"text of {prefix}{i}", metadata=metadata_for(i), vector=v)
            for i, v in enumerate(vectors)]


def matches(meta: dict[str, Any] | None, filter_: dict[str, Any]) -> bool:
    """The filter language of deployments/index/filters.py, read independently of its code."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            return type(a) is type(b) and a == b
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return float(a) == float(b)
        return type(a) is type(b) and a == b

    for key, condition in filter_.items():
        wanted = condition["$in"] if isinstance(condition, dict) else [condition]
        if meta is None or key not in meta:
            return False
        value = meta[key]
        candidates = value if isinstance(value, list) else [value]
        candidates = [c for c in candidates if c is None or isinstance(c, (str, int, float, bool))]
        if not any(same(c, w) for c in candidates for w in wanted):
            return False
    return True


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int, allowed: list[int] | None = None) -> list[int]:
    rows = np.arange(len(vectors)) if allowed is None else np.asarray(allowed, dtype=np.int64)
    if len(rows) == 0:
        return []
    scores = vectors[rows] @ query
    return [int(rows[i]) for i in np.argsort(-scores, kind="stable")[:k]]


async def make(index: CollectionIndex, name: str = "docs", index_type: str = "auto", d: int = D) -> CollectionInfo:
    info, created = await index.create_collection(name, "test-model", d, index_type)
    assert created
    return info


# ---------------------------------------------------------------- collections


async def test_create_describe_list_delete(index: Any) -> None:
    info, created = await index.create_collection("docs", "test-model", D, "auto")
    assert created and (info.name, info.model, info.dimensions, info.index, info.count) == (
        "docs", "test-model", D, "auto", 0)
    again, created_again = await index.create_collection("docs", "test-model", D, "auto")
    assert not created_again and again.created_at == info.created_at
    for other in [("other-model", D, "auto"), ("test-model", D * 2, "auto"), ("test-model", D, "exact")]:
        with pytest.raises(CollectionConflict, match="exists with model"):
            await index.create_collection("docs", *other)
    await make(index, "second", "exact")
    assert [c.name for c in await index.list_collections()] == ["docs", "second"]
    described = await index.get_collection("docs")
    assert described.as_dict() == {**info.as_dict(), "count": 0}
    await index.delete_collection("docs")
    with pytest.raises(CollectionNotFound):
        await index.get_collection("docs")
    with pytest.raises(CollectionNotFound):
        await index.delete_collection("docs")
    assert [c.name for c in await index.list_collections()] == ["second"]


async def test_a_recreated_collection_starts_empty(index: Any) -> None:
    info = await make(index)
    await index.upsert(info, documents(unit(5)))
    await index.delete_collection("docs")
    fresh = await make(index)
    assert (await index.get_collection("docs")).count == 0
    assert await index.search("docs", unit(1, seed=9), 5, None, True) == [[]]
    assert fresh.created_at >= info.created_at


# ---------------------------------------------------------------- documents


async def test_describe_gives_the_settings_without_counting(index: Any) -> None:
    info = await make(index)
    await index.upsert(info, documents(unit(5)))
    described = await index.describe("docs")
    assert described == CollectionInfo(**{**info.as_dict(), "count": 0})  # the search path's lookup: no count
    assert (await index.get_collection("docs")).count == 5
    with pytest.raises(CollectionNotFound):
        await index.describe("none-such")


async def test_upsert_get_replace_delete_count(index: Any) -> None:
    info = await make(index)
    vectors = unit(40)
    assert await index.upsert(info, documents(vectors)) == 40
    assert (await index.get_collection("docs")).count == 40
    assert await index.get_document("docs", "d3") == {"id": "d3", "text": "text of d3", "metadata": metadata_for(3)}
    assert (await index.get_document("docs", "d0"))["metadata"] is None

    # replace d3: new text, metadata and vector; the count does not change
    new_vector = unit(1, seed=99)[0]
    await index.upsert(info, [DocumentWrite("d3", "replaced", {"lang": "xx"}, new_vector)])
    assert (await index.get_collection("docs")).count == 40
    assert await index.get_document("docs", "d3") == {"id": "d3", "text": "replaced", "metadata": {"lang": "xx"}}
    (best,) = (await index.search("docs", new_vector[None, :], 1, None, True))[0]
    assert best.id == "d3" and best.text == "replaced" and best.embedding_score == pytest.approx(1.0, abs=1e-5)
    assert [h.id for h in (await index.search("docs", new_vector[None, :], 5, {"lang": "xx"}, False))[0]] == ["d3"]

    await index.delete_document("docs", "d3")
    assert (await index.get_collection("docs")).count == 39
    with pytest.raises(DocumentNotFound):
        await index.get_document("docs", "d3")
    with pytest.raises(DocumentNotFound):
        await index.delete_document("docs", "d3")
    assert "d3" not in {h.id for h in (await index.search("docs", new_vector[None, :], 40, None, True))[0]}
    with pytest.raises(CollectionNotFound):
        await index.get_document("missing", "d1")
    with pytest.raises(CollectionNotFound):
        await index.delete_document("missing", "d1")


async def test_retried_upload_is_idempotent(index: Any) -> None:
    info = await make(index)
    batch = documents(unit(30))
    for _ in range(3):
        assert await index.upsert(info, batch) == 30
    assert (await index.get_collection("docs")).count == 30
    assert (await index.get_document("docs", "d29"))["text"] == "text of d29"


async def test_duplicate_ids_in_one_upload_are_refused(index: Any) -> None:
    info = await make(index)
    batch = documents(unit(6))
    batch[4] = DocumentWrite("d1", "second copy", None, batch[4].vector)
    with pytest.raises(InvalidIndexRequest, match="'d1' appears more than once") as caught:
        await index.upsert(info, batch)
    assert caught.value.param == "documents" and caught.value.index == 4
    assert (await index.get_collection("docs")).count == 0  # nothing of the refused upload is stored


async def test_unknown_collection_and_bad_input_errors(index: Any) -> None:
    with pytest.raises(CollectionNotFound):
        await index.search("missing", unit(1), 5, None, False)
    with pytest.raises(CollectionNotFound):
        await index.get_collection("missing")
    await make(index)
    with pytest.raises(InvalidIndexRequest, match="filter"):
        await index.search("docs", unit(1), 5, {"lang": {"$gt": 1}}, False)
    with pytest.raises(InvalidIndexRequest, match="filter"):
        await index.search("docs", unit(1), 5, {"lang": [["en"]]}, False)
    assert await index.search("docs", unit(2), 5, None, False) == [[], []]  # empty collection


# ---------------------------------------------------------------- search


FILTERS: list[dict[str, Any]] = [
    {"lang": "en"},
    {"year": {"$in": [2021, 2024]}},
    {"tags": "a"},  # list values: any element
    {"tags": {"$in": ["b", "c"]}},
    {"lang": "de", "tags": "a"},  # several keys: all
    {"lang": {"$in": ["en", "fr"]}, "year": 2022, "tags": {"$in": ["a", "c"]}},
    {"flag": True},
    {"flag": 1},  # booleans are not numbers
    {"score": 1},  # 1 == 1.0
    {"score": 1.0},
    {"note": None},  # an explicit null
    {"nested": "x"},  # elements of nested lists and objects never match
    {"year": "2021"},  # a string is not a number
    {"missing": "key"},
    {"lang": "none-such"},
]


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "approximate"])
async def test_filters_mean_the_same_on_every_backend(index: Any, exact: bool) -> None:
    info = await make(index, index_type="hnsw")
    vectors = clustered(400, seed=3)
    await index.upsert(info, documents(vectors))
    metas = [metadata_for(i) for i in range(len(vectors))]
    queries = unit(3, seed=4)
    for filter_ in FILTERS:
        allowed = [i for i, m in enumerate(metas) if matches(m, filter_)]
        found = await index.search("docs", queries, 10, filter_, exact)
        for query, hits in zip(queries, found, strict=True):
            assert [h.id for h in hits] == [f"d{i}" for i in exact_top(vectors, query, 10, allowed)], filter_
            for hit in hits:
                assert matches(hit.metadata, filter_) and hit.text == f"text of {hit.id}"
                assert hit.embedding_score == pytest.approx(float(vectors[int(hit.id[1:])] @ query), abs=1e-5)


async def test_exact_search_is_exact_and_hnsw_has_high_recall(index: Any) -> None:
    info = await make(index, index_type="hnsw", d=32)
    vectors = clustered(3000, d=32, seed=5)
    batch = documents(vectors)
    for start in range(0, len(batch), 500):
        await index.upsert(info, batch[start:start + 500])
    queries = clustered(20, d=32, seed=6)
    exact = await index.search("docs", queries, 10, None, True)
    approximate = await index.search("docs", queries, 10, None, False)
    recalls = []
    for query, exact_hits, approx_hits in zip(queries, exact, approximate, strict=True):
        truth = [f"d{i}" for i in exact_top(vectors, query, 10)]
        assert [h.id for h in exact_hits] == truth
        scores = [h.embedding_score for h in approx_hits]
        assert scores == sorted(scores, reverse=True) and len(approx_hits) == 10
        recalls.append(len({h.id for h in approx_hits} & set(truth)) / 10)
    assert np.mean(recalls) >= 0.9, recalls


async def test_a_selective_filter_still_returns_top_k(index: Any) -> None:
    """20 matching documents of 3000 under an HNSW index: all 10 wanted come back, the right ones."""
    info = await make(index, index_type="hnsw", d=32)
    vectors = clustered(3000, d=32, seed=7)
    rare = set(range(0, 3000, 150))
    batch = [DocumentWrite(f"d{i}", f"t{i}", {"group": "rare" if i in rare else "common"}, v)
             for i, v in enumerate(vectors)]
    for start in range(0, len(batch), 1000):
        await index.upsert(info, batch[start:start + 1000])
    queries = clustered(5, d=32, seed=8)
    found = await index.search("docs", queries, 10, {"group": "rare"}, False)
    for query, hits in zip(queries, found, strict=True):
        assert [h.id for h in hits] == [f"d{i}" for i in exact_top(vectors, query, 10, sorted(rare))]
    assert [len(h) for h in await index.search("docs", queries, 50, {"group": "rare"}, False)] == [20] * 5


async def test_several_queries_in_one_search(index: Any) -> None:
    info = await make(index)
    vectors = unit(60, seed=10)
    await index.upsert(info, documents(vectors))
    queries = unit(7, seed=11)
    found = await index.search("docs", queries, 4, {"lang": "en"}, False)
    assert len(found) == 7
    allowed = [i for i in range(60) if matches(metadata_for(i), {"lang": "en"})]
    for query, hits in zip(queries, found, strict=True):
        assert [h.id for h in hits] == [f"d{i}" for i in exact_top(vectors, query, 4, allowed)]


# ---------------------------------------------------------------- races


async def test_an_upload_after_a_delete_does_not_bring_the_collection_back(index: Any) -> None:
    info = await make(index)
    await index.upsert(info, documents(unit(5)))
    await index.delete_collection("docs")
    with pytest.raises(CollectionNotFound):
        await index.upsert(info, documents(unit(5, seed=1), "late"))
    with pytest.raises(CollectionNotFound):
        await index.get_collection("docs")
    assert await index.list_collections() == []


async def test_a_delete_racing_uploads_is_final(index: Any) -> None:
    info = await make(index)
    outcomes: list[str] = []

    async def upload(n: int) -> None:
        await asyncio.sleep(random.random() * 0.05)
        try:
            await index.upsert(info, documents(unit(20, seed=n), f"u{n}-"))
            outcomes.append("stored")
        except CollectionNotFound:
            outcomes.append("not found")

    async def delete() -> None:
        await asyncio.sleep(0.02)
        await index.delete_collection("docs")

    await asyncio.gather(*(upload(n) for n in range(12)), delete())
    assert len(outcomes) == 12
    with pytest.raises(CollectionNotFound):
        await index.get_collection("docs")
    # a new collection of the same name holds none of the uploads that raced the old one
    await make(index)
    assert (await index.get_collection("docs")).count == 0


async def test_concurrent_create_and_delete_of_one_name_stay_consistent(index: Any) -> None:
    rng = random.Random(5)
    for _ in range(8):
        calls = []
        for _ in range(6):
            if rng.random() < 0.5:
                calls.append(index.create_collection("flip", "test-model", D, "auto"))
            else:
                calls.append(index.delete_collection("flip"))
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            assert result is None or isinstance(result, (tuple, CollectionNotFound, CollectionConflict)), result
        names = [c.name for c in await index.list_collections()]
        try:
            info = await index.get_collection("flip")
        except CollectionNotFound:
            assert names == []
            continue
        assert names == ["flip"] and info.dimensions == D
        # the surviving collection is whole: it takes writes and answers searches
        await index.upsert(info, documents(unit(3, seed=1)))
        assert len((await index.search("flip", unit(1, seed=2), 5, None, False))[0]) >= 3


async def test_both_backends_implement_the_protocol(tmp_path: Any) -> None:
    from deployments.index.postgres import PostgresIndex
    from deployments.index.postgres_config import PostgresConfig

    assert isinstance(PostgresIndex(PostgresConfig(), environ={}), CollectionIndex)
    assert isinstance(EmbeddedShardsIndex(str(tmp_path / "x"), shards=1), CollectionIndex)
    assert json.dumps(PostgresIndex.name) == '"postgres"'
