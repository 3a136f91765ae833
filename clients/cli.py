"""`qwen3-search`: the service from the command line.

    qwen3-search health --wait 120
    qwen3-search embed "first text" "second text"
    qwen3-search rerank "what is the capital of China?" "Beijing is ..." "Paris is ..."
    qwen3-search ingest docs ./corpus.jsonl
    qwen3-search search docs "what is the capital of China?"
    qwen3-search collections
    qwen3-search export-onnx ./Qwen3-Reranker-0.6B ./Qwen3-Reranker-0.6B-onnx [--quantize int8]

Global options (before or after the command): --url, --api-key (or $QWEN3_SEARCH_BASE_URL,
$QWEN3_SEARCH_API_KEY), --timeout, --max-retries, --json.

Exit codes: 0 success; 1 the server answered with an error; 2 a usage error (bad arguments,
unreadable input); 3 no answer (connection refused, timed out); 4 `health`: the server answered
but is not ready; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

from ._client import Client
from ._constants import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES
from ._exceptions import APIConnectionError, APIError, APIStatusError, APITimeoutError, NotFoundError
from .types import HealthResponse, SearchResult

__all__ = ["main", "EXIT_OK", "EXIT_API_ERROR", "EXIT_USAGE", "EXIT_CONNECTION", "EXIT_UNHEALTHY",
           "EXIT_INTERRUPTED"]

EXIT_OK = 0
"""The command did what it was asked."""
EXIT_API_ERROR = 1
"""The server answered with an error (4xx, 5xx after retries); the message is on stderr."""
EXIT_USAGE = 2
"""Bad arguments or an unreadable input file (argparse also exits 2)."""
EXIT_CONNECTION = 3
"""No answer: connection refused or dropped, or timed out after retries."""
EXIT_UNHEALTHY = 4
"""`health`: the server answered that a deployment is not ready."""
EXIT_INTERRUPTED = 130

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
"""Files `ingest` reads from a folder."""


class UsageError(Exception):
    """A mistake in the arguments or the input: exit code 2."""


# ---------------------------------------------------------------- output helpers
def _width() -> int:
    return max(60, shutil.get_terminal_size((120, 24)).columns)


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    """`1 input`, `2 inputs`: every count the CLI prints goes through here."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(1, width - 1)] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool], out: TextIO) -> None:
    """Columns padded to their widest cell; the last column is cut to the terminal width."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    used = sum(widths[:-1]) + 2 * (len(headers) - 1)
    widths[-1] = max(len(headers[-1]), min(widths[-1], _width() - used))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            cell = _short(cell, width) if i == len(cells) - 1 else cell
            parts.append(cell.rjust(width) if right[i] else cell.ljust(width))
        return "  ".join(parts).rstrip()

    print(line(headers), file=out)
    for row in rows:
        print(line(row), file=out)


def _dump(value: Any, out: TextIO, *, compact: bool = False) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    json.dump(value, out, ensure_ascii=False, indent=None if compact else 2)
    out.write("\n")


def _lines(values: list[str], what: str) -> list[str]:
    """The arguments, or stdin's non-blank lines when there are none (or the one argument is '-')."""
    if not values or values == ["-"]:
        if sys.stdin.isatty():
            raise UsageError(f"give {what} as arguments or on stdin, one per line")
        values = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not values:
        raise UsageError(f"no {what} given")
    return values


# ---------------------------------------------------------------- commands
HEALTH_POLL_SECONDS = 1.0
"""`health --wait`: seconds between polls."""
HEALTH_REPEAT_SECONDS = 10.0
"""`health --wait`: an unchanged state is printed again after this long, so a long wait shows it is alive."""


def _waiting_for(base_url: str, health: HealthResponse | None, error: BaseException | None) -> str:
    """What `health --wait` is waiting for, in one line."""
    if isinstance(error, APIStatusError):
        return f"waiting: {base_url}/health answered {error.status_code} ({error.message})"
    if error is not None:
        return f"waiting for {base_url} to answer ({getattr(error, 'message', None) or error})"
    assert health is not None
    pending = [f"{name} ({state})" for name, state in sorted(health.deployments.items()) if state != "ok"]
    return "waiting for " + (", ".join(pending) if pending else f"the service (status {health.status})")


def cmd_health(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    started = time.monotonic()
    deadline = started + args.wait
    said, said_at = "", 0.0
    while True:
        error: BaseException | None = None
        try:
            health: HealthResponse | None = client.health(max_retries=0 if args.wait else None)
        except (APIConnectionError, APIStatusError) as exc:
            if time.monotonic() >= deadline:
                raise
            health, error = None, exc
        if health is not None and (health.status == "ok" or time.monotonic() >= deadline):
            break
        # Progress goes to stderr, so that stdout holds only the final answer (and --json stays parseable).
        now = time.monotonic()
        line = _waiting_for(client.base_url, health, error)
        if line != said or now - said_at >= HEALTH_REPEAT_SECONDS:
            print(f"{line}; {now - started:.0f} s of {args.wait:.0f} s", file=sys.stderr, flush=True)
            said, said_at = line, now
        time.sleep(HEALTH_POLL_SECONDS)
    if args.json:
        _dump(health, out)
    else:
        print(f"status: {health.status}", file=out)
        rows = [[name, state] for name, state in sorted(health.deployments.items())]
        _table(["deployment", "state"], rows, [False, False], out)
    return EXIT_OK if health.status == "ok" else EXIT_UNHEALTHY


def cmd_info(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    info = client.info()
    if args.json:
        _dump(info, out)
        return EXIT_OK
    print(f"qwen3-search {info.version} at {client.base_url}", file=out)
    rows = [[m.id + (" *" if m.default else ""), m.kind, str(m.dimensions or "-"), str(m.max_length),
             m.device or "-", m.source] for m in info.models]
    _table(["model (* default)", "kind", "dims", "max_length", "device", "source"], rows,
           [False, False, True, True, False, False], out)
    print("limits: " + ", ".join(f"{k}={v}" for k, v in info.limits.model_dump().items()), file=out)
    return EXIT_OK


def cmd_embed(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    texts = _lines(args.texts, "texts")
    result = client.embed(texts, model=args.model, instruction=args.instruction, input_type=args.input_type,
                          dimensions=args.dimensions)
    if args.json:
        _dump({"model": result.model, "dimensions": result.dimensions, "usage": result.usage.model_dump(),
               "embeddings": result.tolist()}, out, compact=True)  # vectors: one line, not one per float
    elif args.vectors:
        for row in result.tolist():
            print(json.dumps(row), file=out)
    else:
        import numpy as np

        print(f"model {result.model} · {_plural(len(result), 'input')} · {_plural(result.dimensions, 'dimension')}"
              f" · {_plural(result.usage.total_tokens, 'token')}", file=out)
        norms = np.linalg.norm(result.embeddings, axis=1)
        rows = [[str(i), f"{norms[i]:.3f}", "[" + ", ".join(f"{v:+.4f}" for v in row[:4]) + ", …]", text]
                for i, (row, text) in enumerate(zip(result.embeddings, texts, strict=True))]
        _table(["#", "norm", "vector", "text"], rows, [True, True, False, False], out)
    return EXIT_OK


def cmd_rerank(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    documents = _lines(args.documents, "documents")
    result = client.rerank(args.query, documents, model=args.model, top_n=args.top_n, instruction=args.instruction)
    if args.json:
        _dump(result, out)
        return EXIT_OK
    print(f"model {result.model} · {_plural(len(documents), 'document')} · "
          f"{_plural(result.usage.total_tokens, 'token')}", file=out)
    rows = [[str(rank), str(r.index), f"{r.relevance_score:.4f}", documents[r.index]]
            for rank, r in enumerate(result.results, 1)]
    _table(["rank", "index", "score", "document"], rows, [True, True, True, False], out)
    return EXIT_OK


def cmd_search(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    try:
        where = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--filter is not JSON: {exc}") from exc
    if where is not None and not isinstance(where, dict):
        raise UsageError('--filter is a JSON object, e.g. \'{"topic": "physics"}\'')
    weights = _parse_weights(args.weights) if args.weights else None
    if (weights is not None or args.rrf_k is not None) and args.mode != "hybrid":
        raise UsageError("--weights and --rrf-k apply to --mode hybrid only")
    result = client.search(args.collection, args.query, top_k=args.top_k, top_n=args.top_n, filter=where,
                           rerank=False if args.no_rerank else None, instruction=args.instruction,
                           reranker=args.reranker, mode=args.mode, rrf_k=args.rrf_k, weights=weights)
    if args.json:
        _dump(result, out)
        return EXIT_OK
    _print_search(args.collection, args.query, result, not args.no_rerank, out, args.mode or "dense")
    return EXIT_OK


def _parse_weights(text: str) -> dict[str, float]:
    """`dense=1,lexical=2` -> {"dense": 1.0, "lexical": 2.0}."""
    weights = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--weights is NAME=NUMBER[,NAME=NUMBER], e.g. dense=1,lexical=2; not {text!r}"
                             ) from None
    return weights


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _found_by(ranks: dict[str, int] | None) -> str:
    """`{"dense": 3, "lexical": 1}` -> "d3 l1"."""
    return " ".join(f"{name[0]}{rank}" for name, rank in sorted((ranks or {}).items()))


def _print_search(collection: str, query: str, result: SearchResult, reranked: bool, out: TextIO,
                  mode: str = "dense") -> None:
    t = result.timings
    print(f"{collection}: {_plural(len(result.results), 'result')} for {query!r} ({mode}) in {t.total_ms:.1f} ms "
          f"(embed {t.embed_ms:.1f}, search {t.search_ms:.1f}, rerank {t.rerank_ms:.1f})", file=out)
    has_metadata = any(hit.metadata for hit in result.results)
    own = {"dense": "cosine", "lexical": "lexical", "hybrid": "rrf"}.get(mode, "score")
    columns: list[tuple[str, Any]] = [("cosine", lambda h: h.embedding_score)] if mode == "dense" else [
        ("cosine", lambda h: h.embedding_score), ("lexical", lambda h: h.lexical_score)]
    if not reranked:
        columns = [c for c in columns if c[0] != own]
    headers = ["rank", "score" if reranked else own, *(name for name, _ in columns), *(
        ["found by"] if mode == "hybrid" else []), "id", *(["metadata"] if has_metadata else []), "text"]
    rows = []
    for rank, hit in enumerate(result.results, 1):
        metadata = [_short(json.dumps(hit.metadata, ensure_ascii=False), 40) if hit.metadata else ""]
        rows.append([str(rank), f"{hit.score:.4f}", *(_score(get(hit)) for _, get in columns),
                     *([_found_by(hit.retrievers)] if mode == "hybrid" else []), _short(hit.id, 32),
                     *(metadata if has_metadata else []), hit.text])
    right = [True, True, *([True] * len(columns)), *([False] if mode == "hybrid" else []), False,
             *([False] if has_metadata else []), False]
    _table(headers, rows, right, out)


def cmd_collections(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    action = args.action or "list"
    if action == "list":
        collections = client.list_collections()
        if args.json:
            _dump(collections, out)
            return EXIT_OK
        if not collections:
            print("no collections", file=out)
            return EXIT_OK
        rows = [[c.name, c.model, str(c.dimensions), c.index, str(c.count), _when(c.created_at)] for c in collections]
        _table(["name", "model", "dims", "index", "documents", "created (UTC)"], rows,
               [False, False, True, False, True, False], out)
        return EXIT_OK
    if not args.name:
        raise UsageError(f"collections {action} needs a NAME")
    if action == "create":
        collection = client.create_collection(args.name, model=args.model, dimensions=args.dimensions,
                                              index=args.index, lexical_language=args.lexical_language)
    elif action == "show":
        collection = client.get_collection(args.name)
    else:
        deleted = client.delete_collection(args.name)
        if args.json:
            _dump(deleted, out)
        else:
            print(f"deleted collection {deleted.name}", file=out)
        return EXIT_OK
    if args.json:
        _dump(collection, out)
    else:
        print(f"{collection.name}: model {collection.model}, {_plural(collection.dimensions, 'dimension')}, index "
              f"{collection.index}, lexical language {collection.lexical_language}, "
              f"{_plural(collection.count, 'document')}, created {_when(collection.created_at)} UTC", file=out)
    return EXIT_OK


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


# ---------------------------------------------------------------- ingest
INGEST_BATCH_SIZE = 64
"""Documents per upload request of `ingest` (unless --batch-size). The server embeds an upload in
chunks of 64 anyway, so smaller requests cost no throughput, and the progress bar moves each time
one is stored instead of once per server-sized (1024-document) request."""

BEIR_FIELDS = ("_id", "title", "text")
"""A record with these fields (and no `id`) is a BEIR corpus line, like SciFact's corpus.jsonl."""


@dataclass
class _Tally:
    read: int = 0
    blank: int = 0
    existing: int = 0
    errors: list[str] = field(default_factory=list)


def _content_id(text: str) -> str:
    # Without an id in the file, the text's hash: re-running the same file replaces, not duplicates.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _is_beir(obj: Any, args: argparse.Namespace) -> bool:
    layout = getattr(args, "layout", "auto")
    if layout != "auto":
        return bool(layout == "beir")
    return (isinstance(obj, dict) and all(k in obj for k in BEIR_FIELDS) and args.id_field not in obj
            and args.id_field == "id" and args.text_field == "text")


def _record(obj: Any, where: str, args: argparse.Namespace, tally: _Tally, *,
            beir: bool = False) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected a JSON object with a {args.text_field!r} field")
    text = obj.get(args.text_field)
    if not isinstance(text, str):
        raise UsageError(f"{where}: no {args.text_field!r} string field")
    id_field = "_id" if beir else args.id_field
    if beir:
        # As BEIR embeds a corpus: title, a space, text, stripped (the title also stays in metadata).
        title = obj.get("title")
        if title is not None and not isinstance(title, str):
            raise UsageError(f"{where}: 'title' is not a string")
        text = (title + " " + text).strip() if title is not None else text.strip()
    tally.read += 1
    if not text.strip():
        tally.blank += 1
        return None
    raw_id = obj.get(id_field)
    metadata = dict(obj["metadata"]) if isinstance(obj.get("metadata"), dict) else {}
    metadata.update({k: v for k, v in obj.items() if k not in (id_field, args.text_field, "metadata")
                     and v not in (None, "")})
    return {"id": str(raw_id) if raw_id not in (None, "") else _content_id(text), "text": text,
            "metadata": metadata or None}


def _format_of(path: str, given: str) -> str:
    if given != "auto":
        return given
    if path == "-":
        return "jsonl"
    if os.path.isdir(path):
        return "dir"
    suffix = Path(path).suffix.lower()
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
    if suffix not in formats:
        raise UsageError(f"cannot tell the format of {path!r}: use .jsonl, .json, .csv or a folder, or --format")
    return formats[suffix]


class _Input:
    """The documents of an input file (or folder, or stdin), read lazily and as often as asked.

    `validate()` reads everything once, before anything is created on the server, so that a
    malformed line stops `ingest` with nothing left behind; iterating again streams the documents
    for the upload (stdin is kept in memory: it cannot be read twice). `tally` counts the last
    pass; `beir` says whether the first record had the BEIR layout (then all are read that way).
    """

    def __init__(self, path: str, fmt: str, args: argparse.Namespace) -> None:
        self.path, self.fmt, self.args = path, fmt, args
        self.tally = _Tally()
        self.beir = False
        self.total: int | None = None
        """Documents to upload (blank ones left out): known after `validate()`."""
        self._stdin: list[str] | None = None
        self._files: list[Path] = []
        if fmt == "dir":
            root = Path(path)
            self._files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        elif path == "-":
            self._stdin = sys.stdin.readlines()
        elif not os.path.isfile(path):
            raise UsageError(f"no such file: {path}")

    def validate(self) -> int:
        """Read every document once; raises `UsageError` naming the first bad one. Returns how many there are."""
        self.total = sum(1 for _ in self)
        return self.total

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.tally.read = self.tally.blank = 0  # each pass counts afresh (`existing` is the uploader's)
        first = True
        for obj, where in self._objects():
            if first:
                self.beir, first = self.fmt != "dir" and _is_beir(obj, self.args), False
            doc = _record(obj, where, self.args, self.tally, beir=self.beir)
            if doc is not None:
                yield doc

    def _objects(self) -> Iterator[tuple[Any, str]]:
        path, args = self.path, self.args
        if self.fmt == "dir":
            root = Path(path)
            for file in self._files:
                yield ({args.id_field: file.relative_to(root).as_posix(),
                        args.text_field: file.read_text(encoding="utf-8", errors="replace")}, str(file))
        elif self.fmt == "jsonl":
            with (contextlib.nullcontext(self._stdin) if self._stdin is not None
                  else open(path, encoding="utf-8")) as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise UsageError(f"{path}:{number}: not JSON: {exc}") from exc
                    yield obj, f"{path}:{number}"
        elif self.fmt == "json":
            with open(path, encoding="utf-8") as f:
                try:
                    items = json.load(f)
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{path}: not JSON: {exc}") from exc
            if not isinstance(items, list):
                raise UsageError(f"{path}: expected a JSON array of objects")
            for i, obj in enumerate(items):
                yield obj, f"{path}[{i}]"
        else:
            csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or args.text_field not in reader.fieldnames:
                    raise UsageError(f"{path}: the header has no {args.text_field!r} column")
                for number, row in enumerate(reader, 2):
                    yield row, f"{path}:{number}"


def _read_documents(path: str, fmt: str, args: argparse.Namespace) -> _Input:
    """The input, checked whole: every record read once (a bad one raises `UsageError`)."""
    documents = _Input(path, fmt, args)
    documents.validate()
    return documents


def _without_existing(client: Client, collection: str, documents: Iterable[dict[str, Any]],
                      tally: _Tally) -> Iterator[dict[str, Any]]:
    """The documents whose id is not stored yet (one GET per id, several at a time)."""

    def exists(doc_id: str) -> bool:
        try:
            client.get_document(collection, doc_id)
        except NotFoundError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        batch: list[dict[str, Any]] = []
        for document in _chain_end(documents):
            if document is not None:
                batch.append(document)
            if batch and (document is None or len(batch) >= 64):
                for doc, found in zip(batch, pool.map(exists, [d["id"] for d in batch]), strict=True):
                    if found:
                        tally.existing += 1
                    else:
                        yield doc
                batch = []


def _chain_end(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any] | None]:
    yield from items
    yield None


def cmd_ingest(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    fmt = _format_of(args.path, args.format)
    documents = _read_documents(args.path, fmt, args)  # the whole input checked before anything is created
    if documents.beir:
        print(f"{args.path}: BEIR layout (_id, title, text): ids from _id, each document embedded as "
              "title + ' ' + text (the title also kept in metadata)", file=sys.stderr)
    total: int | None = documents.total
    started = time.perf_counter()
    created = False
    try:
        collection = client.get_collection(args.collection)
        if args.model or args.dimensions or args.index or args.lexical_language:
            # Exists: confirm it matches what was asked (the server answers 409 if it does not).
            collection = client.create_collection(args.collection, model=args.model, dimensions=args.dimensions,
                                                  index=args.index, lexical_language=args.lexical_language)
    except NotFoundError:
        collection = client.create_collection(args.collection, model=args.model, dimensions=args.dimensions,
                                              index=args.index, lexical_language=args.lexical_language)
        created = True
    stream: Iterable[dict[str, Any]] = documents
    if args.skip_existing and not created:
        stream = _without_existing(client, args.collection, documents, documents.tally)
        total = None  # the bar counts uploads, and how many are left is not known in advance
    progress = False if args.no_progress else None
    ids = client.upsert(args.collection, stream, batch_size=args.batch_size or INGEST_BATCH_SIZE,
                        progress=progress, total=total)
    seconds = time.perf_counter() - started
    count = client.count(args.collection)
    tally = documents.tally
    summary = {"collection": args.collection, "created": created, "model": collection.model,
               "dimensions": collection.dimensions, "layout": "beir" if documents.beir else "plain",
               "read": tally.read, "upserted": len(ids), "skipped_existing": tally.existing,
               "skipped_blank": tally.blank, "count": count, "seconds": round(seconds, 3)}
    if args.json:
        _dump(summary, out)
    else:
        rate = len(ids) / seconds if seconds > 0 else 0.0
        print(f"{'created collection' if created else 'using collection'} {args.collection} (model "
              f"{collection.model}, {_plural(collection.dimensions, 'dimension')})", file=out)
        print(f"upserted {len(ids)} of {_plural(tally.read, 'document')} in {seconds:.1f} s ({rate:.1f} docs/s); "
              f"skipped {tally.existing} already stored, {tally.blank} blank; the collection holds "
              f"{_plural(count, 'document')}", file=out)
    return EXIT_OK


# ---------------------------------------------------------------- parser
def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """The global options, accepted before and after the command.

    Sub-parsers get SUPPRESS defaults so that an option given before the command is not reset
    by the sub-parser's default.
    """
    parser = argparse.ArgumentParser(add_help=False)
    suppress = argparse.SUPPRESS

    def default(value: Any) -> Any:
        return value if defaults else suppress

    parser.add_argument("--url", default=default(None), metavar="URL",
                        help=f"server root URL (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})")
    parser.add_argument("--api-key", default=default(None), metavar="KEY",
                        help=f"API key (default: ${API_KEY_ENV})")
    parser.add_argument("--timeout", type=float, default=default(None), metavar="SECONDS",
                        help="timeout of each HTTP attempt (default: 120 s, 10 s to connect)")
    parser.add_argument("--max-retries", type=int, default=default(DEFAULT_MAX_RETRIES), metavar="N",
                        help=f"retries of a failed request (default: {DEFAULT_MAX_RETRIES})")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="machine-readable JSON output (errors too, on stderr)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="qwen3-search", parents=[_common_options(defaults=True)],
        description="Embed, rerank, ingest and search with a qwen3-search server.",
        epilog="exit codes: 0 ok, 1 API error, 2 usage error, 3 connection error or timeout, "
               "4 service not healthy (health), 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[Client, argparse.Namespace, TextIO], int],
                help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    p = command("health", cmd_health, "Show whether every deployment is ready (exit 4 if not).")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="poll until the service is ready, for up to SECONDS")

    command("info", cmd_info, "Show the served models and the per-request limits.")

    p = command("embed", cmd_embed, "Embed texts (arguments, or stdin lines).")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--model")
    p.add_argument("--instruction", help="embed as queries with this task instruction")
    p.add_argument("--input-type", choices=["query", "document"])
    p.add_argument("--dimensions", type=int, help="Matryoshka width")
    p.add_argument("--vectors", action="store_true", help="print each vector as a JSON array, one per line")

    p = command("rerank", cmd_rerank, "Rank documents (arguments, or stdin lines) by relevance to QUERY.")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("documents", nargs="*", metavar="DOC")
    p.add_argument("--model")
    p.add_argument("--top-n", type=int)
    p.add_argument("--instruction")

    p = command("search", cmd_search, "Search a collection and print the ranked results.")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--mode", choices=["dense", "lexical", "hybrid"],
                   help="dense: vector search (server default); lexical: full-text search; hybrid: both, fused "
                        "by reciprocal rank fusion")
    p.add_argument("--rrf-k", type=int, help="hybrid: the RRF constant (server default 60)")
    p.add_argument("--weights", metavar="dense=W,lexical=W", help="hybrid: RRF weight per retriever (1 each)")
    p.add_argument("--top-k", type=int, help="candidates from each retriever, which the reranker scores (server "
                   "default 100, or 20 when the reranker runs on CPU)")
    p.add_argument("--top-n", type=int, help="results shown (server default 10)")
    p.add_argument("--filter", metavar="JSON", help='metadata filter, e.g. \'{"topic": "physics"}\'')
    p.add_argument("--no-rerank", action="store_true", help="rank by the retriever's score only")
    p.add_argument("--instruction")
    p.add_argument("--reranker")

    p = command("ingest", cmd_ingest, "Upload a JSONL, JSON or CSV file, or a folder of .txt/.md files, into "
                                      "COLLECTION (created if missing). Re-running replaces by id.")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("path", metavar="PATH", help="file, folder, or - for JSONL on stdin")
    p.add_argument("--format", choices=["auto", "jsonl", "json", "csv", "dir"], default="auto")
    p.add_argument("--id-field", default="id", help="field (column) holding the id (default: id; absent: a hash "
                                                    "of the text; folders: the relative path)")
    p.add_argument("--text-field", default="text", help="field (column) holding the text (default: text)")
    p.add_argument("--layout", choices=["auto", "beir", "plain"], default="auto",
                   help="beir: records are {_id, title, text} and each is embedded as title + ' ' + text, as "
                        "BEIR does; auto (default): beir when the first record has _id, title and text and no id")
    p.add_argument("--model", help="embedding model of a new collection")
    p.add_argument("--dimensions", type=int, help="Matryoshka width of a new collection")
    p.add_argument("--index", choices=["auto", "exact", "hnsw"], help="index of a new collection")
    p.add_argument("--lexical-language", help="full-text language of a new collection: simple (default), english")
    p.add_argument("--batch-size", type=int,
                   help=f"documents per request (default: {INGEST_BATCH_SIZE}; at most the server's maximum)")
    p.add_argument("--skip-existing", action="store_true",
                   help="check each id first and upload only the missing ones (one GET per document: saves "
                        "re-embedding when resuming a large upload)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (off anyway when not a terminal)")

    p = command("collections", cmd_collections, "List, show, create or delete collections.")
    p.add_argument("action", nargs="?", choices=["list", "show", "create", "delete"], default="list")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--model", help="create: the embedding model")
    p.add_argument("--dimensions", type=int, help="create: Matryoshka width")
    p.add_argument("--index", choices=["auto", "exact", "hnsw"], help="create: index type")
    p.add_argument("--lexical-language", help="create: full-text language, simple (default) or english")

    # Runs here, not against a server; the exporter (torch, onnx) is imported only when it runs.
    p = commands.add_parser("export-onnx", help="Export a model folder to a servable ONNX folder (no server).",
                            description="Export a transformers folder to model.onnx + tokenizer/config files "
                                        "for the ONNX Runtime backend (needs the onnx extra).")
    p.set_defaults(local=cmd_export_onnx)
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--kind", choices=["reranker", "embedding"], help="default: from modules.json")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization of the MatMul weights")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    return parser


def cmd_export_onnx(args: argparse.Namespace) -> int:
    try:
        from deployments.engine.errors import EngineError
        from deployments.engine.onnx_export import run
    except ImportError as exc:
        raise UsageError(f"export-onnx needs the server packages: pip install 'qwen3-search[onnx]' ({exc})") from exc
    try:
        return run(args)
    except EngineError as exc:
        raise UsageError(str(exc)) from exc


def _report(error: BaseException, as_json: bool, kind: str) -> None:
    if as_json:
        detail: dict[str, Any] = {"kind": kind, "message": getattr(error, "message", str(error))}
        if isinstance(error, APIStatusError):
            detail.update(status=error.status_code, type=error.type, param=error.param, code=error.code)
        if isinstance(error, APIError):
            detail["request_id"] = error.request_id
        print(json.dumps({"error": detail}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"qwen3-search: {kind}: {error}", file=sys.stderr)


def _with_cli_hint(error: APITimeoutError, args: argparse.Namespace) -> APITimeoutError:
    """The timeout in this command line's words: its flags, not the library's parameters."""
    if error.hint is None:
        return error
    hint = ("A search's time is mostly the reranker scoring --top-k candidates per query: pass a smaller --top-k, "
            "--no-rerank, or a larger --timeout SECONDS." if args.handler is cmd_search
            else "Pass a larger --timeout SECONDS.")
    return APITimeoutError(error.reason, request=error.request, request_id=error.request_id, hint=hint)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "local", None) is not None:  # a command that needs no server
            return int(args.local(args))
        with Client(base_url=args.url, api_key=args.api_key, max_retries=args.max_retries,
                    **({"timeout": args.timeout} if args.timeout is not None else {})) as client:
            code: int = args.handler(client, args, sys.stdout)
            return code
    except UsageError as exc:
        _report(exc, args.json, "usage error")
        return EXIT_USAGE
    except APITimeoutError as exc:
        _report(_with_cli_hint(exc, args), args.json, "no answer")
        return EXIT_CONNECTION
    except APIConnectionError as exc:
        _report(exc, args.json, "no answer")
        return EXIT_CONNECTION
    except APIError as exc:
        _report(exc, args.json, "error")
        return EXIT_API_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `qwen3-search ... | head`
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
