"""The ONNX Runtime backend: a folder's `model.onnx` run with onnxruntime, on CPU or CUDA.

Two kinds of graphs are served:
- reranker graphs in the layout of the public Qwen3-Reranker ONNX releases: inputs
  `input_ids`, `attention_mask`, `position_ids` (int64 [batch, seq]), output `logits`
  ([batch, seq, vocab]);
- embedding graphs whose output is `last_hidden_state` (sentence-transformers' and optimum's
  exports, and `qwen3-search export-onnx --kind embedding`), pooled as the folder's
  sentence-transformers files say.

What makes it exact and fast:
- rows are right-padded with `position_ids = 0..n-1` and a mask over the real tokens, so every
  row is computed at the positions it has alone (the model cards' left padding shifts the
  positions of short rows unless `position_ids` are derived from the mask); with causal
  attention the real tokens never see the pads at all;
- a reranker graph is cut at the input of its `lm_head` product (the final norm output) and the
  score is `h_last . (W[yes] - W[no])`, the two rows taken from the graph's own initializers: the
  full-vocabulary projection at every position, most of the work and memory of the released
  graph at short lengths, is never run. A graph whose head cannot be read (fused or quantized
  beyond DequantizeLinear) is run whole, reading the two logits at each last position;
- rows are sorted by length and cut into micro-batches by a padded-token budget, as in the
  torch backend.

The graph fixes the precision: `BackendOptions.dtype` is not applied (an int8 graph is made by
`export-onnx --quantize int8`), and `dtype` reports what the graph computes in.
"""

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from .backend import BackendOptions, RerankInputs
from .batching import plan_micro_batches
from .errors import InvalidInputError, UnsupportedModelError
from .model_files import EmbeddingModelFiles, read_config
from .onnx_options import OnnxOptions

__all__ = ["OnnxEmbeddingBackend", "OnnxRerankBackend", "load_embedding", "load_reranker", "cut_at_lm_head",
           "LmHeadCut"]

RERANK_INPUTS = ("input_ids", "attention_mask", "position_ids")
EMBEDDING_REQUIRED_INPUTS = ("input_ids", "attention_mask")
EMBEDDING_OPTIONAL_INPUTS = ("position_ids", "token_type_ids")
HIDDEN_STATE_OUTPUTS = ("last_hidden_state", "token_embeddings")
_INTEGER_TYPES = {"int64": np.int64, "int32": np.int32}
_QUANTIZED_OPS = {"MatMulInteger": "int8", "DynamicQuantizeMatMul": "int8", "QLinearMatMul": "int8",
                  "DynamicQuantizeLinear": "int8", "MatMulNBits": "int4"}
_GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# The full-vocabulary path returns batch x seq x vocab floats; keep one micro-batch's logits under this.
_LOGITS_BYTES_PER_BATCH = 512 * 2**20


def default_batch_tokens(on_gpu: bool) -> int:
    """Padded tokens per run; CPU: the torch backend's measured 2048-4096 sweet spot."""
    return 32768 if on_gpu else 4096


# ----- reading and checking a graph -----
@dataclass(frozen=True)
class _Port:
    name: str
    elem_type: str
    """numpy-style name: int64, float32, ..."""
    shape: tuple[int | str | None, ...] | None


def _ports(values: Any, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, _Port]:
    ports = {}
    for value in values:
        if value.name in skip:
            continue
        tensor = value.type.tensor_type
        elem = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "unknown"
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        ports[value.name] = _Port(value.name, elem, shape)
    return ports


def _read_graph(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise UnsupportedModelError(f"{path} does not exist; the ONNX backend needs a model.onnx in the folder")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends on a broken file
        raise UnsupportedModelError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from exc


def _graph_inputs(model: onnx.ModelProto) -> dict[str, _Port]:
    # Old exports list initializers among the inputs; those are weights, not feeds.
    return _ports(model.graph.input, skip={init.name for init in model.graph.initializer})


def _check_inputs(path: Path, inputs: dict[str, _Port], required: Sequence[str], optional: Sequence[str],
                  what: str) -> None:
    missing = [name for name in required if name not in inputs]
    if missing:
        raise UnsupportedModelError(
            f"{path} lacks the input{'s' * (len(missing) > 1)} {', '.join(missing)}: {what} takes "
            f"{', '.join(required)} (int64 [batch, seq]); this graph takes {', '.join(inputs) or 'nothing'}"
        )
    unknown = [name for name in inputs if name not in required and name not in optional]
    if unknown:
        shown = ", ".join(unknown[:4]) + (f" and {len(unknown) - 4} more" if len(unknown) > 4 else "")
        raise UnsupportedModelError(
            f"{path} takes inputs this backend cannot feed: {shown} (a graph exported with a KV cache?); "
            f"export one without (qwen3-search export-onnx)"
        )
    wrong = [f"{p.name} is {p.elem_type}" for p in inputs.values() if p.elem_type not in _INTEGER_TYPES]
    if wrong:
        raise UnsupportedModelError(f"{path}: token inputs must be int64 or int32, but {', '.join(wrong)}")


def _graph_dtype(model: onnx.ModelProto, output: _Port) -> str:
    for node in model.graph.node:
        if node.op_type in _QUANTIZED_OPS:
            return _QUANTIZED_OPS[node.op_type]
    return output.elem_type


# ----- the lm_head cut -----
@dataclass(frozen=True)
class LmHeadCut:
    """Where a causal LM graph's hidden state enters its `lm_head`, and the yes/no rows of that head."""

    hidden_state: str
    """Name of the value the head multiplies: the final norm output, [batch, seq, hidden]."""
    direction: np.ndarray
    """W[yes] - W[no] (plus the bias difference in `offset`), float32 [hidden]."""
    offset: float = 0.0


class _NotCuttable(Exception):
    pass


def _attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


class _Constants:
    """Values of a graph that are fixed at export: initializers and the few ops that reshape them."""

    def __init__(self, model: onnx.ModelProto, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.initializers = {init.name: init for init in model.graph.initializer}
        self.producers = {out: node for node in model.graph.node for out in node.output}

    def value(self, name: str) -> np.ndarray:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name], base_dir=str(self.base_dir))
        node = self.producers.get(name)
        if node is None:
            raise _NotCuttable(f"{name!r} is computed at run time, not a weight")
        if node.op_type == "Constant":
            return numpy_helper.to_array(_attribute(node, "value", None))
        if node.op_type in ("Identity", "Cast"):
            value = self.value(node.input[0])
            if node.op_type == "Cast":
                value = value.astype(onnx.helper.tensor_dtype_to_np_dtype(_attribute(node, "to", 1)))
            return value
        if node.op_type == "Transpose":
            value = self.value(node.input[0])
            perm = _attribute(node, "perm", None)
            return value.transpose(perm) if perm else value.T
        if node.op_type == "DequantizeLinear":
            quantized = self.value(node.input[0]).astype(np.float32)
            scale = self.value(node.input[1]).astype(np.float32)
            zero = self.value(node.input[2]).astype(np.float32) if len(node.input) > 2 and node.input[2] else 0.0
            if np.ndim(scale) == 1 and quantized.ndim == 2:  # per-axis
                axis = _attribute(node, "axis", 1) % 2
                shape = (-1, 1) if axis == 0 else (1, -1)
                scale = scale.reshape(shape)
                zero = np.reshape(zero, shape) if np.ndim(zero) == 1 else zero
            return (quantized - zero) * scale
        raise _NotCuttable(f"the head weight comes from a {node.op_type} node")


def cut_at_lm_head(model: onnx.ModelProto, base_dir: Path, *, yes_id: int, no_id: int,
                   output: str = "logits") -> LmHeadCut:
    """Find the product that makes `output` from the final hidden state and read its yes/no rows.

    Raises `_NotCuttable` (with the reason) for heads it cannot read: the caller then runs the
    whole graph.
    """
    constants = _Constants(model, base_dir)
    node = constants.producers.get(output)
    while node is not None and node.op_type == "Identity":
        node = constants.producers.get(node.input[0])
    if node is None:
        raise _NotCuttable(f"no node produces {output!r}")
    offset = 0.0
    if node.op_type == "MatMul":
        hidden, weight_name = node.input[0], node.input[1]
        weight = constants.value(weight_name)  # [hidden, vocab]
    elif node.op_type == "Gemm":
        if _attribute(node, "transA", 0):
            raise _NotCuttable("the head Gemm transposes its activations")
        hidden = node.input[0]
        weight = constants.value(node.input[1])
        weight = weight.T if _attribute(node, "transB", 0) else weight
        alpha, beta = float(_attribute(node, "alpha", 1.0)), float(_attribute(node, "beta", 1.0))
        weight = weight * alpha
        if len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(constants.value(node.input[2]), (weight.shape[1],)).astype(np.float64)
            offset = beta * float(bias[yes_id] - bias[no_id])
    else:
        raise _NotCuttable(f"{output!r} comes from a {node.op_type} node, not a MatMul or Gemm with the head weight")
    if weight.ndim != 2 or max(yes_id, no_id) >= weight.shape[1]:
        raise _NotCuttable(f"the head weight has shape {weight.shape}, which holds no rows {yes_id} and {no_id}")
    direction = weight[:, yes_id].astype(np.float64) - weight[:, no_id].astype(np.float64)
    return LmHeadCut(hidden_state=hidden, direction=direction.astype(np.float32), offset=offset)


def _subgraph_names(node: onnx.NodeProto) -> set[str]:
    """Outer values read inside an If/Loop/Scan body: the cut must keep their producers too."""
    names: set[str] = set()
    for attribute in node.attribute:
        for graph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
            for inner in graph.node:
                names.update(inner.input)
                names.update(_subgraph_names(inner))
    return names


def end_graph_at(model: onnx.ModelProto, value: str, elem_type: int) -> None:
    """Make `value` the graph's only output and drop every node and weight it does not need (in place)."""
    graph = model.graph
    needed = {value}
    keep = [False] * len(graph.node)
    for index in range(len(graph.node) - 1, -1, -1):  # nodes are stored in topological order
        node = graph.node[index]
        if any(out in needed for out in node.output):
            keep[index] = True
            needed.update(node.input)
            needed.update(_subgraph_names(node))
    for index in range(len(graph.node) - 1, -1, -1):
        if not keep[index]:
            del graph.node[index]
    for index in range(len(graph.initializer) - 1, -1, -1):
        if graph.initializer[index].name not in needed:
            del graph.initializer[index]
    for index in range(len(graph.value_info) - 1, -1, -1):
        if graph.value_info[index].name not in needed:
            del graph.value_info[index]
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(value, elem_type, None))


# ----- sessions -----
def _providers(opts: OnnxOptions, device: str) -> list[Any]:
    wanted = list(opts.providers) if opts.providers is not None else (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"])
    if not wanted:
        raise InvalidInputError("onnx.providers must name at least one execution provider", param="onnx.providers")
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        cuda = any("CUDA" in p for p in missing)
        hint = " (CUDA needs the onnxruntime-gpu package and a visible GPU)" if cuda else ""
        raise InvalidInputError(
            f"execution provider{'s' * (len(missing) > 1)} {', '.join(missing)} asked for but this onnxruntime "
            f"{ort.__version__} offers only {', '.join(available)}{hint}", param="onnx.providers")
    device_id = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    return [(p, {"device_id": device_id}) if p == "CUDAExecutionProvider" else p for p in wanted]


def _session(source: Path | bytes, graph_dir: Path, opts: OnnxOptions, options: BackendOptions
             ) -> ort.InferenceSession:
    settings = ort.SessionOptions()
    settings.graph_optimization_level = _GRAPH_OPTIMIZATION[opts.graph_optimization_level]
    settings.intra_op_num_threads = opts.intra_op_threads or options.threads or 0
    settings.inter_op_num_threads = opts.inter_op_threads
    settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    settings.log_severity_level = 3  # errors only: ORT warns about every pruned input and constant fold
    if not opts.allow_spinning:
        settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # A graph given as bytes finds its external weight files here (an edited graph keeps their references).
    settings.add_session_config_entry("session.model_external_initializers_file_folder_path", str(graph_dir))
    providers = _providers(opts, options.device)
    try:
        session = ort.InferenceSession(source if isinstance(source, bytes) else str(source), settings,
                                       providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        raise UnsupportedModelError(f"ONNX Runtime cannot load {graph_dir}: {type(exc).__name__}: {exc}") from exc
    first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if session.get_providers()[0] != first:
        raise UnsupportedModelError(
            f"ONNX Runtime fell back to {session.get_providers()[0]} instead of {first} (is the GPU visible and "
            f"are its CUDA/cuDNN libraries installed?)")
    return session


def _session_device(session: ort.InferenceSession, device: str) -> str:
    if session.get_providers()[0] == "CUDAExecutionProvider":
        return device if device.startswith("cuda:") else "cuda:0"
    return "cpu"


class _OnnxBackend:
    name = "onnx"
    schedules_batches = False

    def __init__(self, session: ort.InferenceSession, *, device: str, dtype: str, max_length: int | None,
                 max_batch_tokens: int, max_batch_size: int, pad_id: int) -> None:
        self.session: ort.InferenceSession | None = session
        self.device = device
        self.dtype = dtype
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.pad_id = pad_id
        feeds = {i.name: i.type for i in session.get_inputs()}  # ORT may have pruned inputs the graph ignores
        self._feeds = {name: _INTEGER_TYPES[kind.removeprefix("tensor(").removesuffix(")")]
                       for name, kind in feeds.items()}
        self._compute_lock = threading.Lock()

    def _inputs(self, rows: Sequence[Sequence[int]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Right-padded feeds: each row at positions 0..n-1, its pads masked out and never attended to."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max())
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        columns = np.arange(width, dtype=np.int64)
        values = {
            "input_ids": ids,
            "attention_mask": (columns[None, :] < lengths[:, None]).astype(np.int64),
            "position_ids": np.broadcast_to(columns, ids.shape),
            "token_type_ids": np.zeros_like(ids),
        }
        return {name: values[name].astype(kind, copy=False) for name, kind in self._feeds.items()}, lengths

    def _run(self, output: str, rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        if self.session is None:
            raise RuntimeError("the ONNX Runtime backend was shut down")
        feeds, lengths = self._inputs(rows)
        return self.session.run([output], feeds)[0], lengths

    async def check_health(self) -> None:
        # One single-token run off the event loop, without the compute lock: ORT runs concurrent
        # calls safely, and a long batch in progress must not fail the health check.
        await asyncio.to_thread(self._probe)

    def _probe(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        self.session = None


class OnnxEmbeddingBackend(_OnnxBackend):
    """Pooled vectors from a graph's `last_hidden_state`, pooled like the sentence-transformers files say."""

    def __init__(self, session: ort.InferenceSession, files: EmbeddingModelFiles, *, output: str, dimensions: int,
                 **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.pooling = files.pooling
        self.output = output
        self.dimensions = dimensions

    def pool(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.empty((len(token_ids), self.dimensions), dtype=np.float32)
        batches = plan_micro_batches([len(ids) for ids in token_ids], max_batch_tokens=self.max_batch_tokens,
                                     max_batch_size=self.max_batch_size)
        with self._compute_lock:
            for batch in batches:
                out[batch] = self._forward([token_ids[i] for i in batch])
        return out

    async def pool_async(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        return await asyncio.to_thread(self.pool, token_ids)

    def _forward(self, rows: list[Sequence[int]]) -> np.ndarray:
        hidden, lengths = self._run(self.output, rows)
        if hidden.ndim != 3 or hidden.shape[-1] != self.dimensions:
            raise UnsupportedModelError(f"{self.output} has shape {hidden.shape}, not [batch, seq, {self.dimensions}]")
        if self.pooling == "lasttoken":
            return hidden[np.arange(len(rows)), lengths - 1].astype(np.float32)
        if self.pooling == "cls":
            return hidden[:, 0].astype(np.float32)
        mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(np.float32)[..., None]
        return ((hidden.astype(np.float32) * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)).astype(np.float32)

    def _probe(self) -> None:
        self._run(self.output, [[self.pad_id]])


class OnnxRerankBackend(_OnnxBackend):
    """logit(yes) - logit(no) at each last position, from the cut graph's hidden state or the full logits."""

    def __init__(self, session: ort.InferenceSession, *, yes_id: int, no_id: int, cut: LmHeadCut | None,
                 vocab_size: int, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.yes_id = yes_id
        self.no_id = no_id
        self.cut = cut
        self.output_path = "hidden_state" if cut is not None else "logits"
        """Which rerank path runs: the lm_head cut (hidden_state) or the released graph (logits)."""
        self.vocab_size = vocab_size

    @property
    def _run_batch_tokens(self) -> int:
        if self.cut is not None:
            return self.max_batch_tokens
        return max(1, min(self.max_batch_tokens, _LOGITS_BYTES_PER_BATCH // (4 * max(self.vocab_size, 1))))

    def logits(self, groups: Sequence[RerankInputs]) -> list[np.ndarray]:
        """Every document runs as its whole prompt (the graph has no KV-cache inputs to share a prefix)."""
        rows = [group.shared + doc for group in groups for doc in group.documents]
        flat = np.empty(len(rows), dtype=np.float32)
        if rows:
            with self._compute_lock:
                for batch in plan_micro_batches([len(r) for r in rows], max_batch_tokens=self._run_batch_tokens,
                                                max_batch_size=self.max_batch_size):
                    flat[batch] = self._forward([rows[i] for i in batch])
        results, start = [], 0
        for group in groups:
            results.append(flat[start : start + len(group.documents)].copy())
            start += len(group.documents)
        return results

    async def logits_async(self, groups: Sequence[RerankInputs]) -> list[np.ndarray]:
        return await asyncio.to_thread(self.logits, groups)

    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        index = np.arange(len(rows))
        if self.cut is not None:
            hidden, lengths = self._run(self.cut.hidden_state, rows)
            last = hidden[index, lengths - 1].astype(np.float32)
            return (last @ self.cut.direction + np.float32(self.cut.offset)).astype(np.float32)
        logits, lengths = self._run("logits", rows)
        last = logits[index, lengths - 1].astype(np.float32)
        return last[:, self.yes_id] - last[:, self.no_id]

    def _probe(self) -> None:
        self._run(self.cut.hidden_state if self.cut is not None else "logits", [[self.pad_id]])


# ----- loaders -----
def _graph_path(model_dir: Path, opts: OnnxOptions) -> Path:
    path = (model_dir / opts.model_file).resolve()
    if not path.is_file():
        raise UnsupportedModelError(f"{model_dir} holds no {opts.model_file}; the ONNX backend needs the graph there "
                                    "(make one with `qwen3-search export-onnx`)")
    return path


def _max_positions(config_dir: Path) -> int | None:
    try:
        value = read_config(config_dir).get("max_position_embeddings")
    except UnsupportedModelError:
        return None
    return int(value) if value else None


def _batch_tokens(options: BackendOptions, session: ort.InferenceSession) -> int:
    return options.max_batch_tokens or default_batch_tokens(session.get_providers()[0] == "CUDAExecutionProvider")


def load_embedding(model_dir: Path, files: EmbeddingModelFiles, options: BackendOptions) -> OnnxEmbeddingBackend:
    opts = OnnxOptions.from_extra(options.extra)
    path = _graph_path(model_dir, opts)
    model = _read_graph(path)
    _check_inputs(path, _graph_inputs(model), EMBEDDING_REQUIRED_INPUTS, EMBEDDING_OPTIONAL_INPUTS,
                  "an embedding graph")
    outputs = _ports(model.graph.output)
    output = next((name for name in HIDDEN_STATE_OUTPUTS if name in outputs), None)
    if output is None:
        raise UnsupportedModelError(
            f"{path} has no last_hidden_state output (it outputs {', '.join(outputs) or 'nothing'}); an embedding "
            "graph must return the token states [batch, seq, hidden] for the engine to pool")
    port = outputs[output]
    if port.shape is not None and len(port.shape) != 3:
        raise UnsupportedModelError(f"{path}: {output} has rank {len(port.shape)}, not [batch, seq, hidden]")
    config = read_config(files.transformer_dir)
    dimensions = port.shape[-1] if port.shape and isinstance(port.shape[-1], int) and port.shape[-1] else None
    dimensions = dimensions or int(config.get("hidden_size") or config.get("d_model") or 0)
    if not dimensions:
        raise UnsupportedModelError(f"{path}: cannot tell the width of {output} (no static shape, no hidden_size)")
    dtype = _graph_dtype(model, port)
    del model
    session = _session(path, path.parent, opts, options)
    return OnnxEmbeddingBackend(
        session, files, output=output, dimensions=dimensions, device=_session_device(session, options.device),
        dtype=dtype, max_length=_max_positions(files.transformer_dir), max_batch_tokens=_batch_tokens(options, session),
        max_batch_size=options.max_batch_size, pad_id=options.pad_id)


def load_reranker(model_dir: Path, *, yes_id: int, no_id: int, options: BackendOptions) -> OnnxRerankBackend:
    opts = OnnxOptions.from_extra(options.extra)
    path = _graph_path(model_dir, opts)
    model = _read_graph(path)
    _check_inputs(path, _graph_inputs(model), RERANK_INPUTS, (), "a Qwen3-Reranker graph")
    outputs = _ports(model.graph.output)
    if "logits" not in outputs:
        raise UnsupportedModelError(
            f"{path} has no logits output (it outputs {', '.join(outputs) or 'nothing'}); a Qwen3-Reranker graph "
            "returns logits [batch, seq, vocab]")
    port = outputs["logits"]
    if port.shape is not None and len(port.shape) != 3:
        raise UnsupportedModelError(f"{path}: logits has rank {len(port.shape)}, not [batch, seq, vocab]")
    vocab = port.shape[-1] if port.shape and isinstance(port.shape[-1], int) and port.shape[-1] else None
    vocab = vocab or int(read_config(model_dir).get("vocab_size") or 0)
    if vocab and max(yes_id, no_id) >= vocab:
        raise UnsupportedModelError(f"{path}: logits cover {vocab} tokens, but yes/no are ids {yes_id}/{no_id}: "
                                    "the graph does not belong to this tokenizer")
    dtype = _graph_dtype(model, port)

    cut: LmHeadCut | None = None
    if opts.rerank_output != "logits":
        try:
            cut = cut_at_lm_head(model, path.parent, yes_id=yes_id, no_id=no_id)
        except _NotCuttable as exc:
            if opts.rerank_output == "hidden_state":
                raise UnsupportedModelError(f"{path}: cannot cut the graph at its lm_head ({exc}); "
                                            "use onnx.rerank_output: logits") from exc
    if cut is not None:
        elem_type = model.graph.output[[o.name for o in model.graph.output].index("logits")].type.tensor_type.elem_type
        end_graph_at(model, cut.hidden_state, elem_type)
        source: Path | bytes = model.SerializeToString()
    else:
        source = path
    del model
    session = _session(source, path.parent, opts, options)
    return OnnxRerankBackend(
        session, yes_id=yes_id, no_id=no_id, cut=cut, vocab_size=vocab, device=_session_device(session, options.device),
        dtype=dtype, max_length=_max_positions(model_dir), max_batch_tokens=_batch_tokens(options, session),
        max_batch_size=options.max_batch_size, pad_id=options.pad_id)
