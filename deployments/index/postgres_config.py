"""Settings of the PostgreSQL + pgvector backend (`index.postgres` in the app config).

Importable without psycopg: the config layer validates these before any driver is loaded.
The password never sits in the config: it comes from an environment variable, a mounted
secret file, or libpq's own PGPASSWORD / PGPASSFILE. Environment overrides, like
$QWEN3_SEARCH_DATA_DIR for the embedded store:
- $QWEN3_SEARCH_POSTGRES_DSN replaces `dsn` (it may carry a password: it is a secret channel);
- $QWEN3_SEARCH_POSTGRES_READ_DSN replaces `read_dsn`.
"""

import os
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["PostgresConfig", "PostgresShard", "DSN_ENV", "READ_DSN_ENV", "dsn_has_password", "HNSW_VECTOR_LIMIT",
           "HNSW_HALFVEC_LIMIT"]

DSN_ENV = "QWEN3_SEARCH_POSTGRES_DSN"
READ_DSN_ENV = "QWEN3_SEARCH_POSTGRES_READ_DSN"
HNSW_VECTOR_LIMIT = 2000
"""pgvector indexes `vector` columns of at most this many dimensions."""
HNSW_HALFVEC_LIMIT = 4000
"""... and `halfvec` (16-bit floats) of at most this many."""

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")


def dsn_has_password(dsn: str) -> bool:
    """Whether a libpq URI (`postgresql://user:secret@host/db`) or key=value string names a password."""
    text = dsn.strip()
    if text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        return parts.password is not None or "password" in parse_qs(parts.query)
    return re.search(r"(^|\s)password\s*=", text) is not None


class PostgresShard(BaseModel):
    """One PostgreSQL cluster of a sharded index (`index.postgres.shards`)."""

    model_config = ConfigDict(extra="forbid")

    dsn: str = Field(description="libpq connection URI of this cluster's primary, without a password.")
    read_dsn: str | None = Field(default=None,
                                 description="Optional libpq URI of this cluster's read-only endpoint, for searches.")

    @field_validator("dsn", "read_dsn")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        return _refuse_password(value)


def _refuse_password(value: str | None) -> str | None:
    if value is not None and dsn_has_password(value):
        raise ValueError("the DSN carries a password; put it in the password_env variable or password_file "
                         "(or $QWEN3_SEARCH_POSTGRES_DSN), not in the config")
    return value


class PostgresConfig(BaseModel):
    """Connection, pool and index settings of the PostgreSQL + pgvector backend."""

    model_config = ConfigDict(extra="forbid")

    dsn: str = Field(
        default="postgresql://qwen3_search@localhost:5432/qwen3_search",
        description="libpq connection URI of the primary (writes, and searches when read_dsn is unset), without "
        "a password. $QWEN3_SEARCH_POSTGRES_DSN overrides it. libpq's environment (PGUSER, PGSSLMODE, ...) fills "
        "what the URI leaves out.",
    )
    read_dsn: str | None = Field(
        default=None,
        description="Optional libpq URI of a read-only endpoint (streaming replicas, e.g. CloudNativePG's `-ro` "
        "service) for searches; documents and collection lookups still read the primary. Replicas lag: a "
        "search right after an upload may not see it yet. $QWEN3_SEARCH_POSTGRES_READ_DSN overrides it.",
    )
    password_env: str | None = Field(
        default="QWEN3_SEARCH_POSTGRES_PASSWORD",
        description="Environment variable holding the password (e.g. from a Kubernetes Secret). Unset or empty: "
        "password_file, then libpq's PGPASSWORD / PGPASSFILE.",
    )
    password_file: str | None = Field(
        default=None,
        description="File with the password (a mounted Secret); read at every new connection, so a rotated "
        "secret is picked up without a restart. Used when the password_env variable is unset or empty.",
    )
    pool_min_size: int = Field(default=1, ge=0, description="Connections each replica keeps open per endpoint.")
    pool_max_size: int = Field(
        default=8, ge=1,
        description="Most connections each replica opens per endpoint; replicas x this must stay under the "
        "server's max_connections (or go through a pooler such as PgBouncer / a CloudNativePG Pooler).",
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0,
        description="Seconds to open a connection, and to wait for a free pooled one; past it a call fails with "
        "StorageUnavailable (503) instead of hanging while the database is down.",
    )
    statement_timeout_s: float = Field(
        default=30.0, gt=0,
        description="Server-side limit of one statement (searches and writes); 0 is not allowed: a runaway "
        "statement would hold a connection forever. Index builds (CREATE INDEX) are not limited.",
    )
    hnsw_m: int = Field(default=16, ge=2, le=100, description="HNSW graph degree (pgvector `m`).")
    hnsw_ef_construction: int = Field(
        default=64, ge=4, le=1000,
        description="HNSW build breadth (pgvector `ef_construction`, at least 2 x m; pgvector's default). "
        "Doubling it roughly doubles insert and build time (bench/index_backends.py) for a little recall.",
    )
    build_memory_mb: int = Field(
        default=2048, ge=1,
        description="Most `maintenance_work_mem` (MB) a bulk HNSW build may take (CREATE INDEX after a migration "
        "or a load with the index dropped). Each build asks for its graph's estimated size (documents x (vector "
        "bytes + 40 x hnsw_m + 256), plus a quarter; at least 64 MB), up to this. A graph that does not fit is "
        "built partly on disk, several times slower (the service logs pgvector's 'hnsw graph no longer fits into "
        "maintenance_work_mem' notice as a warning naming this setting). A parallel build reserves its memory "
        "as shared memory (/dev/shm) up front. Keep it well under the database pod's memory limit: 1M documents "
        "x 1024 dimensions need about 6 GB.",
    )
    build_parallel_workers: int | None = Field(
        default=None, ge=0, le=64,
        description="`max_parallel_maintenance_workers` for a bulk HNSW build (0: the session's process alone); "
        "None: the server's setting (PostgreSQL's default is 2, k8s/components/postgres sets 2).",
    )
    ef_search: int = Field(
        default=100, ge=1, le=1000,
        description="HNSW search breadth (`hnsw.ef_search`), raised per query to the candidates it needs "
        "(top_k, or the re-scoring pool); higher: better recall, slower.",
    )
    max_scan_tuples: int = Field(
        default=20000, ge=1,
        description="`hnsw.max_scan_tuples`: how far an iterative scan walks the graph for a filtered search "
        "before the backend falls back to an exact scan of the matching documents.",
    )
    hnsw_precision: Literal["auto", "halfvec"] = Field(
        default="auto",
        description="auto: a float32 graph up to 2000 dimensions (scores straight from the graph), halfvec above. "
        "halfvec: a 16-bit graph at every width, candidates re-scored exactly: at 1024 dimensions a third of the "
        "index's bytes per document (2.7 kB instead of 8.2 kB, docs/scale.md). Applies to collections created "
        "afterwards; each collection keeps the kind it was built with.",
    )
    exact_filter_below: int = Field(
        default=10000, ge=0,
        description="A filtered search whose filter matches fewer documents than this is answered exactly over "
        "those documents (found through the metadata GIN index): a graph walk under a selective filter returns "
        "top_k hits but misses true neighbours (bench/index_backends.py, 1% filter on 100k: recall 0.84 from the "
        "graph, 1.00 exact). One bounded count per filtered search decides; 0: always the graph.",
    )
    rescore_factor: int = Field(
        default=4, ge=1, le=64,
        description="For halfvec or truncated indexes (widths over 2000): candidates fetched per wanted result, "
        "then re-scored exactly against the stored float32 vectors.",
    )
    truncated_dimensions: int = Field(
        default=2048, ge=32, le=HNSW_HALFVEC_LIMIT,
        description="Widths over 4000 (Qwen3-Embedding-8B: 4096) are indexed by their first this-many dimensions "
        "(Matryoshka truncation, halfvec, cosine), and candidates are re-scored at full width.",
    )
    schema_name: str = Field(
        default="qwen3_search",
        description="PostgreSQL schema holding the catalog table and one documents table per collection; "
        "created when missing (needs CREATE on the database).",
    )

    shards: list[PostgresShard] = Field(
        default_factory=list,
        description="Several clusters, documents split between them by id hash (docs/scale.md): when set, `dsn` "
        "and `read_dsn` (and their environment overrides) are not used; every other setting here applies to "
        "each cluster (the same password, schema and pool sizes per cluster). Shard 0 holds the authoritative "
        "catalog. The list is fixed for the data's life: a document's cluster is a function of its id and the "
        "count.",
    )

    @field_validator("dsn", "read_dsn")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        return _refuse_password(value)

    @field_validator("schema_name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"schema_name {value!r} must be lower-case letters, digits or '_' (1-48), "
                             "starting with a letter or '_'")
        return value

    @model_validator(mode="after")
    def _pool(self) -> "PostgresConfig":
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(f"pool_min_size ({self.pool_min_size}) exceeds pool_max_size ({self.pool_max_size})")
        if self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError(f"hnsw_ef_construction ({self.hnsw_ef_construction}) must be at least 2 x hnsw_m "
                             f"({2 * self.hnsw_m})")
        return self

    def with_environment(self, environ: Mapping[str, str] | None = None) -> "PostgresConfig":
        """A copy with $QWEN3_SEARCH_POSTGRES_DSN / $QWEN3_SEARCH_POSTGRES_READ_DSN applied (not re-validated:
        an environment DSN may carry a password)."""
        env = os.environ if environ is None else environ
        update = {}
        if env.get(DSN_ENV):
            update["dsn"] = env[DSN_ENV]
        if env.get(READ_DSN_ENV):
            update["read_dsn"] = env[READ_DSN_ENV]
        return self.model_copy(update=update)

    def password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The password from password_env or password_file; None leaves it to libpq."""
        env = os.environ if environ is None else environ
        if self.password_env and env.get(self.password_env):
            return env[self.password_env]
        if self.password_file:
            with open(os.path.expanduser(self.password_file), encoding="utf-8") as f:
                return f.read().strip("\r\n")
        return None
