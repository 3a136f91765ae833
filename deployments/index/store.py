"""DocumentStore: the durable source of truth of one index shard (SQLite, WAL, synchronous=FULL).

Why SQLite: an embedded, transactional store that needs no server, survives a killed
process (the WAL is fsynced before COMMIT returns, so an acknowledged write is on disk),
and lets one transaction cover a whole batch. Vectors are kept as float32 blobs beside
the text, so the in-memory search structures can always be rebuilt from this file alone.

A document's SQLite `rowid` is its label in the in-memory vector index: an upsert of an
existing id keeps its rowid (INSERT ... ON CONFLICT DO UPDATE), so labels are stable.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CollectionConflict, CollectionNotFound, StorageLayoutError
from .lexical import DEFAULT_LEXICAL_LANGUAGE, FtsIndex

__all__ = ["CollectionRecord", "StoredRow", "StoredDocument", "DocumentStore", "read_layout"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS layout (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    index_type TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT,
    vector BLOB NOT NULL,
    PRIMARY KEY (collection, id)
);
"""


@dataclass(frozen=True)
class CollectionRecord:
    name: str
    model: str
    dimensions: int
    index_type: str
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "dimensions": self.dimensions, "index": self.index_type,
                "created_at": self.created_at}


@dataclass(frozen=True)
class StoredDocument:
    id: str
    text: str
    metadata: dict[str, Any] | None
    vector: np.ndarray


@dataclass(frozen=True)
class StoredRow:
    label: int
    id: str
    text: str
    metadata: dict[str, Any] | None


class DocumentStore:
    """One SQLite file. Thread-safe: one connection, one lock."""

    def __init__(self, path: Path, *, shard: int = 0, shards: int = 1) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._check_layout(shard, shards)
        self.lexical = FtsIndex(self._db)  # full-text index, written in the same transactions (lexical.py)
        self.lexical_built = self._build_lexical()

    def _build_lexical(self) -> dict[str, int]:
        """Build the FTS table of every collection that has none of this version or an incomplete one
        (a file written before lexical search existed): from the stored texts, without re-embedding.
        Returns the documents indexed per rebuilt collection."""
        built = {}
        with self._lock, self._transaction():
            self.lexical.drop_orphans()
            for (name,) in self._db.execute("SELECT name FROM collections").fetchall():
                count = int(self._db.execute("SELECT count(*) FROM documents WHERE collection=?",
                                             (name,)).fetchone()[0])
                if self.lexical.needs_build(name, count):
                    rows = self._db.execute("SELECT rowid, text FROM documents WHERE collection=?", (name,))
                    built[name] = self.lexical.rebuild(name, rows)
        return built

    def _check_layout(self, shard: int, shards: int) -> None:
        expected = {"shard": str(shard), "shards": str(shards)}
        found = dict(self._db.execute("SELECT key, value FROM layout").fetchall())
        if not found:
            with self._transaction():
                self._db.executemany("INSERT INTO layout(key, value) VALUES (?, ?)", expected.items())
        elif found != expected:
            raise StorageLayoutError(
                f"{self.path} belongs to shard {found.get('shard')} of {found.get('shards')}, but this index runs "
                f"shard {shard} of {shards}; keep index.shards unchanged or use a new storage_path"
            )

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----- collections -----
    def create_collection(self, name: str, model: str, dimensions: int, index_type: str, *,
                          lexical_language: str = DEFAULT_LEXICAL_LANGUAGE) -> tuple[CollectionRecord, bool]:
        """The collection and whether this call created it; CollectionConflict if it differs."""
        with self._lock, self._transaction():
            existing = self._collection(name)
            if existing is not None:
                language = self.lexical.language(name)
                if language != lexical_language:
                    raise CollectionConflict(
                        f"collection {name!r} exists with lexical_language {language!r}; delete it first to "
                        "change it", param="lexical_language")
                if (existing.model, existing.dimensions, existing.index_type) != (model, dimensions, index_type):
                    raise CollectionConflict(
                        f"collection {name!r} exists with model {existing.model!r}, {existing.dimensions} dimensions "
                        f"and index {existing.index_type!r}; delete it first to change them",
                        param="name",
                    )
                return existing, False
            record = CollectionRecord(name, model, dimensions, index_type, time.time())
            self._db.execute("INSERT INTO collections VALUES (?, ?, ?, ?, ?)",
                             (name, model, dimensions, index_type, record.created_at))
            self.lexical.create(name, lexical_language)
            return record, True

    def _collection(self, name: str) -> CollectionRecord | None:
        row = self._db.execute("SELECT name, model, dimensions, index_type, created_at FROM collections WHERE name=?",
                               (name,)).fetchone()
        return CollectionRecord(*row) if row else None

    def collection(self, name: str) -> CollectionRecord:
        with self._lock:
            record = self._collection(name)
        if record is None:
            raise CollectionNotFound(f"collection {name!r} does not exist", param="name")
        return record

    def collections(self) -> list[CollectionRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, model, dimensions, index_type, created_at FROM collections ORDER BY name").fetchall()
        return [CollectionRecord(*row) for row in rows]

    def delete_collection(self, name: str) -> bool:
        with self._lock, self._transaction():
            self.lexical.drop(name)
            return self._db.execute("DELETE FROM collections WHERE name=?", (name,)).rowcount > 0

    # ----- documents -----
    def upsert(self, collection: str, documents: Sequence[tuple[str, str, dict[str, Any] | None, np.ndarray]]
               ) -> list[int]:
        """Insert or replace documents in one transaction (all or nothing); their labels, in order."""
        with self._lock, self._transaction():
            if self._collection(collection) is None:
                raise CollectionNotFound(f"collection {collection!r} does not exist", param="name")
            labels = []
            for doc_id, text, metadata, vector in documents:
                old = self._db.execute("SELECT text FROM documents WHERE collection=? AND id=?",
                                       (collection, doc_id)).fetchone()
                row = self._db.execute(
                    "INSERT INTO documents(collection, id, text, metadata, vector) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(collection, id) DO UPDATE SET text=excluded.text, metadata=excluded.metadata, "
                    "vector=excluded.vector RETURNING rowid",
                    (collection, doc_id, text, None if metadata is None else json.dumps(metadata),
                     np.ascontiguousarray(vector, dtype="<f4").tobytes()),
                ).fetchone()
                labels.append(int(row[0]))
                self.lexical.write(collection, int(row[0]), text, old[0] if old else None)
            return labels

    def delete(self, collection: str, doc_id: str) -> int | None:
        """The deleted document's label, or None when there was no such document."""
        with self._lock, self._transaction():
            row = self._db.execute("DELETE FROM documents WHERE collection=? AND id=? RETURNING rowid, text",
                                   (collection, doc_id)).fetchone()
            if row:
                self.lexical.delete(collection, int(row[0]), row[1])
            return int(row[0]) if row else None

    def get(self, collection: str, doc_id: str) -> StoredRow | None:
        with self._lock:
            row = self._db.execute("SELECT rowid, id, text, metadata FROM documents WHERE collection=? AND id=?",
                                   (collection, doc_id)).fetchone()
        return _stored(row) if row else None

    def rows(self, labels: Sequence[int]) -> dict[int, StoredRow]:
        """Documents by label (one query; missing labels are absent)."""
        if not labels:
            return {}
        with self._lock:
            found = []
            for start in range(0, len(labels), 900):  # SQLite's bound-parameter limit
                chunk = [int(label) for label in labels[start : start + 900]]
                found += self._db.execute(
                    f"SELECT rowid, id, text, metadata FROM documents WHERE rowid IN ({','.join('?' * len(chunk))})",
                    chunk).fetchall()
        return {int(row[0]): _stored(row) for row in found}

    def lexical_language(self, collection: str) -> str | None:
        with self._lock:
            return self.lexical.language(collection)

    def lexical_search(self, collection: str, queries: Sequence[str], k: int, allowed: set[int] | None
                       ) -> list[list[tuple[int, float]]]:
        """Per query, (label, BM25 score) of its k best full-text matches among `allowed` (all when None)."""
        with self._lock:
            return [self.lexical.search(collection, query, k, allowed) for query in queries]

    def count(self, collection: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM documents WHERE collection=?",
                                        (collection,)).fetchone()[0])

    def vectors(self, collection: str, dimensions: int, batch: int = 10000
                ) -> Iterator[tuple[np.ndarray, np.ndarray, list[dict[str, Any] | None]]]:
        """(labels, vectors, metadata) of every document, in batches, for rebuilding the index."""
        with self._lock:
            cursor = self._db.execute("SELECT rowid, vector, metadata FROM documents WHERE collection=?",
                                      (collection,))
            while rows := cursor.fetchmany(batch):
                labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dimensions)
                yield labels, vectors.astype(np.float32, copy=False), [_metadata(r[2]) for r in rows]


    def documents(self, collection: str, dimensions: int, batch: int = 1000) -> Iterator[list[StoredDocument]]:
        """Every document of a collection with its vector, in rowid order and batches (for copying a store).

        Each batch is read under the lock on its own (keyset pagination), so the caller may use the
        store between batches; documents written meanwhile behind the cursor are not revisited.
        """
        after = -1
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT rowid, id, text, metadata, vector FROM documents WHERE collection=? AND rowid>? "
                    "ORDER BY rowid LIMIT ?", (collection, after, batch)).fetchall()
            if not rows:
                return
            after = int(rows[-1][0])
            yield [StoredDocument(id=r[1], text=r[2], metadata=_metadata(r[3]),
                                  vector=np.frombuffer(r[4], dtype="<f4").astype(np.float32).reshape(dimensions))
                   for r in rows]


def read_layout(path: Path) -> tuple[int, int]:
    """(shard, shards) a store file was written for, read without opening it for writing."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = dict(db.execute("SELECT key, value FROM layout").fetchall())
    except sqlite3.DatabaseError as exc:
        raise StorageLayoutError(f"{path} is not an index shard file ({exc})") from exc
    finally:
        db.close()
    if "shard" not in found or "shards" not in found:
        raise StorageLayoutError(f"{path} has no shard layout")
    return int(found["shard"]), int(found["shards"])


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _metadata(raw: str | None) -> dict[str, Any] | None:
    return None if raw is None else json.loads(raw)


def _stored(row: tuple) -> StoredRow:
    return StoredRow(label=int(row[0]), id=row[1], text=row[2], metadata=_metadata(row[3]))
