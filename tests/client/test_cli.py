"""The command line without a real server: input formats of `ingest`, output, exit codes.

Most tests here run `main()` against the fake server behind `httpx.MockTransport` (a double)
because they need answers a real server gives only in some states (a deployment down, a
collection already holding part of an upload) and must run in milliseconds; the end-to-end CLI
runs against the real server are in test_live.py and test_collections_live.py.
"""

import argparse
import hashlib
import json
import socket
from pathlib import Path

import httpx
import pytest

import clients.cli as cli
from clients import Client
from tests.client.fake_server import FakeServer, fake_score


def options(**overrides) -> argparse.Namespace:
    return argparse.Namespace(**{"id_field": "id", "text_field": "text", **overrides})


def read(path, fmt="auto", **overrides):
    """The documents, how many (blank ones left out), and the tally of the reading."""
    documents = cli._read_documents(str(path), cli._format_of(str(path), fmt), options(**overrides))
    return list(documents), documents.total, documents.tally


# ---------------------------------------------------------------- input formats
def test_jsonl_ids_metadata_hash_ids_and_blank_texts(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "a", "text": "alpha", "metadata": {"k": 1}, "lang": "en"}),
        "",
        json.dumps({"text": "no id here"}),
        json.dumps({"id": 7, "text": "   "}),
        json.dumps({"id": 8, "text": "numeric id", "source": None}),
    ]) + "\n")
    documents, total, tally = read(path)
    assert total == 3 and (tally.read, tally.blank) == (4, 1)
    assert documents == [
        {"id": "a", "text": "alpha", "metadata": {"k": 1, "lang": "en"}},
        {"id": hashlib.sha256(b"no id here").hexdigest()[:32], "text": "no id here", "metadata": None},
        {"id": "8", "text": "numeric id", "metadata": None},
    ]


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(cli.UsageError, match=r"bad.jsonl:2: no 'text' string field"):
        read(path)
    path.write_text('{"text": "fine"}\n{not json\n')
    with pytest.raises(cli.UsageError, match=r"bad.jsonl:2: not JSON"):
        read(path)


def test_csv_extra_columns_become_metadata(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text('id,text,topic,year\nq1,"Gravity, a force\nbetween bodies",physics,1687\nq2,Bananas,,\n')
    documents, total, _ = read(path)
    assert total == 2
    assert documents == [
        {"id": "q1", "text": "Gravity, a force\nbetween bodies", "metadata": {"topic": "physics", "year": "1687"}},
        {"id": "q2", "text": "Bananas", "metadata": None},
    ]
    path.write_text("id,body\n1,x\n")
    with pytest.raises(cli.UsageError, match="no 'text' column"):
        read(path)
    assert read(path, text_field="body")[0] == [{"id": "1", "text": "x", "metadata": None}]


def test_a_folder_of_text_files_uses_relative_paths_as_ids(tmp_path):
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "install.md").write_text("# Install\npip install it")
    (tmp_path / "notes.txt").write_text("a note")
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    documents, total, tally = read(tmp_path)
    assert total == 2 and tally.blank == 1
    assert [(d["id"], d["text"]) for d in documents] == [("guides/install.md", "# Install\npip install it"),
                                                         ("notes.txt", "a note")]


def test_a_json_array_and_unknown_formats(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps([{"id": "x", "text": "one"}, {"id": "y", "text": "two"}]))
    assert [d["id"] for d in read(path)[0]] == ["x", "y"]
    with pytest.raises(cli.UsageError, match="cannot tell the format"):
        cli._format_of(str(tmp_path / "docs.xml"), "auto")


# ---------------------------------------------------------------- main() against the fake server
@pytest.fixture
def fake_cli(monkeypatch):
    fake = FakeServer()
    monkeypatch.setattr(cli, "Client", lambda **kw: Client(
        http_client=httpx.Client(transport=fake.transport()), _sleep=lambda s: None, **kw))
    return fake


def test_ingest_creates_the_collection_and_resumes_by_id(fake_cli, tmp_path, capsys):
    """Double: the second run meets a collection that already holds the first part of the file."""
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text {i}", "n": i}) + "\n" for i in range(30)))
    assert cli.main(["ingest", "docs", str(path), "--no-progress"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "created collection docs" in out and "upserted 30 of 30 documents" in out and "holds 30" in out
    assert fake_cli.collections["docs"]["d7"] == {"id": "d7", "text": "text 7", "metadata": {"n": 7}}

    for i in range(10, 30):  # as if the first run had stopped after 10 documents
        del fake_cli.collections["docs"][f"d{i}"]
    uploads = len(fake_cli.requests_to("/v1/collections/docs/documents"))
    assert cli.main(["--json", "ingest", "docs", str(path), "--skip-existing"]) == cli.EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary == {**summary, "created": False, "read": 30, "upserted": 20, "skipped_existing": 10,
                       "count": 30}
    sent = [d["id"] for s in fake_cli.requests_to("/v1/collections/docs/documents")[uploads:]
            for d in s.body["documents"]]
    assert sent == [f"d{i}" for i in range(10, 30)]


def test_search_prints_a_ranked_table_and_json(fake_cli, capsys):
    """Double: scores are known in advance, so the printed order can be checked."""
    fake_cli.collections["facts"] = {i: {"id": i, "text": f"the fact about {i}", "metadata": {"topic": i}}
                                     for i in ("gravity", "bananas", "paris")}
    assert cli.main(["search", "facts", "what falls?", "--top-n", "3"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    expected = sorted(("gravity", "bananas", "paris"), key=lambda i: -fake_score("what falls?", f"the fact about {i}"))
    assert lines[0].startswith("facts: 3 results for 'what falls?'")
    assert lines[1].split()[:5] == ["rank", "score", "cosine", "id", "metadata"]
    assert [line.split()[3] for line in lines[2:]] == expected
    assert cli.main(["search", "facts", "what falls?", "--json", "--filter", '{"topic": "paris"}']) == 0
    body = json.loads(capsys.readouterr().out)
    assert fake_cli.seen[-1].body["filter"] == {"topic": "paris"} and "timings" in body


def test_search_modes_send_their_fields_and_print_who_found_each_hit(fake_cli, capsys):
    """Double: the answer's retrievers and scores are set by the fake per mode."""
    fake_cli.collections["parts"] = {i: {"id": i, "text": f"part {i}", "metadata": None} for i in ("a", "b")}
    assert cli.main(["search", "parts", "XQ-7731", "--mode", "hybrid", "--weights", "dense=1,lexical=2",
                     "--rrf-k", "30", "--no-rerank"]) == cli.EXIT_OK
    sent = fake_cli.seen[-1].body
    assert (sent["mode"], sent["weights"], sent["rrf_k"], sent["rerank"]) == (
        "hybrid", {"dense": 1.0, "lexical": 2.0}, 30, False)
    lines = capsys.readouterr().out.splitlines()
    assert "(hybrid)" in lines[0] and lines[1].split()[:6] == ["rank", "rrf", "cosine", "lexical", "found", "by"]
    assert lines[2].split()[4:6] == ["d2", "l1"]
    assert cli.main(["search", "parts", "XQ-7731", "--mode", "lexical"]) == cli.EXIT_OK
    assert fake_cli.seen[-1].body["mode"] == "lexical" and "weights" not in fake_cli.seen[-1].body
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == ["rank", "score", "cosine", "lexical"]
    for bad in (["--weights", "dense=1"], ["--mode", "hybrid", "--weights", "dense:1"], ["--rrf-k", "5"]):
        assert cli.main(["search", "parts", "q", *bad]) == cli.EXIT_USAGE
    assert "--mode hybrid" in capsys.readouterr().err


def test_exit_codes(fake_cli, capsys):
    """Double: a deployment down and an unknown collection, on demand."""
    assert cli.main(["collections", "show", "missing"]) == cli.EXIT_API_ERROR
    assert "404 not_found_error: collection 'missing' not found" in capsys.readouterr().err
    assert cli.main(["--json", "collections", "show", "missing"]) == cli.EXIT_API_ERROR
    error = json.loads(capsys.readouterr().err)["error"]
    assert (error["status"], error["code"]) == (404, "collection_not_found") and error["request_id"]

    fake_cli.then(httpx.Response(503, json={"status": "unavailable", "deployments": {"Embedder": "starting"}}),
                  path="/health")
    assert cli.main(["health"]) == cli.EXIT_UNHEALTHY
    assert "status: unavailable" in capsys.readouterr().out
    assert cli.main(["health"]) == cli.EXIT_OK

    assert cli.main(["search", "facts", "q", "--filter", "{not json"]) == cli.EXIT_USAGE
    assert "--filter is not JSON" in capsys.readouterr().err
    assert cli.main(["collections", "delete"]) == cli.EXIT_USAGE
    with pytest.raises(SystemExit) as caught:
        cli.main(["rerank"])  # argparse: QUERY missing
    assert caught.value.code == cli.EXIT_USAGE


def test_health_wait_polls_until_ready(fake_cli, capsys, monkeypatch):
    """Double: two 'starting' answers, then ready."""
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    for _ in range(2):
        fake_cli.then(httpx.Response(503, json={"status": "unavailable", "deployments": {"Embedder": "starting"}}),
                      path="/health")
    assert cli.main(["health", "--wait", "30"]) == cli.EXIT_OK
    assert len(fake_cli.requests_to("/health")) == 3
    captured = capsys.readouterr()
    # what it waits for, on stderr, once per change of state; the answer alone on stdout
    assert captured.err.count("waiting for Embedder (starting)") == 1
    assert captured.out.startswith("status: ok")

    fake_cli.then(httpx.ConnectError, path="/health")
    assert cli.main(["--url", "http://fake", "health", "--wait", "30"]) == cli.EXIT_OK
    assert "waiting for http://fake to answer (Connection error" in capsys.readouterr().err


def test_no_server_is_exit_code_3(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main(["--url", f"http://127.0.0.1:{port}", "--max-retries", "0", "info"]) == cli.EXIT_CONNECTION
    assert "no answer: Connection error" in capsys.readouterr().err


def test_a_search_timeout_names_the_flags_that_change_it(fake_cli, capsys):
    """Double: a read timeout on demand (a real one would take the timeout's length)."""
    fake_cli.then(httpx.ReadTimeout, path="/v1/collections/docs/search")
    assert cli.main(["--url", "http://fake", "search", "docs", "a query"]) == cli.EXIT_CONNECTION
    err = capsys.readouterr().err
    assert "no answer: No answer to POST http://fake/v1/collections/docs/search" in err
    for flag in ("--top-k", "--no-rerank", "--timeout"):
        assert flag in err
    assert "top_k=" not in err  # the command line's words, not the library's
    assert len(fake_cli.requests_to("/v1/collections/docs/search")) == 1  # not retried


# ---------------------------------------------------------------- ingest: validation, BEIR, progress
def test_a_malformed_file_leaves_nothing_behind(fake_cli, tmp_path, capsys):
    """Double: the fake records every request, so 'nothing was created' is checkable."""
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(100))
                    + "{not json\n")
    assert cli.main(["ingest", "docs", str(path), "--no-progress"]) == cli.EXIT_USAGE
    assert "docs.jsonl:101: not JSON" in capsys.readouterr().err
    assert fake_cli.collections == {} and fake_cli.seen == []


def beir_lines(count: int) -> str:
    """Corpus lines in the BEIR layout, as in SciFact's corpus.jsonl."""
    return "".join(json.dumps({"_id": str(4983 + i), "title": f"Title {i}.", "text": f"Abstract {i}.",
                               "metadata": {}}) + "\n" for i in range(count))


def test_a_beir_corpus_uses_its_ids_and_embeds_title_and_text(fake_cli, tmp_path, capsys):
    path = tmp_path / "corpus.jsonl"
    path.write_text(beir_lines(3))
    assert cli.main(["--json", "ingest", "scifact", str(path), "--no-progress"]) == cli.EXIT_OK
    captured = capsys.readouterr()
    assert json.loads(captured.out)["layout"] == "beir" and "BEIR layout" in captured.err
    assert fake_cli.collections["scifact"]["4984"] == {"id": "4984", "text": "Title 1. Abstract 1.",
                                                      "metadata": {"title": "Title 1."}}

    # --layout plain: the file read as any other (hash ids, text alone, _id and title in metadata)
    assert cli.main(["--json", "ingest", "plain", str(path), "--no-progress", "--layout", "plain"]) == 0
    assert json.loads(capsys.readouterr().out)["layout"] == "plain"
    stored = fake_cli.collections["plain"][hashlib.sha256(b"Abstract 0.").hexdigest()[:32]]
    assert stored["text"] == "Abstract 0." and stored["metadata"] == {"_id": "4983", "title": "Title 0."}


def test_the_real_scifact_corpus_is_read_as_beir():
    path = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "scifact" / "corpus.jsonl"
    if not path.is_file():
        pytest.skip("../shared/datasets/scifact is absent")
    documents = cli._read_documents(str(path), "jsonl", options(layout="auto"))
    first = next(iter(documents))
    assert documents.beir and documents.total == 5183 and first["id"] == "4983"
    assert first["text"].startswith("Microstructural development of human newborn cerebral white matter")
    assert first["metadata"]["title"].startswith("Microstructural development")


class RecordingBar:
    """Stands in for the tqdm bar: records what it is told, in one list shared with the fake server."""

    def __init__(self, events: list) -> None:
        self.events = events

    def update(self, n):
        self.events.append(("stored", n))

    def set_postfix_str(self, s="", refresh=True):
        self.events.append(("postfix", s))

    def close(self):
        self.events.append(("closed", None))


def test_the_progress_bar_moves_as_chunks_are_stored(fake_cli, tmp_path, monkeypatch):
    """Double: the fake's requests and the bar's updates are recorded in one sequence."""
    import clients._client as client_module

    events: list = []
    monkeypatch.setattr(client_module, "_progress_bar", lambda enabled, total, description: (
        events.append(("total", total)) or RecordingBar(events)))
    handle = fake_cli.handle

    def recording_handle(request):
        if request.method == "POST":
            events.append(("request", request.url.path))
        return handle(request)

    monkeypatch.setattr(fake_cli, "handle", recording_handle)
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(640)))
    assert cli.main(["ingest", "docs", str(path)]) == cli.EXIT_OK
    stored = [n for kind, n in events if kind == "stored"]
    posts = [i for i, (kind, _) in enumerate(events) if kind == "request"]
    assert events[0] == ("total", 640) and stored == [cli.INGEST_BATCH_SIZE] * 10 and len(posts) == 10
    assert events.index(("stored", 64)) < posts[-1]  # it moved while the upload went on, not at the end
    assert ("postfix", "64 in flight") in events and events[-1] == ("closed", None)


def test_counts_are_pluralised(fake_cli, capsys):
    assert cli.main(["embed", "only one"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "· 1 input ·" in out and "1 inputs" not in out
    fake_cli.collections["one"] = {"a": {"id": "a", "text": "the only fact", "metadata": None}}
    assert cli.main(["search", "one", "anything"]) == cli.EXIT_OK
    assert "one: 1 result for 'anything'" in capsys.readouterr().out
    assert cli.main(["collections", "show", "one"]) == cli.EXIT_OK
    assert ", 1 document," in capsys.readouterr().out
