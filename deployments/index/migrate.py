"""Copy collections from the embedded store (SQLite shard files) to PostgreSQL, without re-embedding.

    python -m deployments.index.migrate --from-embedded DATA_DIR --to-postgres DSN [--collection NAME]

DATA_DIR is the embedded index folder (`index.storage_path`, the folder with shard-N.sqlite3).
Documents keep their ids, texts, metadata and stored vectors, and collections their model,
width, index type, full-text language and creation time (PostgreSQL builds the full-text index
from the texts as they arrive). The password comes from $QWEN3_SEARCH_POSTGRES_PASSWORD or
libpq's PGPASSWORD / PGPASSFILE (or the DSN itself).

Safe to run again: documents are upserted by id, so a second run completes an interrupted one.
A collection new to PostgreSQL is loaded without its HNSW index, which is built once at the end
(much faster than growing the graph row by row). Stop writes to the embedded service while copying,
or run again afterwards: documents deleted in between are not deleted in PostgreSQL.
"""

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from .base import CollectionInfo, DocumentWrite
from .errors import CollectionConflict, IndexError_, StorageLayoutError
from .postgres_config import DSN_ENV, READ_DSN_ENV, PostgresConfig
from .store import CollectionRecord, DocumentStore, read_layout

__all__ = ["main", "migrate", "open_stores"]


def open_stores(data_dir: Path) -> list[DocumentStore]:
    """Every shard of an embedded index folder, in shard order; StorageLayoutError for a partial set."""
    files = sorted(data_dir.expanduser().glob("shard-*.sqlite3"))
    if not files:
        raise StorageLayoutError(f"no shard-N.sqlite3 files in {data_dir}: not an embedded index folder")
    layouts = {path: read_layout(path) for path in files}
    counts = {shards for _, shards in layouts.values()}
    if len(counts) != 1:
        raise StorageLayoutError(f"{data_dir} mixes layouts ({sorted(counts)} shards); copy one index at a time")
    (shards,) = counts
    present = {shard: path for path, (shard, _) in layouts.items()}
    missing = sorted(set(range(shards)) - set(present))
    if missing:
        raise StorageLayoutError(f"{data_dir} holds a {shards}-shard index without shard(s) {missing}")
    return [DocumentStore(present[shard], shard=shard, shards=shards) for shard in range(shards)]


def _catalog(stores: Sequence[DocumentStore], only: str | None) -> list[CollectionRecord]:
    records: dict[str, CollectionRecord] = {}
    for store in stores:
        for record in store.collections():
            known = records.setdefault(record.name, record)
            if (known.model, known.dimensions, known.index_type) != (record.model, record.dimensions,
                                                                     record.index_type):
                raise StorageLayoutError(f"collection {record.name!r} differs between shards: {known} vs {record}")
    if only is not None:
        if only not in records:
            raise StorageLayoutError(f"no collection {only!r} in the embedded index (it has: "
                                     f"{', '.join(sorted(records)) or 'none'})")
        return [records[only]]
    return [records[name] for name in sorted(records)]


async def migrate(stores: Sequence[DocumentStore], index: "PostgresIndexLike", *, collection: str | None = None,
                  batch: int = 500, out: TextIO | None = None) -> dict[str, int]:
    """Copy the collections; documents copied per collection."""
    copied: dict[str, int] = {}
    for record in _catalog(stores, collection):
        started = time.perf_counter()
        language = next((lang for store in stores if (lang := store.lexical_language(record.name))), None)
        info, created = await index.create_collection(record.name, record.model, record.dimensions,
                                                      record.index_type, created_at=record.created_at,
                                                      lexical_language=language or "simple")
        if created:
            await index.drop_index(record.name)  # built once at the end
        written = 0
        try:
            for store in stores:
                for documents in store.documents(record.name, record.dimensions, batch=batch):
                    written += await index.upsert(info, [DocumentWrite(d.id, d.text, d.metadata, d.vector)
                                                         for d in documents])
        finally:
            if created:
                await index.build_index(record.name)
        stored = (await index.get_collection(record.name)).count
        source = sum(store.count(record.name) for store in stores)
        if stored < source or (created and stored != source):
            raise StorageLayoutError(f"collection {record.name!r}: {source} documents in the embedded index but "
                                     f"{stored} in PostgreSQL after copying; run the migration again")
        copied[record.name] = written
        print(f"{record.name}: {written} documents copied ({record.dimensions} dimensions, model {record.model}, "
              f"{'new' if created else 'existing'} collection) in {time.perf_counter() - started:.1f} s",
              file=out or sys.stdout)
    return copied


class PostgresIndexLike(Protocol):
    """What migrate() needs of the target (PostgresIndex)."""

    async def create_collection(self, name: str, model: str, dimensions: int, index: str, *,
                                created_at: float | None = None, lexical_language: str = "simple"
                                ) -> tuple[CollectionInfo, bool]: ...
    async def drop_index(self, name: str) -> None: ...
    async def build_index(self, name: str) -> None: ...
    async def upsert(self, collection: CollectionInfo, documents: list[DocumentWrite]) -> int: ...
    async def get_collection(self, name: str) -> CollectionInfo: ...


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.index.migrate",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--from-embedded", required=True, type=Path, metavar="DATA_DIR",
                        help="embedded index folder (index.storage_path) with shard-N.sqlite3 files")
    parser.add_argument("--to-postgres", required=True, metavar="DSN", help="libpq URI of the PostgreSQL primary")
    parser.add_argument("--collection", metavar="NAME", help="copy this collection only (default: all)")
    parser.add_argument("--schema", default="qwen3_search", help="PostgreSQL schema (index.postgres.schema_name)")
    parser.add_argument("--batch-size", type=int, default=500, help="documents per transaction")
    parser.add_argument("--build-memory-mb", type=int, default=PostgresConfig.model_fields["build_memory_mb"].default,
                        help="most maintenance_work_mem for each HNSW build, in MB (index.postgres.build_memory_mb: "
                        "about 6 GB builds a 1M x 1024 graph in memory; keep it under the database's memory)")
    args = parser.parse_args(argv)

    from .postgres import PostgresIndex

    async def run() -> None:
        stores = open_stores(args.from_embedded)
        config = PostgresConfig(schema_name=args.schema, statement_timeout_s=600,
                                build_memory_mb=args.build_memory_mb).model_copy(
            update={"dsn": args.to_postgres})  # a DSN given here may carry a password
        # --to-postgres wins over $QWEN3_SEARCH_POSTGRES_DSN; the password variables still apply
        environ = {k: v for k, v in os.environ.items() if k not in (DSN_ENV, READ_DSN_ENV)}
        index = PostgresIndex(config, environ=environ)
        try:
            copied = await migrate(stores, index, collection=args.collection, batch=args.batch_size)
        finally:
            await index.close()
            for store in stores:
                store.close()
        print(f"done: {len(copied)} collection(s), {sum(copied.values())} documents", file=sys.stdout)

    try:
        asyncio.run(run())
    except (IndexError_, CollectionConflict) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
