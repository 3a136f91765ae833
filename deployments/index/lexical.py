"""Lexical (full-text) retrieval shared by both backends: text preparation, and the SQLite FTS5 index.

Why a lexical retriever beside the vectors: exact names, codes, numbers and rare terms are found
by term matching, and the reranker can only reorder the candidates it is given.

Text preparation (`lexical_text`), identical for documents and queries and on both backends:
CJK text has no spaces between words, so a word tokenizer sees a whole sentence as one token
and a query for a word inside it finds nothing. Every maximal run of CJK characters (Han,
Hiragana, Katakana, Hangul) is therefore replaced by its overlapping character bigrams
("北京天安门" -> "北京 京天 天安 安门"; a single character stays itself), as Lucene's
CJKBigramFilter does, and runs are separated by spaces; other text is kept as it is. A query
"天安门" becomes "天安 安门", both of which the document holds. PostgreSQL computes the same
function in SQL (`postgres_lexical.LEXICAL_TEXT_SQL`); a test checks the two agree.

Languages (`lexical_language`, per collection, fixed at creation):
- `simple`: lower-cased words, diacritics kept apart, no stemming (any language with spaces,
  CJK through bigrams). The default.
- `english`: the same plus Porter stemming ("pumps" finds "pump"); PostgreSQL's `english`
  configuration also drops English stop words.
PostgreSQL accepts any of its text search configurations (german, french, ...), the embedded
index only these two (FTS5 ships no other stemmer).

Embedded index: one contentless FTS5 table per collection in each shard's SQLite file, keyed by
the document's rowid (its label), written in the same transaction as the document row, ranked by
FTS5's `bm25()` (k1 = 1.2, b = 0.75), with statistics per shard. SQLite here is 3.40 (no
`contentless_delete`), so a changed or deleted document's terms are removed with FTS5's
'delete' command and the old text, re-prepared (the preparation is deterministic and versioned:
a new `LEXICAL_VERSION` rebuilds every FTS table at shard start).
"""

import re
import sqlite3
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import InvalidIndexRequest

__all__ = [
    "LEXICAL_LANGUAGES",
    "DEFAULT_LEXICAL_LANGUAGE",
    "LEXICAL_VERSION",
    "CJK_RANGES",
    "lexical_text",
    "fts5_query",
    "check_language",
    "FtsIndex",
]

DEFAULT_LEXICAL_LANGUAGE = "simple"
LEXICAL_LANGUAGES = {
    "simple": "unicode61 remove_diacritics 0",
    "english": "porter unicode61 remove_diacritics 0",
}
"""Embedded index: lexical_language -> FTS5 tokenizer."""
LEXICAL_VERSION = 1
"""Version of the text preparation; the FTS tables of another version are rebuilt at shard start."""
LANGUAGE_PATTERN = re.compile(r"^[a-z_]{1,63}$")

CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x3400, 0x4DBF),  # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x2FA1F),  # CJK extensions B-F and compatibility supplement
)
_CJK_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in CJK_RANGES)
_RUNS = re.compile(f"([^{_CJK_CLASS}]+)|([{_CJK_CLASS}]+)")


def lexical_text(text: str) -> str:
    """`text` with each run of CJK characters replaced by its character bigrams (see the module docstring)."""
    pieces = []
    for other, cjk in _RUNS.findall(text):
        if other:
            pieces.append(other)
        elif len(cjk) == 1:
            pieces.append(cjk)
        else:
            pieces.append(" ".join(cjk[i : i + 2] for i in range(len(cjk) - 1)))
    return " ".join(pieces)


def check_language(language: str, supported: Iterable[str] | None = None) -> str:
    """The language, or InvalidIndexRequest naming `lexical_language`."""
    allowed = sorted(LEXICAL_LANGUAGES if supported is None else supported)
    if not LANGUAGE_PATTERN.match(language) or language not in allowed:
        raise InvalidIndexRequest(
            f"lexical_language {language!r} is not available on this index backend; use one of: "
            f"{', '.join(allowed)}", param="lexical_language")
    return language


_WORD = re.compile(r"\w", re.UNICODE)


def fts5_query(query: str) -> str | None:
    """An FTS5 MATCH expression: any of the query's words (OR), each a quoted phrase so that FTS5's
    tokenizer splits it exactly as it split the documents ("XQ-7731" -> the phrase "xq 7731");
    None when the query has no word at all. Repeated words count once."""
    seen: dict[str, None] = {}
    for chunk in lexical_text(unicodedata.normalize("NFC", query)).split():
        if _WORD.search(chunk):
            seen.setdefault(chunk.lower(), None)
    if not seen:
        return None
    return " OR ".join('"' + chunk.replace('"', '""') + '"' for chunk in seen)


@dataclass(frozen=True)
class _Table:
    id: int
    language: str
    version: int

    @property
    def name(self) -> str:
        return f"lexical_{self.id}"


class FtsIndex:
    """The FTS5 tables of one DocumentStore, used on its connection inside its transactions.

    The caller (DocumentStore) holds its lock and its transaction around every call; nothing here
    commits. `lexical_indexes` maps a collection to its table (`lexical_<id>`, ids never reused) and
    is deleted with the collection (ON DELETE CASCADE); the virtual table is dropped beside it.
    """

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS lexical_indexes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL UNIQUE REFERENCES collections(name) ON DELETE CASCADE,
        language TEXT NOT NULL,
        version INTEGER NOT NULL
    );
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.db.executescript(self.SCHEMA)

    def _table(self, collection: str) -> _Table | None:
        row = self.db.execute("SELECT id, language, version FROM lexical_indexes WHERE collection=?",
                              (collection,)).fetchone()
        return _Table(*row) if row else None

    def language(self, collection: str) -> str | None:
        table = self._table(collection)
        return table.language if table else None

    def create(self, collection: str, language: str) -> None:
        """An empty FTS table for a new collection (in the caller's transaction)."""
        tokenizer = LEXICAL_LANGUAGES[check_language(language)]
        cursor = self.db.execute("INSERT INTO lexical_indexes(collection, language, version) VALUES (?, ?, ?)",
                                 (collection, language, LEXICAL_VERSION))
        name = f"lexical_{int(cursor.lastrowid or 0)}"
        self.db.execute(f"CREATE VIRTUAL TABLE {name} USING fts5(text, content='', tokenize='{tokenizer}')")

    def drop(self, collection: str) -> None:
        table = self._table(collection)
        if table is not None:
            self.db.execute(f"DROP TABLE IF EXISTS {table.name}")
            self.db.execute("DELETE FROM lexical_indexes WHERE id=?", (table.id,))

    def _insert(self, table: _Table, label: int, text: str) -> None:
        self.db.execute(f"INSERT INTO {table.name}(rowid, text) VALUES (?, ?)", (label, lexical_text(text)))

    def _remove(self, table: _Table, label: int, old_text: str) -> None:
        # A contentless table forgets a row's terms only when given the values it indexed.
        self.db.execute(f"INSERT INTO {table.name}({table.name}, rowid, text) VALUES ('delete', ?, ?)",
                        (label, lexical_text(old_text)))

    def write(self, collection: str, label: int, text: str, old_text: str | None) -> None:
        """Index a document's text under its label, replacing `old_text` (its previous text) if any."""
        table = self._table(collection)
        if table is None:
            return
        if old_text is not None:
            self._remove(table, label, old_text)
        self._insert(table, label, text)

    def delete(self, collection: str, label: int, old_text: str) -> None:
        table = self._table(collection)
        if table is not None:
            self._remove(table, label, old_text)

    def search(self, collection: str, query: str, k: int, allowed: set[int] | None
               ) -> list[tuple[int, float]]:
        """(label, BM25 score, higher is better) of the k best matches, best first; `allowed` keeps only
        those labels (a metadata filter), applied before the k are taken."""
        table = self._table(collection)
        expression = fts5_query(query)
        if table is None or expression is None or k < 1 or allowed is not None and not allowed:
            return []
        cursor = self.db.execute(
            f"SELECT rowid, bm25({table.name}) FROM {table.name} WHERE {table.name} MATCH ? "
            f"ORDER BY bm25({table.name}), rowid", (expression,))
        found: list[tuple[int, float]] = []
        while len(found) < k and (rows := cursor.fetchmany(max(k, 256))):
            for label, score in rows:
                if allowed is None or label in allowed:
                    found.append((int(label), -float(score)))  # FTS5's bm25() is negated: lower is better
                    if len(found) == k:
                        break
        cursor.close()
        return found

    def indexed(self, collection: str) -> int:
        """Documents in a collection's FTS table (its docsize shadow table has one row per document)."""
        table = self._table(collection)
        if table is None:
            return -1
        return int(self.db.execute(f"SELECT count(*) FROM {table.name}_docsize").fetchone()[0])

    def needs_build(self, collection: str, documents: int) -> bool:
        """Whether a collection has no FTS table of this version, or one that does not hold all its documents
        (written by a release without lexical search, or before a LEXICAL_VERSION change)."""
        table = self._table(collection)
        return table is None or table.version != LEXICAL_VERSION or self.indexed(collection) != documents

    def rebuild(self, collection: str, rows: Iterable[Sequence[object]], language: str | None = None) -> int:
        """Drop and fill a collection's FTS table from its (label, text) rows, keeping its language (or
        `language` for a table that has none yet); returns the documents indexed."""
        keep = self.language(collection) or language or DEFAULT_LEXICAL_LANGUAGE
        self.drop(collection)
        self.create(collection, keep)
        table = self._table(collection)
        assert table is not None
        count = 0
        for label, text in rows:
            self._insert(table, int(label), str(text))  # type: ignore[call-overload]
            count += 1
        return count

    def drop_orphans(self) -> None:
        """FTS tables whose registry row went with a collection deleted by an older release."""
        known = {f"lexical_{row[0]}" for row in self.db.execute("SELECT id FROM lexical_indexes")}
        names = [row[0] for row in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name GLOB 'lexical_[0-9]*' "
            "AND name NOT GLOB 'lexical_*_*'")]
        for name in names:
            if name not in known:
                self.db.execute(f"DROP TABLE IF EXISTS {name}")
