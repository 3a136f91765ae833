"""DocumentStore: the durable SQLite source of truth."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deployments.index import CollectionConflict, CollectionNotFound, DocumentStore, StorageLayoutError


def vec(seed: int, d: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    return v / np.linalg.norm(v)


def test_collections_create_conflict_and_delete(tmp_path):
    store = DocumentStore(tmp_path / "s.sqlite3")
    record, created = store.create_collection("docs", "m", 8, "auto")
    assert created and record.dimensions == 8
    again, created_again = store.create_collection("docs", "m", 8, "auto")
    assert not created_again and again == record
    with pytest.raises(CollectionConflict, match="exists with model 'm', 8 dimensions"):
        store.create_collection("docs", "m", 16, "auto")
    with pytest.raises(CollectionConflict):
        store.create_collection("docs", "other", 8, "auto")
    assert [c.name for c in store.collections()] == ["docs"]
    store.upsert("docs", [("a", "text", None, vec(0))])
    assert store.delete_collection("docs") and not store.delete_collection("docs")
    assert store.count("docs") == 0  # its documents went with it
    with pytest.raises(CollectionNotFound):
        store.collection("docs")


def test_upsert_keeps_labels_stable_and_replaces_content(tmp_path):
    store = DocumentStore(tmp_path / "s.sqlite3")
    store.create_collection("docs", "m", 8, "auto")
    first = store.upsert("docs", [("a", "one", {"k": 1}, vec(1)), ("b", "two", None, vec(2))])
    second = store.upsert("docs", [("b", "two, edited", {"k": 2}, vec(3)), ("c", "three", None, vec(4))])
    assert second[0] == first[1] and second[1] not in first
    assert store.count("docs") == 3
    row = store.get("docs", "b")
    assert row is not None and row.text == "two, edited" and row.metadata == {"k": 2} and row.label == first[1]
    labels, vectors, metadata = next(store.vectors("docs", 8))
    np.testing.assert_array_equal(vectors[list(labels).index(first[1])], vec(3))
    assert store.delete("docs", "a") == first[0] and store.delete("docs", "a") is None
    assert set(store.rows(list(labels))) == set(labels) - {first[0]}


def test_a_failing_batch_writes_nothing(tmp_path):
    store = DocumentStore(tmp_path / "s.sqlite3")
    store.create_collection("docs", "m", 8, "auto")
    with pytest.raises(TypeError):
        store.upsert("docs", [("a", "fine", None, vec(0)), ("b", "bad metadata", {"x": object()}, vec(1))])
    assert store.count("docs") == 0
    with pytest.raises(CollectionNotFound):
        store.upsert("missing", [("a", "x", None, vec(0))])


def test_layout_mismatch_is_refused(tmp_path):
    DocumentStore(tmp_path / "s.sqlite3", shard=0, shards=2).close()
    with pytest.raises(StorageLayoutError, match="shard 0 of 2"):
        DocumentStore(tmp_path / "s.sqlite3", shard=0, shards=3)


def test_acknowledged_writes_survive_a_killed_process(tmp_path):
    # A real SIGKILL of a real writer process, right after it acknowledged its writes.
    path = tmp_path / "s.sqlite3"
    writer = textwrap.dedent(f"""
        import sys, time, numpy as np
        from deployments.index import DocumentStore
        store = DocumentStore(__import__("pathlib").Path({str(path)!r}))
        store.create_collection("docs", "m", 8, "auto")
        for batch in range(20):
            docs = [(f"doc-{{batch}}-{{i}}", f"text {{batch}} {{i}}", {{"batch": batch}}, np.full(8, batch, np.float32))
                    for i in range(50)]
            store.upsert("docs", docs)
            print(f"ACK {{batch}}", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True,
                               cwd=os.getcwd())
    acknowledged = -1
    for line in process.stdout:
        acknowledged = int(line.split()[1])
        if acknowledged == 19:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    store = DocumentStore(path)
    assert store.count("docs") == 50 * (acknowledged + 1) == 1000
    assert store.get("docs", "doc-19-49").metadata == {"batch": 19}
