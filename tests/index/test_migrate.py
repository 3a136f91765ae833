"""`python -m deployments.index.migrate`: embedded shard files -> PostgreSQL, without re-embedding."""

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployments.index.migrate import main, open_stores

from .conftest import unique_schema
from .embedded_adapter import EmbeddedShardsIndex
from .pg_server import PgServer
from .test_collection_index import clustered, documents, metadata_for

REPO = Path(__file__).resolve().parents[2]


def build_embedded(folder: Path) -> dict[str, np.ndarray]:
    """Two collections on a 2-shard embedded index; their vectors by collection."""

    async def fill() -> dict[str, np.ndarray]:
        index = EmbeddedShardsIndex(str(folder), shards=2)
        vectors = {"papers": clustered(700, d=24, seed=1), "notes": clustered(40, d=8, seed=2)}
        papers, _ = await index.create_collection("papers", "Qwen/Qwen3-Embedding-0.6B", 24, "hnsw")
        notes, _ = await index.create_collection("notes", "Qwen/Qwen3-Embedding-0.6B", 8, "exact")
        await index.upsert(papers, documents(vectors["papers"], "p"))
        await index.upsert(notes, documents(vectors["notes"], "n"))
        await index.delete_document("papers", "p5")
        await index.close()
        return vectors

    return asyncio.run(fill())


def postgres_view(dsn: str, schema: str, name: str, queries: np.ndarray) -> tuple[Any, Any, Any]:
    from deployments.index.postgres import PostgresIndex
    from deployments.index.postgres_config import PostgresConfig

    async def read() -> tuple[Any, Any, Any]:
        index = PostgresIndex(PostgresConfig(dsn=dsn, schema_name=schema), environ={})
        try:
            info = await index.get_collection(name)
            hits = await index.search(name, queries, 10, None, True)
            document = await index.get_document(name, hits[0][0].id)
            return info, hits, document
        finally:
            await index.close()

    return asyncio.run(read())


def test_migration_copies_documents_and_vectors(pg_server: PgServer, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    vectors = build_embedded(tmp_path / "index")
    schema = unique_schema()
    argv = ["--from-embedded", str(tmp_path / "index"), "--to-postgres", pg_server.dsn, "--schema", schema,
            "--batch-size", "100", "--build-memory-mb", "2"]
    with caplog.at_level(logging.INFO, logger="deployments.index.postgres"):
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "papers: 699 documents copied" in out and "notes: 40 documents copied" in out
    assert "'papers': building its HNSW index over 699 documents with maintenance_work_mem 2 MB" in caplog.text

    queries = clustered(3, d=24, seed=3)
    info, hits, document = postgres_view(pg_server.dsn, schema, "papers", queries)
    assert (info.count, info.dimensions, info.index, info.model) == (699, 24, "hnsw", "Qwen/Qwen3-Embedding-0.6B")
    store = open_stores(tmp_path / "index")[0]
    assert info.created_at == store.collection("papers").created_at  # kept, not reset
    kept = np.delete(vectors["papers"], 5, axis=0)
    kept_ids = [i for i in range(700) if i != 5]
    for query, found in zip(queries, hits, strict=True):  # the very vectors: exact search agrees with numpy
        order = np.argsort(-(kept @ query), kind="stable")[:10]
        assert [h.id for h in found] == [f"p{kept_ids[i]}" for i in order]
        assert found[0].embedding_score == pytest.approx(float(kept[order[0]] @ query), abs=1e-6)
    number = int(document["id"][1:])
    assert document == {"id": f"p{number}", "text": f"text of p{number}", "metadata": metadata_for(number)}
    assert "_hnsw" in pg_server.psql(f"SELECT string_agg(indexname, ' ') FROM pg_indexes "
                                     f"WHERE schemaname = '{schema}'")  # built after the bulk load

    # again: idempotent, existing collections are topped up in place
    assert main(argv) == 0
    assert "existing collection" in capsys.readouterr().out
    assert postgres_view(pg_server.dsn, schema, "papers", queries)[0].count == 699


def test_one_collection_through_the_command_line(pg_server: PgServer, tmp_path: Path) -> None:
    build_embedded(tmp_path / "index")
    schema = unique_schema()
    result = subprocess.run(
        [sys.executable, "-m", "deployments.index.migrate", "--from-embedded", str(tmp_path / "index"),
         "--to-postgres", pg_server.dsn, "--collection", "notes", "--schema", schema],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "notes: 40 documents copied" in result.stdout and "papers" not in result.stdout
    assert pg_server.psql(f"SELECT string_agg(name, ',') FROM {schema}.collections") == "notes"


def test_migration_errors_say_what_is_wrong(pg_server: PgServer, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    build_embedded(tmp_path / "index")
    schema = unique_schema()
    base = ["--to-postgres", pg_server.dsn, "--schema", schema]
    assert main(["--from-embedded", str(tmp_path / "empty"), *base]) == 1
    assert "no shard-N.sqlite3 files" in capsys.readouterr().err
    assert main(["--from-embedded", str(tmp_path / "index"), "--collection", "nope", *base]) == 1
    err = capsys.readouterr().err
    assert "no collection 'nope'" in err and "it has: notes, papers" in err
    (tmp_path / "index" / "shard-1.sqlite3").rename(tmp_path / "shard-1.sqlite3")
    assert main(["--from-embedded", str(tmp_path / "index"), *base]) == 1
    assert "without shard(s) [1]" in capsys.readouterr().err
    (tmp_path / "shard-1.sqlite3").rename(tmp_path / "index" / "shard-1.sqlite3")

    # a collection that exists in PostgreSQL with another width is a conflict, not a silent mix
    from deployments.index.postgres import PostgresIndex
    from deployments.index.postgres_config import PostgresConfig

    async def clash() -> None:
        index = PostgresIndex(PostgresConfig(dsn=pg_server.dsn, schema_name=schema), environ={})
        await index.create_collection("notes", "Qwen/Qwen3-Embedding-0.6B", 16, "exact")
        await index.close()

    asyncio.run(clash())
    assert main(["--from-embedded", str(tmp_path / "index"), "--collection", "notes", *base]) == 1
    assert "exists with model" in capsys.readouterr().err
