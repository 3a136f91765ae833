"""Full-text search of the PostgreSQL backend: a generated `tsvector` column, a GIN index, `ts_rank`.

Each collection's table `docs_<id>` has

    lexical tsvector GENERATED ALWAYS AS (to_tsvector('<language>', lexical_text(text))) STORED

with a GIN index on it. PostgreSQL computes the column in the statement that writes the row, so the
lexical index is always in the document's own transaction, and no write path changes. The
collection's `lexical_language` (collections.lexical_language) is any text search configuration of
the server (`simple`, `english`, `german`, ...; `\\dF` lists them). `lexical_text()` is the CJK
bigram preparation of `lexical.py`, in SQL (a test checks both give the same text).

Ranking: PostgreSQL has no BM25 (no IDF, no length saturation). A query is the OR of the distinct
lexemes of its own `to_tsvector` (the same configuration, so stemming and stop words match the
documents'), every matching row is ranked by `RANK_SQL` and the k best are returned. The choice was
measured on SciFact (bench/hybrid.py, README; lexical_language english): `ts_rank` with
normalization 1 (divided by 1 + log of the document length) gave nDCG@10 60.3, plain ts_rank 57.8,
ts_rank normalization 2 34.7, and ts_rank_cd 33-41 whatever the normalization (cover density
rewards query terms close together, which an OR of a sentence's words seldom has); FTS5's BM25
on the same text: 68.9. The gap is IDF: ts_rank weighs a common and a rare term alike.
Every matching row is ranked (GIN finds them; there is no top-k pruning as in a BM25 engine's
WAND), so a query of common words costs time proportional to the rows that contain one of them.

Upgrade (`setup_lexical`, at the first start of a release with lexical search, under the setup
advisory lock): the catalog gets its lexical_language column (`simple` for existing collections),
and every table without the column gets it by ALTER TABLE ... ADD COLUMN (PostgreSQL computes it
from the stored texts: no re-embedding) plus its GIN index.
"""

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from .base import Hit
from .errors import InvalidIndexRequest
from .filters import parse_filter
from .lexical import CJK_RANGES, DEFAULT_LEXICAL_LANGUAGE, LANGUAGE_PATTERN, LEXICAL_VERSION

if TYPE_CHECKING:
    from .postgres import _Table

__all__ = ["PostgresLexical", "LEXICAL_TEXT_SQL", "RANK_SQL"]

RANK_SQL = "ts_rank(lexical, query, 1)"
"""How matching rows are ranked (see the module docstring for why this one)."""

_CJK = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in CJK_RANGES)
LEXICAL_TEXT_SQL = f"""
CREATE OR REPLACE FUNCTION {{schema}}.lexical_text(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
  SELECT coalesce(string_agg(
           CASE WHEN m[2] IS NULL THEN m[1]
                WHEN length(m[2]) = 1 THEN m[2]
                ELSE (SELECT string_agg(substr(m[2], i, 2), ' ' ORDER BY i)
                      FROM generate_series(1, length(m[2]) - 1) AS i)
           END, ' ' ORDER BY n), '')
  FROM regexp_matches(t, '([^{_CJK}]+)|([{_CJK}]+)', 'g') WITH ORDINALITY AS r(m, n)
$fn$
"""
"""lexical.lexical_text in SQL: each CJK run becomes its character bigrams, runs joined by spaces."""

_LEXICAL_QUERY_SQL = """
CREATE OR REPLACE FUNCTION {schema}.lexical_query(config regconfig, q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
  SELECT string_agg('''' || replace(replace(word, '\\', '\\\\'), '''', '''''') || '''', ' | ')::tsquery
  FROM unnest(tsvector_to_array(to_tsvector(config, {schema}.lexical_text(q)))) AS word
$fn$
"""
"""The OR of a query's lexemes (NULL when it has none: it then matches nothing)."""


class PostgresLexical:
    """Full-text search methods of PostgresIndex (a mixin: it uses the index's connections and names)."""

    if TYPE_CHECKING:
        from .postgres_config import PostgresConfig

        config: PostgresConfig

        def _qualified(self, table: str) -> sql.Composed: ...
        def _transaction(self, *, read: bool = False, settings: Any = None, pipeline: bool = False) -> Any: ...
        async def _on_table(self, name: str, work: Any, *, read: bool = False) -> Any: ...

    async def setup_lexical(self, conn: psycopg.AsyncConnection) -> None:
        """Functions, the catalog column, and the lexical column + GIN index of every table that lacks them
        (inside the setup transaction)."""
        schema = self.config.schema_name
        ident = sql.Identifier(schema)
        await conn.execute(sql.SQL(LEXICAL_TEXT_SQL.format(schema="{}")).format(ident))
        await conn.execute(sql.SQL(_LEXICAL_QUERY_SQL.replace("{schema}", "{0}")).format(ident))
        await conn.execute(sql.SQL(
            "ALTER TABLE {}.collections ADD COLUMN IF NOT EXISTS lexical_language text NOT NULL DEFAULT {}").format(
            ident, sql.Literal(DEFAULT_LEXICAL_LANGUAGE)))
        rows = await (await conn.execute(sql.SQL(
            "SELECT c.id, c.lexical_language FROM {}.collections c "
            "WHERE to_regclass(format('%%I.%%I', %s::text, 'docs_' || c.id)) IS NOT NULL AND NOT EXISTS ("
            " SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, 'docs_' || c.id))"
            " AND a.attname = 'lexical' AND NOT a.attisdropped)").format(ident), (schema, schema))).fetchall()
        for table_id, language in rows:
            await self._add_lexical(conn, f"docs_{int(table_id)}", language)
        await conn.execute(sql.SQL(
            "INSERT INTO {}.meta VALUES ('lexical_version', %s) ON CONFLICT (key) DO UPDATE SET value = "
            "EXCLUDED.value").format(ident), (str(LEXICAL_VERSION),))

    async def _add_lexical(self, conn: psycopg.AsyncConnection, table: str, language: str) -> None:
        schema = sql.Identifier(self.config.schema_name)
        await conn.execute(sql.SQL(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS lexical tsvector GENERATED ALWAYS AS "
            "(to_tsvector({}::regconfig, {}.lexical_text(text))) STORED").format(
            self._qualified(table), sql.Literal(language), schema))
        await conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (lexical)").format(
            sql.Identifier(f"{table}_lexical"), self._qualified(table)))

    async def check_lexical_language(self, conn: psycopg.AsyncConnection, language: str) -> None:
        """InvalidIndexRequest (param lexical_language) unless the server has that text search configuration."""
        found = None
        if LANGUAGE_PATTERN.match(language):
            found = await (await conn.execute("SELECT 1 FROM pg_ts_config WHERE cfgname = %s",
                                              (language,))).fetchone()
        if found is None:
            names = [r[0] for r in await (await conn.execute(
                "SELECT cfgname FROM pg_ts_config ORDER BY cfgname")).fetchall()]
            raise InvalidIndexRequest(
                f"lexical_language {language!r} is not a text search configuration of this PostgreSQL server; "
                f"use one of: {', '.join(names)}", param="lexical_language")

    async def lexical_search(self, collection: str, queries: list[str], k: int, filter_: dict[str, Any] | None
                             ) -> list[list[Hit]]:
        from .postgres import filter_sql

        parsed = parse_filter(filter_)
        if k < 1 or not queries:
            return [[] for _ in queries]
        condition, filter_params = filter_sql(parsed)

        async def run(table: "_Table", read: bool) -> list[list[Hit]]:
            statement = sql.SQL(
                "SELECT id, text, metadata, " + RANK_SQL + " AS score FROM {}, "
                "{}.lexical_query(%(config)s::regconfig, %(q)s) AS query "
                "WHERE lexical @@ query AND {} ORDER BY score DESC, id LIMIT %(k)s").format(
                self._qualified(table.table), sql.Identifier(self.config.schema_name), condition)
            async with self._transaction(read=read, pipeline=True) as conn:
                cursors = []
                for query in queries:
                    cursor = conn.cursor()
                    await cursor.execute(statement, {"config": table.info.lexical_language, "q": query, "k": k,
                                                     **filter_params})
                    cursors.append(cursor)
                results = []
                for cursor in cursors:
                    rows = await cursor.fetchall()
                    results.append([Hit(id=r[0], text=r[1], metadata=r[2], embedding_score=None,
                                        lexical_score=float(r[3])) for r in rows])
                    await cursor.close()
            return results

        return await self._on_table(collection, run, read=True)
