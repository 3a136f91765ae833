"""Lexical search through the CollectionIndex contract, one suite for both backends (the `index`
fixture of test_collection_index.py: the embedded ShardedIndex over two IndexShards, and PostgresIndex
on the session's real server), plus each backend's upgrade and crash checks driven the same way.
"""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployments.index.base import DocumentWrite
from deployments.index.errors import CollectionConflict, InvalidIndexRequest
from deployments.index.fusion import reciprocal_rank_fusion
from deployments.index.lexical import fts5_query, lexical_text
from deployments.index.postgres_shards import PostgresShards

from . import test_collection_index as contract
from .conftest import unique_schema
from .embedded_adapter import EmbeddedShardsIndex
from .test_collection_index import D, make, matches, metadata_for, unit

index = contract.index  # the contract suite's fixture: every test here runs on both backends

pytestmark = pytest.mark.asyncio(loop_scope="session")

RARE = "XQ-7731"


def parts_catalogue(n: int = 60) -> tuple[list[DocumentWrite], np.ndarray]:
    """`n` near-identical part descriptions, each with its own code; the vectors of all but the one
    holding RARE sit around the query direction, RARE's points away: dense search cannot find it."""
    rng = np.random.default_rng(0)
    query = unit(1, seed=42)[0]
    documents = []
    for i in range(n):
        code = RARE if i == 17 else f"XQ-{7700 + i if i != 31 else 7732}"
        if i == 17:
            vector = -query + 0.05 * rng.standard_normal(D).astype(np.float32)
        else:
            vector = query + 0.3 * rng.standard_normal(D).astype(np.float32)
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        documents.append(DocumentWrite(f"p{i}", f"Replacement seal kit for the pump assembly, part code {code}",
                                       metadata_for(i), vector))
    return documents, query


async def test_a_rare_exact_token_is_found_lexically_where_dense_search_misses_it(index: Any) -> None:
    info = await make(index)
    documents, query = parts_catalogue()
    await index.upsert(info, documents)
    (dense,) = await index.search("docs", query[None, :], 10, None, True)
    assert "p17" not in {h.id for h in dense}  # the constructed case: the vectors point elsewhere
    (lexical,) = await index.lexical_search("docs", [RARE], 10, None)
    assert lexical[0].id == "p17" and lexical[0].text.endswith(RARE)
    assert lexical[0].lexical_score is not None and lexical[0].embedding_score is None
    scores = [h.lexical_score for h in lexical]
    assert scores == sorted(scores, reverse=True)
    fused = reciprocal_rank_fusion({"dense": dense, "lexical": lexical}, limit=10)
    assert "p17" in [h.id for h in fused[:3]]  # hybrid returns it too, near the top
    assert next(h for h in fused if h.id == "p17").retrievers == {"lexical": 1}


async def test_filters_apply_to_the_lexical_retriever(index: Any) -> None:
    info = await make(index)
    documents, _ = parts_catalogue()
    await index.upsert(info, documents)
    for filter_ in ({"lang": "en"}, {"tags": "a"}, {"year": {"$in": [2021, 2024]}}, {"lang": "none-such"}):
        (hits,) = await index.lexical_search("docs", ["pump seal"], 100, filter_)
        expected = {d.id for d in documents if matches(d.metadata, filter_)}
        assert {h.id for h in hits} == expected, filter_
        assert all(matches(h.metadata, filter_) for h in hits)
    (few,) = await index.lexical_search("docs", ["pump"], 3, {"lang": "de"})
    assert len(few) == 3 and all(h.metadata["lang"] == "de" for h in few)  # k counted after filtering
    with pytest.raises(InvalidIndexRequest, match="filter"):
        await index.lexical_search("docs", ["pump"], 5, {"lang": {"$gt": 1}})


async def test_a_deleted_document_never_comes_back_from_the_lexical_index(index: Any) -> None:
    info = await make(index)
    documents, _ = parts_catalogue()
    await index.upsert(info, documents)
    await index.delete_document("docs", "p17")
    for query in (RARE, "pump", "seal kit"):
        (hits,) = await index.lexical_search("docs", [query], 100, None)
        assert "p17" not in {h.id for h in hits}, query
    (hits,) = await index.lexical_search("docs", ["pump"], 100, None)
    assert len(hits) == len(documents) - 1
    await index.delete_collection("docs")
    await make(index)  # the same name again: an empty full-text index too
    assert await index.lexical_search("docs", ["pump", RARE], 10, None) == [[], []]


async def test_an_upsert_replaces_the_old_terms(index: Any) -> None:
    info = await make(index)
    vectors = unit(3)
    await index.upsert(info, [DocumentWrite("a", "the quick brown fox", None, vectors[0]),
                              DocumentWrite("b", "a lazy dog sleeps", None, vectors[1])])
    await index.upsert(info, [DocumentWrite("a", "an entirely different zebra", {"v": 2}, vectors[2])])
    assert await index.lexical_search("docs", ["fox", "quick"], 10, None) == [[], []]
    (hits,) = await index.lexical_search("docs", ["zebra"], 10, None)
    assert [(h.id, h.text, h.metadata) for h in hits] == [("a", "an entirely different zebra", {"v": 2})]
    for _ in range(3):  # retried uploads (idempotent by id) do not pile terms up
        await index.upsert(info, [DocumentWrite("b", "a lazy dog sleeps", None, vectors[1])])
    (hits,) = await index.lexical_search("docs", ["dog"], 10, None)
    assert [h.id for h in hits] == ["b"]


async def test_cjk_text_is_searchable_lexically(index: Any) -> None:
    info = await make(index)
    texts = {
        "zh-1": "我爱北京天安门，天安门上太阳升。",
        "zh-2": "上海是中国最大的城市，也是重要的金融中心。",
        "zh-3": "北京烤鸭是一道著名的中国菜。",
        "ja-1": "東京タワーは東京の観光名所です。",
        "ko-1": "한국어 검색 엔진을 만들었습니다.",
        "en-1": "Beijing is the capital of China.",
    }
    vectors = unit(len(texts))
    await index.upsert(info, [DocumentWrite(i, t, None, v)
                              for (i, t), v in zip(texts.items(), vectors, strict=True)])
    queries = ["天安门", "北京", "金融中心", "東京タワー", "검색", "烤鸭 上海"]
    found = await index.lexical_search("docs", queries, 10, None)
    ids = [[h.id for h in hits] for hits in found]
    assert ids[0] == ["zh-1"]  # a word inside an unsegmented sentence
    assert set(ids[1]) == {"zh-1", "zh-3"}
    assert ids[2] == ["zh-2"]
    assert ids[3] == ["ja-1"]
    assert ids[4] == ["ko-1"]
    assert set(ids[5]) == {"zh-2", "zh-3"}  # any of the words
    assert await index.lexical_search("docs", ["！？。"], 10, None) == [[]]  # punctuation only: no words


async def test_several_queries_english_stemming_and_languages(index: Any) -> None:
    plain = await make(index, "plain")
    english, created = await index.create_collection("english", "test-model", D, "auto", lexical_language="english")
    assert created and english.lexical_language == "english" and plain.lexical_language == "simple"
    assert (await index.get_collection("english")).lexical_language == "english"
    vectors = unit(2)
    batch = [DocumentWrite("run", "The pumps were running all night", None, vectors[0]),
             DocumentWrite("other", "A quiet evening", None, vectors[1])]
    await index.upsert(plain, batch)
    await index.upsert(english, batch)
    assert [[h.id for h in hits] for hits in await index.lexical_search("english", ["pump", "runs", "quiet"], 5,
                                                                          None)] == [["run"], ["run"], ["other"]]
    assert [[h.id for h in hits] for hits in await index.lexical_search("plain", ["pump", "pumps"], 5, None)] == [
        [], ["run"]]
    with pytest.raises(CollectionConflict, match="lexical_language"):
        await index.create_collection("english", "test-model", D, "auto", lexical_language="simple")
    with pytest.raises(InvalidIndexRequest, match="lexical_language") as caught:
        await index.create_collection("bad", "test-model", D, "auto", lexical_language="klingon")
    assert caught.value.param == "lexical_language"
    assert "bad" not in {c.name for c in await index.list_collections()}


# ---------------------------------------------------------------- upgrade and crashes, per backend


async def _downgrade_and_reopen(index: Any, tmp_path: Path) -> Any:
    """Remove every trace of the lexical index as a release without it would have left the storage,
    then open the storage again (a new release starting); the reopened index."""
    if index.name == "embedded":
        folder = index.local_shards[0].store.path.parent
        await index.close()
        import sqlite3

        for path in folder.glob("shard-*.sqlite3"):
            db = sqlite3.connect(path)
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name GLOB 'lexical_[0-9]*'"
                                      " AND name NOT GLOB 'lexical_*_*'").fetchall():
                db.execute(f"DROP TABLE {name}")
            db.execute("DROP TABLE lexical_indexes")
            db.commit()
            db.close()
        return EmbeddedShardsIndex(str(folder), shards=2)
    from deployments.index.postgres import PostgresIndex

    schema = index.config.schema_name
    config = index.config
    async with index._transaction() as conn:
        for (table_id,) in await (await conn.execute("SELECT id FROM collections")).fetchall():
            await conn.execute(f"ALTER TABLE {schema}.docs_{table_id} DROP COLUMN lexical")
        await conn.execute("ALTER TABLE collections DROP COLUMN lexical_language")
        await conn.execute(f"DROP FUNCTION {schema}.lexical_query(regconfig, text)")
        await conn.execute(f"DROP FUNCTION {schema}.lexical_text(text)")
    await index.close()
    return PostgresIndex(config, environ={})


def _one_storage(index: Any) -> None:
    if isinstance(index, PostgresShards):
        pytest.skip("storage-level check: each PostgresShards shard is a PostgresIndex, checked as `postgres`")


async def test_an_existing_collection_gets_its_lexical_index_on_upgrade(index: Any, tmp_path: Path) -> None:
    _one_storage(index)
    info = await make(index)
    documents, query = parts_catalogue()
    await index.upsert(info, documents)
    upgraded = await _downgrade_and_reopen(index, tmp_path)
    try:
        described = await upgraded.get_collection("docs")
        assert described.count == len(documents) and described.lexical_language == "simple"
        (hits,) = await upgraded.lexical_search("docs", [RARE], 5, None)
        assert hits[0].id == "p17"
        (dense,) = await upgraded.search("docs", query[None, :], 5, None, True)  # vectors untouched
        assert len(dense) == 5
        await upgraded.upsert(described, [DocumentWrite("new", "a brand new gasket", None, unit(1)[0])])
        assert [h.id for h in (await upgraded.lexical_search("docs", ["gasket"], 5, None))[0]] == ["new"]
    finally:
        await upgraded.close()


async def test_the_sql_and_python_text_preparations_agree(pg_server: Any) -> None:
    samples = ["我爱北京天安门", "abc北京def  x", "", "京", "東京タワーへ行く", "한국어 검색", "a一b丁丂c",
               "plain words", "XQ-7731, ok?", "𠀀𠀁 ext-B", "ﾃｽﾄ half-width", "mixed中文and English文本"]
    schema = unique_schema()
    from deployments.index.postgres_lexical import LEXICAL_TEXT_SQL

    server = pg_server
    server.psql(f"CREATE SCHEMA {schema}; " + LEXICAL_TEXT_SQL.format(schema=schema))
    for text in samples:
        literal = text.replace("'", "''")
        sql_text = server.psql(f"SELECT '[' || {schema}.lexical_text('{literal}') || ']'")
        assert sql_text == f"[{lexical_text(text)}]", text


async def test_fts5_queries_quote_every_word() -> None:
    assert fts5_query('XQ-7731 "pump" pump') == '"xq-7731" OR """pump""" OR "pump"'
    assert fts5_query("天安门") == '"天安" OR "安门"'
    assert fts5_query(" ... !!! ") is None


_EMBEDDED_WRITER = """
import asyncio, sys
import numpy as np
from deployments.index.shard import IndexShard
shard = IndexShard(0, 1, sys.argv[1])
record = {"name": "docs", "model": "m", "dimensions": 8, "index": "auto", "lexical_language": "simple"}
async def main():
    created = await shard.create_collection("docs", "m", 8, "auto", "simple")  # an upload never creates one
    assert isinstance(created, dict), created
    for batch in range(1000):
        docs = [(f"b{batch}-{i}", f"entry {batch}-{i} token{batch}x{i}", {"batch": batch},
                 np.full(8, 1.0, np.float32) / np.sqrt(8)) for i in range(20)]
        result = await shard.upsert(record, docs)
        assert result == 20, result
        print(f"ACK {batch}", flush=True)
asyncio.run(main())
"""


async def test_lexical_hits_survive_a_sigkill_after_acknowledged_uploads(index: Any, tmp_path: Path,
                                                                           request: pytest.FixtureRequest) -> None:
    """Embedded: a writer process (IndexShard over its SQLite file) is SIGKILLed mid-stream; PostgreSQL:
    the server is SIGKILLed mid-ingest. Every acknowledged document is found by its own rare token."""
    _one_storage(index)
    acknowledged: list[int] = []
    if index.name == "embedded":
        await index.close()
        folder = tmp_path / "crash"
        process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_EMBEDDED_WRITER), str(folder)],
                                   stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
        assert process.stdout is not None
        for line in process.stdout:
            acknowledged.append(int(line.split()[1]))
            if len(acknowledged) == 40:
                break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        reopened: Any = EmbeddedShardsIndex(str(folder), shards=1)
    else:
        from deployments.index.errors import StorageUnavailable
        from deployments.index.postgres import PostgresIndex
        from deployments.index.postgres_config import PostgresConfig

        server = request.getfixturevalue("own_pg_server")
        reopened = PostgresIndex(PostgresConfig(dsn=server.dsn, schema_name=unique_schema(), connect_timeout_s=1,
                                                pool_max_size=4), environ={})
        info, _ = await reopened.create_collection("docs", "m", 8, "auto")
        stop = asyncio.Event()

        async def ingest() -> None:
            batch = 0
            while not stop.is_set():
                docs = [DocumentWrite(f"b{batch}-{i}", f"entry {batch}-{i} token{batch}x{i}", {"batch": batch},
                                      np.full(8, 1.0, np.float32) / np.sqrt(8)) for i in range(20)]
                try:
                    await reopened.upsert(info, docs)
                    acknowledged.append(batch)
                except StorageUnavailable:
                    await asyncio.sleep(0.05)
                batch += 1

        writer = asyncio.create_task(ingest())
        while len(acknowledged) < 40:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.3)
        stop.set()
        await writer
        await asyncio.to_thread(server.start)
        deadline = time.monotonic() + 30
        while True:
            try:
                await reopened.get_collection("docs")
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
    try:
        assert len(acknowledged) >= 40
        for batch in acknowledged[:: max(1, len(acknowledged) // 15)] + [acknowledged[-1]]:
            queries = [f"token{batch}x{i}" for i in (0, 19)]
            found = await reopened.lexical_search("docs", queries, 5, {"batch": batch})
            assert [[h.id for h in hits] for hits in found] == [[f"b{batch}-0"], [f"b{batch}-19"]], batch
        (everything,) = await reopened.lexical_search("docs", ["entry"], 100000, None)
        assert len(everything) == (await reopened.get_collection("docs")).count >= 20 * len(acknowledged)
    finally:
        await reopened.close()
