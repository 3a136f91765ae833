"""The ONNX Runtime backend against the Qwen3-Reranker ONNX model card's onnxruntime code and the torch backend.

Every ONNX folder here is made by `qwen3-search export-onnx` from a random-weight model folder,
in the layout of the public Qwen3-Reranker-0.6B-ONNX release (model.onnx taking input_ids,
attention_mask, position_ids and returning logits, tokenizer files and config.json beside it).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from clients.cli import main as cli_main
from deployments.engine import EmbeddingEngine, InvalidInputError, RerankEngine, UnsupportedModelError
from deployments.engine.onnx_options import OnnxOptions
from deployments.engine.prompts import RERANK_PREFIX, RERANK_SUFFIX
from tests.conftest import default_tokenizer_source, mixed_texts
from tests.model_card_reference import CARD_PREFIX, CARD_SUFFIX, CardOnnxReranker, reference_embed

ROOT = Path(__file__).resolve().parents[2]
QUERY = "Which protein drives cancer cell growth in the ocean city?"


def test_card_prompt_is_the_official_one():
    assert CARD_PREFIX == RERANK_PREFIX and CARD_SUFFIX == RERANK_SUFFIX
    assert "'<|im_end|>" not in RERANK_PREFIX  # the stray quote of two circulating copies


# ---------------- fixtures: folders made by the export command ----------------
def export(source: Path, out: Path, *extra: str) -> Path:
    assert cli_main(["export-onnx", str(source), str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def reranker_dirs(model_factory, tmp_path_factory):
    """(transformers folder, its ONNX export) for a random-weight Qwen3 reranker."""
    source = model_factory("reranker", default_tokenizer_source())
    return source, export(source, tmp_path_factory.mktemp("onnx-reranker"), "--kind", "reranker")


@pytest.fixture(scope="module")
def card(reranker_dirs):
    return CardOnnxReranker(str(reranker_dirs[1]))


@pytest.fixture(scope="module")
def torch_reranker(reranker_dirs):
    return RerankEngine.load(str(reranker_dirs[0]), backend="torch", dtype="float32")


def onnx_reranker(folder: Path, **onnx_options) -> RerankEngine:
    return RerankEngine.load(str(folder), backend_options={"onnx": onnx_options} if onnx_options else None)


# ---------------- reranker ----------------
def test_export_writes_the_release_layout(reranker_dirs):
    _, folder = reranker_dirs
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not list(folder.glob("*.safetensors"))
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, len(i.shape)) for i in session.get_inputs()}
    assert inputs == {name: ("tensor(int64)", 2) for name in ("input_ids", "attention_mask", "position_ids")}
    (logits,) = session.get_outputs()
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    assert logits.name == "logits" and len(logits.shape) == 3 and logits.shape[-1] == vocab


def test_auto_backend_serves_the_folder_with_the_cut_graph(reranker_dirs):
    engine = RerankEngine.load(str(reranker_dirs[1]))
    assert engine.info.backend == "onnx" and engine.info.device == "cpu" and engine.info.dtype == "float32"
    assert engine.backend.output_path == "hidden_state"
    assert engine.max_length == 8192


@pytest.mark.parametrize("rerank_output", ["hidden_state", "logits"])
@pytest.mark.parametrize("instruction", [None, "Find the abstract that supports the scientific claim"])
def test_scores_equal_the_model_card_onnx_code(reranker_dirs, card, rerank_output, instruction):
    engine = onnx_reranker(reranker_dirs[1], rerank_output=rerank_output)
    assert engine.backend.output_path == rerank_output
    documents = mixed_texts(16, seed=13, max_words=150)
    expected = np.array(card.score(QUERY, documents, instruction))
    assert expected.std() > 0.005, "random weights too flat for the comparison to mean anything"
    engine.backend.max_batch_tokens = 1500  # several right-padded micro-batches of mixed lengths
    ours = engine.score(QUERY, documents, instruction=instruction)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert np.argsort(ours).tolist() == np.argsort(expected).tolist()


def test_scores_equal_the_torch_backend(reranker_dirs, torch_reranker):
    engine = onnx_reranker(reranker_dirs[1])
    documents = mixed_texts(20, seed=5, max_words=200)
    np.testing.assert_allclose(engine.score(QUERY, documents, raw=True),
                               torch_reranker.score(QUERY, documents, raw=True), atol=1e-4)


def test_groups_from_many_requests_score_like_single_requests(reranker_dirs, card):
    engine = onnx_reranker(reranker_dirs[1])
    requests = [("query one about gravity", mixed_texts(1, seed=1)), ("query two", mixed_texts(6, seed=2)),
                ("a third question", mixed_texts(2, seed=3))]
    results = engine.logits([engine.prepare(q, docs) for q, docs in requests])
    for (query, docs), logits in zip(requests, results, strict=True):
        np.testing.assert_allclose(1 / (1 + np.exp(-logits.astype(np.float64))), card.score(query, docs), atol=1e-4)


def test_external_weights_beside_the_graph(reranker_dirs, card, tmp_path):
    """Large releases keep weights in model.onnx_data; the cut graph must still find them."""
    folder = tmp_path / "external"
    shutil.copytree(reranker_dirs[1], folder, ignore=shutil.ignore_patterns("model.onnx*"))
    model = onnx.load(str(reranker_dirs[1] / "model.onnx"))
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, location="model.onnx_data",
              size_threshold=1024)
    assert (folder / "model.onnx").stat().st_size < 1_000_000
    engine = onnx_reranker(folder)
    assert engine.backend.output_path == "hidden_state"
    documents = mixed_texts(4, seed=8)
    np.testing.assert_allclose(engine.score(QUERY, documents), card.score(QUERY, documents), atol=1e-4)


def test_int8_export_keeps_the_exact_head_and_ranks_alike(reranker_dirs, card, tmp_path):
    folder = export(reranker_dirs[0], tmp_path / "int8", "--quantize", "int8")
    engine = onnx_reranker(folder)
    assert engine.info.dtype == "int8" and engine.backend.output_path == "hidden_state"
    documents = mixed_texts(16, seed=21, max_words=120)
    int8 = engine.score(QUERY, documents)
    exact = np.array(card.score(QUERY, documents))
    assert np.corrcoef(int8, exact)[0, 1] > 0.9
    # Dynamic quantization scales activations per tensor, i.e. over the whole batch: an int8 score
    # depends on its batch-mates. Alone, a document gets exactly what the card computes on the file.
    alone = np.array([engine.score(QUERY, [doc])[0] for doc in documents[:6]])
    np.testing.assert_allclose(alone, CardOnnxReranker(str(folder)).score(QUERY, documents[:6]), atol=1e-4)


def test_a_head_it_cannot_read_runs_the_whole_graph(reranker_dirs, card, tmp_path):
    """logits made by something other than a MatMul/Gemm with the head weight: the released graph runs whole."""
    folder = tmp_path / "opaque-head"
    shutil.copytree(reranker_dirs[1], folder, ignore=shutil.ignore_patterns("model.onnx*"))
    model = onnx.load(str(reranker_dirs[1] / "model.onnx"))
    (head,) = [node for node in model.graph.node if "logits" in node.output]
    head.output[0] = "logits_before_scale"
    model.graph.initializer.append(helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]))
    model.graph.node.append(helper.make_node("Mul", ["logits_before_scale", "one"], ["logits"]))
    onnx.save(model, str(folder / "model.onnx"))
    engine = onnx_reranker(folder)
    assert engine.backend.output_path == "logits"
    documents = mixed_texts(6, seed=4)
    np.testing.assert_allclose(engine.score(QUERY, documents), card.score(QUERY, documents), atol=1e-4)
    with pytest.raises(UnsupportedModelError, match="cannot cut the graph at its lm_head .*Mul node"):
        onnx_reranker(folder, rerank_output="hidden_state")


async def test_health_check_and_shutdown(reranker_dirs):
    engine = onnx_reranker(reranker_dirs[1])
    await engine.check_health()
    engine.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await engine.check_health()


# ---------------- refused at load, with the reason ----------------
def _tiny_graph(path: Path, inputs: list[str], output: str, vocab: int, *, rank: int = 3) -> None:
    """A valid graph that is not a reranker: logits = table[input_ids] (ignores the other inputs)."""
    table = helper.make_tensor("table", TensorProto.FLOAT, [vocab, 4], np.zeros(vocab * 4, dtype=np.float32))
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["gathered"])]
    if rank == 3:
        nodes.append(helper.make_node("Identity", ["gathered"], [output]))
    else:
        nodes.append(helper.make_node("ReduceSum", ["gathered"], [output], keepdims=0))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"]) for name in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", "seq", 4][:rank])], [table])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture
def bad_folder(reranker_dirs, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(reranker_dirs[1], folder, ignore=shutil.ignore_patterns("model.onnx*"))
    return folder


def _vocab(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["vocab_size"])


def test_refuses_a_file_that_is_not_onnx(bad_folder):
    (bad_folder / "model.onnx").write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(UnsupportedModelError, match="not a readable ONNX model"):
        RerankEngine.load(str(bad_folder))


def test_refuses_a_graph_missing_an_input(bad_folder):
    _tiny_graph(bad_folder / "model.onnx", ["input_ids", "attention_mask"], "logits", _vocab(bad_folder))
    with pytest.raises(UnsupportedModelError, match="lacks the input position_ids"):
        RerankEngine.load(str(bad_folder))


def test_refuses_a_graph_without_logits(bad_folder):
    _tiny_graph(bad_folder / "model.onnx", ["input_ids", "attention_mask", "position_ids"], "last_hidden_state",
                _vocab(bad_folder))
    with pytest.raises(UnsupportedModelError, match="has no logits output .*last_hidden_state"):
        RerankEngine.load(str(bad_folder))


def test_refuses_logits_of_the_wrong_rank(bad_folder):
    _tiny_graph(bad_folder / "model.onnx", ["input_ids", "attention_mask", "position_ids"], "logits",
                _vocab(bad_folder), rank=2)
    with pytest.raises(UnsupportedModelError, match="logits has rank 2"):
        RerankEngine.load(str(bad_folder))


def test_refuses_a_graph_of_another_vocabulary(bad_folder):
    _tiny_graph(bad_folder / "model.onnx", ["input_ids", "attention_mask", "position_ids"], "logits", 100)
    with pytest.raises(UnsupportedModelError, match="does not belong to this tokenizer"):
        RerankEngine.load(str(bad_folder))


def test_refuses_inputs_it_cannot_feed(bad_folder):
    _tiny_graph(bad_folder / "model.onnx", ["input_ids", "attention_mask", "position_ids", "past_key_values.0.key"],
                "logits", _vocab(bad_folder))
    with pytest.raises(UnsupportedModelError, match="cannot feed: past_key_values.0.key"):
        RerankEngine.load(str(bad_folder))


def test_refuses_an_embedding_graph_without_hidden_states(model_factory, tmp_path):
    folder = tmp_path / "emb"
    shutil.copytree(model_factory("embedding", default_tokenizer_source()), folder,
                    ignore=shutil.ignore_patterns("*.safetensors"))
    _tiny_graph(folder / "model.onnx", ["input_ids", "attention_mask"], "logits", _vocab(folder))
    with pytest.raises(UnsupportedModelError, match="no last_hidden_state output"):
        EmbeddingEngine.load(str(folder))


# ---------------- options ----------------
def test_options_are_checked(reranker_dirs):
    with pytest.raises(InvalidInputError, match="invalid onnx options"):
        onnx_reranker(reranker_dirs[1], threads=2)  # not a field: intra_op_threads is
    with pytest.raises(InvalidInputError, match="NoSuchExecutionProvider"):
        onnx_reranker(reranker_dirs[1], providers=["NoSuchExecutionProvider"])
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(InvalidInputError, match="onnxruntime-gpu"):
            RerankEngine.load(str(reranker_dirs[1]), device="cuda")
    assert OnnxOptions().providers is None and OnnxOptions(intra_op_threads=2).intra_op_threads == 2
    engine = onnx_reranker(reranker_dirs[1], intra_op_threads=1, graph_optimization_level="basic",
                           allow_spinning=False)
    assert engine.score(QUERY, ["one document"]).shape == (1,)


def test_importing_the_engine_does_not_import_onnxruntime():
    code = ("import sys, deployments.engine, deployments.engine.onnx_options, deployments.engine.backend\n"
            "print('onnxruntime' in sys.modules, 'onnx' in sys.modules, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False"]


# ---------------- embeddings ----------------
@pytest.fixture(scope="module")
def embedding_dirs(model_factory, tmp_path_factory):
    source = model_factory("embedding", default_tokenizer_source())
    return source, export(source, tmp_path_factory.mktemp("onnx-embedding"))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_embedding_export_equals_torch_and_the_model_card(embedding_dirs):
    source, folder = embedding_dirs
    assert {"model.onnx", "modules.json", "config_sentence_transformers.json", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()}
    onnx_engine, torch_engine = EmbeddingEngine.load(str(folder)), EmbeddingEngine.load(str(source), dtype="float32")
    assert onnx_engine.info.backend == "onnx" and onnx_engine.info.pooling == "lasttoken"
    assert onnx_engine.dimensions == torch_engine.dimensions
    documents = mixed_texts(24, seed=3, max_words=180)
    onnx_engine.backend.max_batch_tokens = 1200  # mixed lengths over several micro-batches
    ours = onnx_engine.embed(documents)
    assert _cosines(ours, torch_engine.embed(documents)).min() >= 0.9999

    instruction = "Given a web search query, retrieve relevant passages that answer the query"
    queries = ["What is the capital of China?", "Explain gravity"]
    card_inputs = [f"Instruct: {instruction}\nQuery:{q}" for q in queries] + documents[:4]
    expected = reference_embed(str(source), card_inputs, dimensions=32).numpy()
    got = np.concatenate([onnx_engine.embed(queries, instruction=instruction, dimensions=32),
                          onnx_engine.embed(documents[:4], dimensions=32)])
    assert _cosines(got, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_minilm_export_equals_torch(minilm_dir, tmp_path):
    folder = export(minilm_dir, tmp_path / "minilm")
    onnx_engine = EmbeddingEngine.load(str(folder))
    torch_engine = EmbeddingEngine.load(str(minilm_dir), dtype="float32")
    assert onnx_engine.info.pooling == "mean" and onnx_engine.max_length == torch_engine.max_length
    texts = mixed_texts(20, seed=9, max_words=120)
    assert _cosines(onnx_engine.embed(texts), torch_engine.embed(texts)).min() >= 0.9999
