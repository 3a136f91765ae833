"""PostgresIndex: collections, documents and vector search in PostgreSQL + pgvector.

Every stateless pipeline replica holds its own pools and talks to the database directly; the
database is the one writer and the source of truth, so replicas may autoscale and restart freely.

Layout (schema `qwen3_search` by default, created on first use together with the `vector`
extension, or a StorageSetupError says exactly what is missing):
- `collections`: one row per collection (name, model, width, index type, created_at) and its id;
- `docs_<id>`: one table per collection: `id text PRIMARY KEY, text, metadata jsonb, embedding
  vector(width)`, a GIN index on metadata (filters) and an HNSW index on the embedding. A table
  per collection gives each its own HNSW graph and vector width, and makes a delete one DROP.
  Ids are never reused, so a table name never points at another collection's documents.

HNSW by width (pgvector limits):
- up to 2000: `vector_ip_ops` on the float32 column; scores are exact inner products;
- 2001-4000 (or any width with hnsw_precision: halfvec): `halfvec_ip_ops` on
  `embedding::halfvec(width)`; the 16-bit graph proposes `rescore_factor x k` candidates,
  re-scored exactly on the float32 column;
- over 4000 (Qwen3-Embedding-8B): Matryoshka truncation: `halfvec_cosine_ops` on the first
  `truncated_dimensions` dimensions, candidates re-scored at full width.
`index: exact` collections get no HNSW index; `exact: true` searches disable index scans, so
Postgres scans and sorts exactly. A filter that matches fewer than `exact_filter_below`
documents (a bounded count decides) is answered exactly over its matches, found through the GIN
index: the graph would return top_k hits but miss true neighbours. Other filtered HNSW searches
use `hnsw.iterative_scan = relaxed_order` (results re-sorted), and when one still returns fewer
than top_k, the exact search over the matching documents answers instead.

Consistency: a write is acknowledged after its COMMIT. An upload locks its collection's catalog
row (FOR SHARE) in its transaction, and a delete removes that row (waiting for running uploads)
and drops the table in one transaction: an upload that loses the race fails with
CollectionNotFound instead of bringing the collection back, and one that began before a delete
and a re-creation of the same name does not land in the new collection (created_at differs).

Outages: connection failures, timeouts, a starting or read-only server raise StorageUnavailable
(503); the pools check connections when handing them out and reconnect by themselves.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types import TypeInfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .base import CollectionInfo, DocumentWrite, Hit
from .errors import (
    CollectionConflict,
    CollectionNotFound,
    DocumentNotFound,
    InvalidIndexRequest,
    StorageSetupError,
    StorageUnavailable,
)
from .filters import ParsedFilter, parse_filter
from .postgres_config import HNSW_HALFVEC_LIMIT, HNSW_VECTOR_LIMIT, PostgresConfig
from .postgres_lexical import PostgresLexical
from .validation import reject_duplicate_ids

__all__ = ["PostgresIndex", "SCHEMA_VERSION", "MIN_PGVECTOR", "hnsw_build_memory_mb",
           "hnsw_graph_bytes_per_document"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
MIN_PGVECTOR = (0, 8, 0)
"""hnsw.iterative_scan (filtered searches that still return top_k) arrived in pgvector 0.8.0."""
MAX_EF_SEARCH = 1000
"""pgvector's upper bound of hnsw.ef_search."""
_RETRY_TRANSIENT = 3
"""Attempts for a transaction that hit a deadlock or serialization failure (both roll back cleanly)."""


class _RolledBack(StorageUnavailable):
    """A deadlock or serialization failure: the transaction was rolled back whole, so redoing it is safe."""


@dataclass(frozen=True)
class _Table:
    """A collection's catalog row, cached per replica (safe: a table id is never reused)."""

    id: int
    info: CollectionInfo
    method: str
    """How its HNSW index is built: none, vector, halfvec or truncated."""

    @property
    def table(self) -> str:
        return f"docs_{self.id}"


def _index_method(dimensions: int, index_type: str, precision: str = "auto") -> str:
    if index_type == "exact":
        return "none"
    if dimensions <= HNSW_VECTOR_LIMIT and precision == "auto":
        return "vector"
    if dimensions <= HNSW_HALFVEC_LIMIT:
        return "halfvec"
    return "truncated"


def _endpoint(dsn: str) -> str:
    """host:port/db of a DSN, for messages (never the password)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        parts = urlsplit(dsn)
        return f"{parts.hostname}:{parts.port}{parts.path}"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def filter_sql(parsed: ParsedFilter, prefix: str = "f") -> tuple[sql.Composable, dict[str, Any]]:
    """A WHERE condition (named placeholders `%(f0)s`...) and its parameters, meaning exactly what the
    embedded index makes of `parse_filter`'s conditions.

    A (key, terms) pair holds when metadata[key] equals one of the terms, or is a list with an
    element equal to one: `metadata @> {"key": v}` or `metadata @> {"key": [v]}` (jsonb compares
    numbers by value, 1 = 1.0, and keeps booleans apart from numbers, like the embedded index;
    nested lists and objects never match). The GIN (jsonb_path_ops) index answers both forms.
    Every key must match.
    """
    if not parsed:
        return sql.SQL("TRUE"), {}
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {}
    for key, terms in parsed:
        alternatives = []
        for term in sorted(terms):
            value = json.loads(term)
            scalar, listed = f"{prefix}{len(params)}", f"{prefix}{len(params) + 1}"
            params[scalar], params[listed] = Jsonb({key: value}), Jsonb({key: [value]})
            alternatives.append(sql.SQL("metadata @> {} OR metadata @> {}").format(
                sql.Placeholder(scalar), sql.Placeholder(listed)))
        clauses.append(sql.SQL("(") + sql.SQL(" OR ").join(alternatives) + sql.SQL(")"))
    return sql.SQL(" AND ").join(clauses), params


class PostgresIndex(PostgresLexical):
    """A `CollectionIndex` over PostgreSQL + pgvector (see the module docstring; full-text search in
    postgres_lexical.py)."""

    name = "postgres"

    def __init__(self, config: PostgresConfig, *, environ: Mapping[str, str] | None = None) -> None:
        self.config = config.with_environment(environ)
        self._environ = environ
        self._write: AsyncConnectionPool | None = None
        self._read: AsyncConnectionPool | None = None
        self._setup_lock: asyncio.Lock | None = None
        self._extension_schema = "public"
        self._tables: dict[str, _Table] = {}

    # ------------------------------------------------------------------ lifecycle

    def _connect_kwargs(self) -> dict[str, Any]:
        # A callable, so a rotated password file is read again for every new connection.
        kwargs: dict[str, Any] = {"connect_timeout": max(1, math.ceil(self.config.connect_timeout_s)),
                                  "application_name": "qwen3-search"}
        password = self.config.password(self._environ)
        if password is not None:
            kwargs["password"] = password
        return kwargs

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        await conn.set_autocommit(True)  # every transaction is explicit
        from pgvector.psycopg.halfvec import register_halfvec_info
        from pgvector.psycopg.vector import register_vector_info

        # Looked up per connection: a read endpoint that is another database (not a physical
        # replica) has other type OIDs.
        vector = await TypeInfo.fetch(conn, f"{self._extension_schema}.vector")
        halfvec = await TypeInfo.fetch(conn, f"{self._extension_schema}.halfvec")
        if vector is None or halfvec is None:
            raise StorageSetupError(f"no pgvector types in {_endpoint(conn.info.dsn)}: run CREATE EXTENSION vector; "
                                    "there (a read endpoint needs the extension too)")
        register_vector_info(conn, vector)
        register_halfvec_info(conn, halfvec)

    def _pool(self, dsn: str, role: str) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            dsn, kwargs=self._connect_kwargs, min_size=self.config.pool_min_size,
            max_size=self.config.pool_max_size, open=False, configure=self._configure,
            check=AsyncConnectionPool.check_connection, name=f"qwen3-search-{role}",
            timeout=self.config.connect_timeout_s,
            # Give up a reconnection loop soon: its backoff doubles without bound, and the next
            # request that finds the pool empty starts a fresh attempt at once.
            reconnect_timeout=max(10.0, 3 * self.config.connect_timeout_s),
        )

    async def open(self) -> None:
        """Create what is missing in the database and open the pools; StorageUnavailable when it is down.

        Called by every method, so a replica that starts while the database is down answers 503
        and starts working when it comes back.
        """
        if self._write is not None:
            return
        if self._setup_lock is None:
            self._setup_lock = asyncio.Lock()
        async with self._setup_lock:
            if self._write is not None:
                return
            with self._translate(self.config.dsn):
                await self._setup()
            write = self._pool(self.config.dsn, "rw")
            await write.open(wait=False)
            read = write
            if self.config.read_dsn:
                read = self._pool(self.config.read_dsn, "ro")
                await read.open(wait=False)
            self._write, self._read = write, read

    async def close(self) -> None:
        pools = {id(p): p for p in (self._write, self._read) if p is not None}
        self._write = self._read = None
        for pool in pools.values():
            await pool.close()

    async def __aenter__(self) -> "PostgresIndex":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _setup(self) -> None:
        schema = self.config.schema_name
        conn = await psycopg.AsyncConnection.connect(self.config.dsn, autocommit=True, **self._connect_kwargs())
        async with conn:
            identity = await (await conn.execute("SELECT current_user, current_database()")).fetchone()
            assert identity is not None
            user, database = identity
            where = f"database {database!r} on {_endpoint(self.config.dsn)}"
            async with conn.transaction():
                # One replica at a time: concurrent CREATE ... IF NOT EXISTS can still collide.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(f"setup:{schema}"),))
                await self._setup_extension(conn, user, where)
                await self._setup_schema(conn, schema, user, database, where)
                await self.setup_lexical(conn)

    async def _setup_extension(self, conn: psycopg.AsyncConnection, user: str, where: str) -> None:
        row = await (await conn.execute(
            "SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'vector'")).fetchone()
        if row is None:
            available = await (await conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")).fetchone()
            if available is None:
                raise StorageSetupError(
                    f"pgvector is not installed on the PostgreSQL server of {where}: no `vector` in "
                    "pg_available_extensions. Install pgvector >= 0.8 on the server (package postgresql-NN-pgvector; "
                    "CloudNativePG: an image with pgvector or spec.postgresql.extensions; managed services: enable "
                    "the `vector` extension)")
            try:
                async with conn.transaction():
                    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except pg_errors.InsufficientPrivilege as exc:
                raise StorageSetupError(
                    f"the `vector` extension is not created in {where}, and user {user!r} may not create it "
                    f"({exc.diag.message_primary}). As a superuser (or the database owner where pgvector is "
                    "trusted), run in that database: CREATE EXTENSION vector;  (CloudNativePG: "
                    "bootstrap.initdb.postInitApplicationSQL)") from exc
            row = await (await conn.execute(
                "SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                "WHERE e.extname = 'vector'")).fetchone()
            assert row is not None
        version, self._extension_schema = row
        if _version(version) < MIN_PGVECTOR:
            raise StorageSetupError(
                f"pgvector {version} in {where} is older than {'.'.join(map(str, MIN_PGVECTOR))}, which filtered "
                "searches need (hnsw.iterative_scan): install a newer pgvector, then run "
                "ALTER EXTENSION vector UPDATE;")

    async def _setup_schema(self, conn: psycopg.AsyncConnection, schema: str, user: str, database: str,
                            where: str) -> None:
        ident = sql.Identifier(schema)
        exists = await (await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))).fetchone()
        try:
            async with conn.transaction():
                if not exists:
                    await conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
                await conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.meta (key text PRIMARY KEY, value text NOT NULL)").format(ident))
                await conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.collections ("
                    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                    " name text NOT NULL UNIQUE,"
                    " model text NOT NULL,"
                    " dimensions integer NOT NULL CHECK (dimensions > 0),"
                    " index_type text NOT NULL,"
                    " index_method text NOT NULL,"
                    " created_at double precision NOT NULL)").format(ident))
                await conn.execute(sql.SQL(
                    "INSERT INTO {}.meta VALUES ('schema_version', %s) ON CONFLICT (key) DO NOTHING").format(ident),
                    (SCHEMA_VERSION,))
        except pg_errors.InsufficientPrivilege as exc:
            what = (f"create schema {schema!r}: GRANT CREATE ON DATABASE {database} TO {user}; (or, as its owner: "
                    f"CREATE SCHEMA {schema} AUTHORIZATION {user};)") if not exists else (
                    f"create tables in schema {schema!r}: GRANT USAGE, CREATE ON SCHEMA {schema} TO {user};")
            raise StorageSetupError(f"user {user!r} may not {what} in {where} ({exc.diag.message_primary})") from exc
        row = await (await conn.execute(sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema_version'").format(
            ident))).fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise StorageSetupError(
                f"schema {schema!r} in {where} has layout version {row[0] if row else None}, this service writes "
                f"version {SCHEMA_VERSION}: use another schema_name or a matching release")

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _translate(self, dsn: str) -> Iterator[None]:
        """Database errors as the index's typed errors; anything unexpected stays a bug (500)."""
        where = _endpoint(dsn)
        try:
            yield
        except (StorageUnavailable, CollectionNotFound, DocumentNotFound, CollectionConflict, InvalidIndexRequest):
            raise
        except PoolTimeout as exc:
            raise StorageUnavailable(f"PostgreSQL at {where} is unavailable: no connection within "
                                     f"{self.config.connect_timeout_s:g} s ({exc})") from exc
        except (pg_errors.TransactionRollback, pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as exc:
            raise _RolledBack(f"PostgreSQL at {where} rolled the transaction back ({exc}); retry") from exc
        except pg_errors.QueryCanceled as exc:
            raise StorageUnavailable(f"PostgreSQL at {where} cancelled the statement (statement_timeout "
                                     f"{self.config.statement_timeout_s:g} s or shutdown): {exc}") from exc
        except pg_errors.ReadOnlySqlTransaction as exc:
            raise StorageUnavailable(f"PostgreSQL at {where} is read-only (a replica, or a failover in "
                                     f"progress): {exc}") from exc
        except pg_errors.InsufficientPrivilege as exc:
            raise StorageSetupError(f"PostgreSQL at {where} refused a privilege: {exc}") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # connection refused or lost, server starting / shutting down / in recovery, too many
            # connections, disk full: all transient from the service's point of view
            raise StorageUnavailable(f"PostgreSQL at {where} is unavailable: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self, *, read: bool = False, settings: Mapping[str, str] | None = None,
                           pipeline: bool = False) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection in a transaction with this service's search_path and statement_timeout set
        (SET LOCAL: nothing outlives the transaction, so a transaction-mode PgBouncer is fine)."""
        await self.open()
        pool = self._read if read else self._write
        assert pool is not None
        values = {"search_path": f"{self.config.schema_name}, {self._extension_schema}",
                  "statement_timeout": str(int(self.config.statement_timeout_s * 1000)), **(settings or {})}
        prelude = sql.SQL("SELECT ") + sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, true)").format(sql.Literal(k), sql.Literal(v)) for k, v in values.items())
        with self._translate(self.config.read_dsn if read and self.config.read_dsn else self.config.dsn):
            async with pool.connection() as conn:
                async with conn.pipeline() if pipeline else contextlib.nullcontext():
                    async with conn.transaction():
                        await conn.execute(prelude)
                        yield conn

    def _qualified(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.config.schema_name), sql.Identifier(table))

    async def _lookup(self, name: str, *, refresh: bool = False) -> _Table:
        if not refresh and name in self._tables:
            return self._tables[name]
        async with self._transaction() as conn:
            row = await (await conn.execute(
                "SELECT id, name, model, dimensions, index_type, created_at, index_method, lexical_language "
                "FROM collections "
                "WHERE name = %s", (name,))).fetchone()
        if row is None:
            self._tables.pop(name, None)
            raise CollectionNotFound(f"collection {name!r} does not exist", param="name")
        return self._remember(row)

    def _remember(self, row: tuple[Any, ...]) -> _Table:
        table_id, name, model, dimensions, index_type, created_at, method, language = row
        table = _Table(int(table_id), CollectionInfo(name=name, model=model, dimensions=int(dimensions),
                                                     index=index_type, created_at=float(created_at),
                                                     lexical_language=language), method)
        self._tables[name] = table
        return table

    async def _on_table(self, name: str, work: Any, *, read: bool = False) -> Any:
        """`await work(table, read)`: a table dropped under a stale cache entry is looked up again.

        A read replica that has not replayed a new collection's CREATE TABLE yet answers UndefinedTable
        for a table the primary has: such a read goes to the primary instead.
        """
        table = await self._lookup(name)
        read = read and self._read is not self._write
        for _ in range(3):
            try:
                return await work(table, read)
            except pg_errors.UndefinedTable:
                fresh = await self._lookup(name, refresh=True)  # CollectionNotFound when it is gone
                if fresh.id == table.id:
                    if not read:
                        raise
                    read = False
                table = fresh
        raise CollectionNotFound(f"collection {name!r} does not exist", param="name")

    # ------------------------------------------------------------------ collections

    async def create_collection(self, name: str, model: str, dimensions: int, index: str, *,
                                created_at: float | None = None, lexical_language: str = "simple"
                                ) -> tuple[CollectionInfo, bool]:
        """The collection and whether it was created; CollectionConflict when it exists with other settings.

        `created_at` keeps a migrated collection's original creation time.
        """
        if index not in ("auto", "exact", "hnsw"):
            raise InvalidIndexRequest(f"index must be auto, exact or hnsw, not {index!r}", param="index")
        if not 1 <= dimensions <= 16000:
            raise InvalidIndexRequest(f"dimensions must be from 1 to 16000, not {dimensions}", param="dimensions")
        method = _index_method(dimensions, index, self.config.hnsw_precision)
        for _ in range(3):
            async with self._transaction() as conn:
                await self.check_lexical_language(conn, lexical_language)
                row = await (await conn.execute(
                    "INSERT INTO collections (name, model, dimensions, index_type, index_method, created_at, "
                    "lexical_language) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING "
                    "RETURNING id, name, model, dimensions, index_type, created_at, index_method, lexical_language",
                    (name, model, dimensions, index, method, time.time() if created_at is None else created_at,
                     lexical_language),
                )).fetchone()
                created = row is not None
                if row is not None:  # the table comes into being in the same transaction as its row
                    await self._create_table(conn, self._remember(row))
                else:  # it exists (an INSERT racing ours waited for it to commit)
                    row = await (await conn.execute(
                        "SELECT id, name, model, dimensions, index_type, created_at, index_method, lexical_language "
                        "FROM collections "
                        "WHERE name = %s", (name,))).fetchone()
            if row is not None:
                break
            # deleted between our INSERT and SELECT: try to create it again
        else:
            raise CollectionConflict(f"collection {name!r} is being created and deleted concurrently; retry",
                                     param="name")
        table = self._remember(row)
        if not created:
            info = table.info
            if info.lexical_language != lexical_language:
                raise CollectionConflict(f"collection {name!r} exists with lexical_language "
                                         f"{info.lexical_language!r}; delete it first to change it",
                                         param="lexical_language")
            if (info.model, info.dimensions, info.index) != (model, dimensions, index):
                raise CollectionConflict(
                    f"collection {name!r} exists with model {info.model!r}, {info.dimensions} dimensions and index "
                    f"{info.index!r}; delete it first to change them", param="name")
            return await self.get_collection(name), False
        return table.info, True

    async def _create_table(self, conn: psycopg.AsyncConnection, table: _Table, *, hnsw: bool = True) -> None:
        d = table.info.dimensions
        await conn.execute(sql.SQL(
            "CREATE TABLE {} (id text PRIMARY KEY, text text NOT NULL, metadata jsonb, "
            "embedding vector({}) NOT NULL)").format(self._qualified(table.table), sql.Literal(d)))
        await conn.execute(sql.SQL("CREATE INDEX {} ON {} USING gin (metadata jsonb_path_ops)").format(
            sql.Identifier(f"{table.table}_metadata"), self._qualified(table.table)))
        await self._add_lexical(conn, table.table, table.info.lexical_language)
        if hnsw and table.method != "none":
            await conn.execute(self._hnsw_ddl(table))

    def _index_expression(self, table: _Table) -> tuple[sql.Composable, sql.Composable]:
        """The indexed expression and its operator class; searches order by the same expression."""
        d = table.info.dimensions
        if table.method == "vector":
            return sql.SQL("embedding"), sql.SQL("vector_ip_ops")
        if table.method == "halfvec":
            return sql.SQL("(embedding::halfvec({}))").format(sql.Literal(d)), sql.SQL("halfvec_ip_ops")
        m = self._indexed_width(table)
        return (sql.SQL("(subvector(embedding, 1, {})::halfvec({}))").format(sql.Literal(m), sql.Literal(m)),
                sql.SQL("halfvec_cosine_ops"))

    def _indexed_width(self, table: _Table) -> int:
        """Dimensions the HNSW index holds: the first truncated_dimensions of a truncated index, else all."""
        if table.method == "truncated":
            return min(self.config.truncated_dimensions, table.info.dimensions)
        return table.info.dimensions

    def _hnsw_ddl(self, table: _Table) -> sql.Composed:
        expression, opclass = self._index_expression(table)
        return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {}) WITH (m = {}, ef_construction = {})"
                       ).format(sql.Identifier(f"{table.table}_hnsw"), self._qualified(table.table), expression,
                                opclass, sql.Literal(self.config.hnsw_m),
                                sql.Literal(self.config.hnsw_ef_construction))

    async def _count(self, conn: psycopg.AsyncConnection, table: _Table) -> int:
        row = await (await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            self._qualified(table.table)))).fetchone()
        return int(row[0]) if row else 0

    async def describe(self, name: str, *, refresh: bool = True) -> CollectionInfo:
        """The collection's settings without counting its documents (one primary-key lookup in the
        catalog, where a count scans the collection): for the search and upload paths, which need the
        model and width before they embed. From the database by default, so a collection deleted and
        created again by another replica is never embedded for with the old one's model; refresh=False
        answers from this replica's cache (a table id is never reused, so a stale entry fails a later
        call with CollectionNotFound rather than reaching another collection)."""
        return (await self._lookup(name, refresh=refresh)).info

    async def get_collection(self, name: str) -> CollectionInfo:
        async def describe(table: _Table, _: bool) -> CollectionInfo:
            async with self._transaction() as conn:
                count = await self._count(conn, table)
            return CollectionInfo(**{**table.info.as_dict(), "count": count})

        return await self._on_table(name, describe)

    async def list_collections(self) -> list[CollectionInfo]:
        async with self._transaction() as conn:
            rows = await (await conn.execute(
                "SELECT id, name, model, dimensions, index_type, created_at, index_method, lexical_language "
                "FROM collections "
                "ORDER BY name")).fetchall()
            found = []
            for row in rows:
                table = self._remember(row)
                try:
                    async with conn.transaction():  # a savepoint: a table dropped meanwhile skips its row
                        count = await self._count(conn, table)
                except pg_errors.UndefinedTable:
                    continue
                found.append(CollectionInfo(**{**table.info.as_dict(), "count": count}))
        return found

    async def delete_collection(self, name: str) -> None:
        async with self._transaction() as conn:
            # Waits for uploads holding the row (FOR SHARE); later ones find it gone.
            row = await (await conn.execute("DELETE FROM collections WHERE name = %s RETURNING id",
                                            (name,))).fetchone()
            if row is None:
                self._tables.pop(name, None)
                raise CollectionNotFound(f"collection {name!r} does not exist", param="name")
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._qualified(f"docs_{int(row[0])}")))
        self._tables.pop(name, None)

    async def build_index(self, name: str) -> None:
        """Build a collection's HNSW index if it is missing (after a bulk load with the index dropped), in
        memory sized to the graph (`build_memory_mb`), and gather the table's planner statistics."""
        table = await self._lookup(name, refresh=True)
        if table.method == "none":
            return
        async with self._transaction() as conn:
            documents = await self._count(conn, table)
        memory_mb = hnsw_build_memory_mb(documents, self._indexed_width(table), table.method, self.config.hnsw_m,
                                         self.config.build_memory_mb)
        settings = {"statement_timeout": "0", "maintenance_work_mem": f"{memory_mb}MB"}
        if self.config.build_parallel_workers is not None:
            settings["max_parallel_maintenance_workers"] = str(self.config.build_parallel_workers)

        def warn_on_spill(notice: psycopg.errors.Diagnostic) -> None:
            if "no longer fits into maintenance_work_mem" in (notice.message_primary or ""):
                logger.warning("collection %r: the HNSW build outgrew its %d MB (%s); it goes on, several times "
                               "slower. Raise index.postgres.build_memory_mb (now %d) to build it in memory.",
                               name, memory_mb, notice.message_primary, self.config.build_memory_mb)

        logger.info("collection %r: building its HNSW index over %d documents with maintenance_work_mem %d MB",
                    name, documents, memory_mb)
        async with self._transaction(settings=settings) as conn:
            conn.add_notice_handler(warn_on_spill)
            try:
                await conn.execute(self._hnsw_ddl(table))
            finally:
                conn.remove_notice_handler(warn_on_spill)
            # Statistics now, not when autovacuum gets to it: until then the planner guesses filter
            # selectivities and scans the whole table for a filter the metadata index would answer.
            await conn.execute(sql.SQL("ANALYZE {}").format(self._qualified(table.table)))

    async def drop_index(self, name: str) -> None:
        """Drop a collection's HNSW index, e.g. before a bulk load (build_index puts it back)."""
        table = await self._lookup(name, refresh=True)
        async with self._transaction() as conn:
            await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(
                self._qualified(f"{table.table}_hnsw")))

    # ------------------------------------------------------------------ documents

    async def upsert(self, collection: CollectionInfo, documents: list[DocumentWrite]) -> int:
        """Insert or replace by id in one transaction, acknowledged after COMMIT."""
        if not documents:
            return 0
        reject_duplicate_ids(d.id for d in documents)
        rows = [self._row(collection, position, d) for position, d in enumerate(documents)]
        for attempt in range(_RETRY_TRANSIENT):
            try:
                return await self._upsert_once(collection, rows)
            except _RolledBack:
                if attempt == _RETRY_TRANSIENT - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    @staticmethod
    def _row(collection: CollectionInfo, position: int, document: DocumentWrite) -> tuple[Any, ...]:
        vector = np.asarray(document.vector, dtype=np.float32).reshape(-1)
        if vector.shape != (collection.dimensions,):
            raise InvalidIndexRequest(
                f"document {document.id!r}: vector has {vector.shape[0]} dimensions, collection "
                f"{collection.name!r} has {collection.dimensions}", param="documents", index=position)
        if not np.isfinite(vector).all():
            raise InvalidIndexRequest(f"document {document.id!r}: vector has NaN or infinite values",
                                      param="documents", index=position)
        for field, value in (("id", document.id), ("text", document.text)):
            if "\x00" in value:
                raise InvalidIndexRequest(f"document {document.id!r}: {field} contains a NUL character "
                                          "(PostgreSQL text cannot hold it)", param="documents", index=position)
        if document.metadata is not None and "\\u0000" in json.dumps(document.metadata):
            raise InvalidIndexRequest(f"document {document.id!r}: metadata contains a NUL character (jsonb cannot "
                                      "hold it)", param="documents", index=position)
        metadata = None if document.metadata is None else Jsonb(document.metadata)
        return document.id, document.text, metadata, vector

    async def _upsert_once(self, collection: CollectionInfo, rows: list[tuple[Any, ...]]) -> int:
        async with self._transaction() as conn:
            found = await (await conn.execute(
                "SELECT id, name, model, dimensions, index_type, created_at, index_method, lexical_language "
                "FROM collections "
                "WHERE name = %s FOR SHARE", (collection.name,))).fetchone()
            if found is None or float(found[5]) != collection.created_at:
                self._tables.pop(collection.name, None)
                raise CollectionNotFound(
                    f"collection {collection.name!r} does not exist" if found is None else
                    f"collection {collection.name!r} was deleted (and created again) while this upload was in "
                    "flight; upload again", param="name")
            table = self._remember(found)
            if (table.info.model, table.info.dimensions) != (collection.model, collection.dimensions):
                raise CollectionConflict(f"collection {collection.name!r} changed while writing; retry",
                                         param="name")
            async with conn.cursor() as cursor:
                await cursor.executemany(sql.SQL(
                    "INSERT INTO {} (id, text, metadata, embedding) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, metadata = EXCLUDED.metadata, "
                    "embedding = EXCLUDED.embedding").format(self._qualified(table.table)), rows)
        return len(rows)

    async def get_document(self, collection: str, doc_id: str) -> dict[str, Any]:
        async def get(table: _Table, _: bool) -> dict[str, Any]:
            async with self._transaction() as conn:
                row = await (await conn.execute(sql.SQL("SELECT id, text, metadata FROM {} WHERE id = %s").format(
                    self._qualified(table.table)), (doc_id,))).fetchone()
            if row is None:
                raise DocumentNotFound(f"no document {doc_id!r} in collection {collection!r}", param="id")
            return {"id": row[0], "text": row[1], "metadata": row[2]}

        return await self._on_table(collection, get)

    async def delete_document(self, collection: str, doc_id: str) -> None:
        async def delete(table: _Table, _: bool) -> None:
            async with self._transaction() as conn:
                cursor = await conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(
                    self._qualified(table.table)), (doc_id,))
                if cursor.rowcount == 0:
                    raise DocumentNotFound(f"no document {doc_id!r} in collection {collection!r}", param="id")

        await self._on_table(collection, delete)

    async def count(self, collection: str) -> int:
        return (await self.get_collection(collection)).count

    # ------------------------------------------------------------------ search

    async def search(self, collection: str, queries: np.ndarray, k: int, filter_: dict[str, Any] | None,
                     exact: bool) -> list[list[Hit]]:
        parsed = parse_filter(filter_)
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if k < 1 or len(queries) == 0:
            return [[] for _ in range(len(queries))]

        async def run(table: _Table, read: bool) -> list[list[Hit]]:
            if queries.shape[1] != table.info.dimensions:
                raise InvalidIndexRequest(f"query vectors have {queries.shape[1]} dimensions, collection "
                                          f"{collection!r} has {table.info.dimensions}", param="queries")
            approximate = not exact and table.method != "none"
            if approximate and parsed and await self._matches_fewer(table, parsed, self.config.exact_filter_below,
                                                                    read=read):
                approximate = False  # a selective filter: its few matches, scored exactly, are complete
            results = await self._search(table, queries, k, parsed, approximate=approximate, read=read)
            short = [i for i, hits in enumerate(results) if len(hits) < k] if approximate else []
            if short:  # fewer than k: the graph ran out (selective filter); the exact scan is complete
                again = await self._search(table, queries[short], k, parsed, approximate=False, read=read)
                for i, hits in zip(short, again, strict=True):
                    if len(hits) > len(results[i]):
                        results[i] = hits
            return results

        return await self._on_table(collection, run, read=True)

    async def _matches_fewer(self, table: _Table, parsed: ParsedFilter, limit: int, *, read: bool) -> bool:
        """Whether fewer than `limit` documents match the filter: a count that stops at `limit`, answered
        through the metadata GIN index when the filter is selective."""
        if limit < 1:
            return False
        condition, params = filter_sql(parsed)
        statement = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT %(limit)s) AS matching").format(
            self._qualified(table.table), condition)
        async with self._transaction(read=read) as conn:
            row = await (await conn.execute(statement, {**params, "limit": limit})).fetchone()
        return row is not None and int(row[0]) < limit

    def _search_sql(self, table: _Table, k: int, condition: sql.Composable, approximate: bool
                    ) -> tuple[sql.Composed, int]:
        """The statement for one query (params: vector, [index vector,] filter params..., limits) and the
        candidates it asks the graph for."""
        name = self._qualified(table.table)
        if not approximate or table.method == "vector":
            # vector (<= 2000): the graph's distances are the exact float32 inner products.
            # relaxed_order may return rows slightly out of order: sort the k again.
            statement = sql.SQL(
                "SELECT id, text, metadata, distance FROM (SELECT id, text, metadata, embedding <#> %(q)s AS distance "
                "FROM {} WHERE {} ORDER BY distance LIMIT %(k)s) AS found ORDER BY distance"
            ).format(name, condition)
            return statement, k
        candidates = max(k * self.config.rescore_factor, k + 16)
        expression, _ = self._index_expression(table)
        operator = sql.SQL("<#>") if table.method == "halfvec" else sql.SQL("<=>")
        statement = sql.SQL(
            "SELECT id, text, metadata, embedding <#> %(q)s AS distance FROM ("
            "SELECT id, text, metadata, embedding FROM {} WHERE {} ORDER BY {} {} %(iq)s LIMIT %(c)s) AS candidates "
            "ORDER BY distance LIMIT %(k)s").format(name, condition, expression, operator)
        return statement, candidates

    def _plan(self, table: _Table, k: int, parsed: ParsedFilter, approximate: bool
              ) -> tuple[sql.Composed, dict[str, str], Any]:
        """The statement of one query, its transaction settings, and a function from query to parameters."""
        condition, filter_params = filter_sql(parsed)
        statement, candidates = self._search_sql(table, k, condition, approximate)
        # Approximate: the graph, never a sequential scan. The planner does not count reading the vectors
        # out of line (TOAST: a 1024-d vector is 4 kB, the heap row 0.5 kB), so for collections of some
        # thousands to tens of thousands it prices a full scan below the graph: at 30,000 x 1024 that scan
        # answered in 220 ms where the graph takes about 3 (bench/index_backends.py --size 30000).
        settings = {"enable_indexscan": "off"} if not approximate else {
            "enable_seqscan": "off",
            "hnsw.ef_search": str(min(MAX_EF_SEARCH, max(self.config.ef_search, candidates))),
            "hnsw.iterative_scan": "relaxed_order",
            "hnsw.max_scan_tuples": str(self.config.max_scan_tuples),
        }
        m = self._indexed_width(table)

        def params(query: np.ndarray) -> dict[str, Any]:
            return {"q": query, "k": k, "c": candidates, "iq": query[:m], **filter_params}

        return statement, settings, params

    async def _search(self, table: _Table, queries: np.ndarray, k: int, parsed: ParsedFilter, *,
                      approximate: bool, read: bool) -> list[list[Hit]]:
        statement, settings, params = self._plan(table, k, parsed, approximate)
        # One round trip for BEGIN, the settings, every query and COMMIT (pipeline mode).
        async with self._transaction(read=read, settings=settings, pipeline=True) as conn:
            cursors = []
            for query in queries:
                cursor = conn.cursor()
                await cursor.execute(statement, params(query))
                cursors.append(cursor)
            results = []
            for cursor in cursors:
                rows = await cursor.fetchall()
                results.append([Hit(id=r[0], text=r[1], metadata=r[2], embedding_score=-float(r[3])) for r in rows])
                await cursor.close()
        return results

    async def explain(self, collection: str, query: np.ndarray, k: int, filter_: dict[str, Any] | None = None,
                      exact: bool = False, *, analyze: bool = False, settings: Mapping[str, str] | None = None
                      ) -> str:
        """PostgreSQL's plan of one search query (EXPLAIN [ANALYZE]), to check which index answers it;
        `settings` adds planner settings (e.g. enable_seqscan=off: can the HNSW index answer at all?)."""
        parsed = parse_filter(filter_)
        table = await self._lookup(collection)
        statement, search_settings, params = self._plan(table, k, parsed, not exact and table.method != "none")
        prefix = sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") if analyze else sql.SQL("EXPLAIN ")
        async with self._transaction(settings={**search_settings, **(settings or {})}) as conn:
            rows = await (await conn.execute(prefix + statement, params(np.asarray(query, np.float32)))).fetchall()
        return "\n".join(r[0] for r in rows)

    # ------------------------------------------------------------------ health

    async def health(self) -> dict[str, str]:
        status: dict[str, str] = {}
        try:
            await self.open()
        except StorageUnavailable as exc:
            return {"postgres": f"unavailable: {exc.message}"}
        for label, read in (("postgres", False), ("postgres-read", True)):
            if read and self._read is self._write:
                continue
            try:
                async with self._transaction(read=read) as conn:
                    await conn.execute("SELECT 1")
                status[label] = "ok"
            except StorageUnavailable as exc:
                status[label] = f"unavailable: {exc.message}"
        return status


def hnsw_graph_bytes_per_document(width: int, method: str, m: int) -> int:
    """Estimated bytes of one element of an HNSW graph while pgvector builds it in memory.

    pgvector keeps per element its value (4 bytes a dimension for `vector`, 2 for `halfvec`, plus
    a header), 2 x m neighbours on layer 0 and m on each upper layer (a pointer and a distance
    each), and its bookkeeping: value + 40 x m + 256 bytes (tests/index/test_postgres.py checks it
    against pgvector's own count).
    """
    return (4 if method == "vector" else 2) * width + 8 + 40 * m + 256


def hnsw_build_memory_mb(documents: int, width: int, method: str, m: int, ceiling_mb: int) -> int:
    """maintenance_work_mem (MB) to build an HNSW graph over `documents` in memory: the estimate plus
    a quarter, at least 64 MB, at most `ceiling_mb`."""
    estimate = math.ceil(documents * hnsw_graph_bytes_per_document(width, method, m) * 1.25 / 2**20)
    return min(ceiling_mb, max(64, estimate))


def _lock_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)
