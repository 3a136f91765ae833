"""Turn a transformers model folder into a folder the ONNX Runtime backend serves.

    qwen3-search export-onnx MODEL_DIR OUT_DIR [--kind reranker|embedding] [--quantize int8]
    python -m deployments.engine.onnx_export MODEL_DIR OUT_DIR [...]

- reranker: the layout of the public Qwen3-Reranker ONNX releases: `model.onnx` taking
  `input_ids`, `attention_mask`, `position_ids` (int64 [batch, seq]) and returning `logits`
  ([batch, seq, vocab]), with config.json and the tokenizer files beside it;
- embedding: `model.onnx` returning `last_hidden_state` (plus `position_ids` for Qwen3,
  `token_type_ids` for BERT-style models), with the sentence-transformers files (pooling,
  prompts, normalisation), config.json and the tokenizer copied from the source folder.

`--quantize int8` applies ONNX Runtime's dynamic quantization to the MatMul weights (int8
weights, activations quantized per run); the embedding table and the reranker's lm_head
stay float32, so the backend still reads exact yes/no head rows. The graph is checked
against torch on a short batch before the command returns.
"""

import argparse
import inspect
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import InvalidInputError, UnsupportedModelError
from .model_files import read_config, read_embedding_model_files, resolve_model_dir

__all__ = ["ExportKind", "ExportResult", "export_onnx", "main"]

ExportKind = Literal["reranker", "embedding"]
Quantization = Literal["int8"]

# Weight files of the source folder that the ONNX folder does not need (the graph holds the weights).
_SKIPPED = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.gguf",
            "*.onnx", "*.onnx.data", "*.onnx_data", "onnx", "openvino", ".git", ".cache")
_CAUSAL_MODEL_TYPES = ("qwen2", "qwen3")
# torch writes weights beside the graph once they pass the protobuf limit; below it, one file.
_EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    kind: ExportKind
    inputs: list[str]
    output: str
    quantized: str | None
    max_abs_diff: float
    """Largest |ONNX Runtime - torch| over the checked batch (logits or hidden states)."""


def detect_kind(model_dir: Path) -> ExportKind:
    """embedding for sentence-transformers folders (Qwen3-Embedding ships one), reranker otherwise."""
    return "embedding" if (model_dir / "modules.json").is_file() else "reranker"


def _traceable(model: Any, output: str) -> Any:
    """The forward pass to trace: named tensor inputs only, one tensor out (no cache, no dict)."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    position_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
                    ) -> torch.Tensor:
            kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
            if position_ids is not None:
                kwargs["position_ids"] = position_ids
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            if output == "logits":
                kwargs["use_cache"] = False
            result: torch.Tensor = getattr(self.model(**kwargs), output)
            return result

    return Graph().eval()


def _embedding_inputs(model: Any, model_type: str) -> list[str]:
    accepted = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if model_type.startswith(_CAUSAL_MODEL_TYPES) and "position_ids" in accepted:
        names.append("position_ids")
    if "token_type_ids" in accepted and getattr(model.config, "type_vocab_size", None):
        names.append("token_type_ids")
    return names


def _sample(tokenizer: Any, inputs: list[str], vocab_size: int) -> dict[str, Any]:
    """Two rows of different lengths, right-padded, as the backend feeds them."""
    import torch

    texts = ["What is the capital of China? The capital of China is Beijing.",
             "Gravity is a force that attracts two bodies towards each other; it gives weight to objects."]
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"][: 24 - 7 * i] for i, text in enumerate(texts)]
    rows = [[min(t, vocab_size - 1) for t in row] for row in rows]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
              "position_ids": torch.arange(width).expand(len(rows), -1).contiguous()}
    return {name: values[name] for name in inputs}


def _copy_side_files(source: Path, out_dir: Path) -> None:
    shutil.copytree(source, out_dir, ignore=shutil.ignore_patterns(*_SKIPPED), dirs_exist_ok=True)


def _quantize_int8(fp32_path: Path, out_path: Path, exclude_output: str | None) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    exclude = [node.name for node in graph.node if exclude_output in node.output] if exclude_output else []
    size = sum(p.stat().st_size for p in fp32_path.parent.iterdir())
    quantize_dynamic(fp32_path, out_path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     nodes_to_exclude=exclude, use_external_data_format=size > _EXTERNAL_DATA_BYTES,
                     per_channel=True, reduce_range=False)


def _max_abs_diff(out_dir: Path, graph_inputs: list[str], output: str, sample: dict[str, Any], expected: Any,
                  mask: Any) -> float:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if names != graph_inputs or [o.name for o in session.get_outputs()] != [output]:
        raise UnsupportedModelError(f"the exported graph takes {names} and returns "
                                    f"{[o.name for o in session.get_outputs()]}, not {graph_inputs} -> {output}")
    feeds = {name: sample[name].numpy() for name in graph_inputs}
    got = session.run([output], feeds)[0]
    real = mask.numpy().astype(bool)  # right pads are never read by the backend
    return float(np.abs(got[real] - expected.numpy()[real]).max())


def export_onnx(model: str | Path, out_dir: str | Path, *, kind: ExportKind | None = None,
                quantize: Quantization | None = None, opset: int | None = None) -> ExportResult:
    """Export `model` (a folder or hub id) to `out_dir`; returns what was written and how close it is."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    if quantize not in (None, "int8"):
        raise InvalidInputError(f"quantize must be int8 or none, not {quantize!r}", param="quantize")
    model_dir = resolve_model_dir(str(model))
    out = Path(out_dir)
    if out.resolve() == model_dir.resolve():
        raise InvalidInputError("OUT_DIR must differ from MODEL_DIR", param="out_dir")
    kind = kind or detect_kind(model_dir)
    if kind == "embedding":
        files = read_embedding_model_files(model_dir)
        source_dir, output = files.transformer_dir, "last_hidden_state"
        network = AutoModel.from_pretrained(str(source_dir), dtype=torch.float32, attn_implementation="sdpa")
        inputs = _embedding_inputs(network, files.model_type)
    elif kind == "reranker":
        config = read_config(model_dir)
        if not str(config.get("model_type", "")).startswith(_CAUSAL_MODEL_TYPES):
            raise UnsupportedModelError(f"{model_dir} is a {config.get('model_type')!r} model, not a Qwen3 reranker")
        source_dir, output = model_dir, "logits"
        network = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="sdpa")
        inputs = list(("input_ids", "attention_mask", "position_ids"))
    else:
        raise InvalidInputError(f"kind must be reranker or embedding, not {kind!r}", param="kind")
    network.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(source_dir))
    sample = _sample(tokenizer, inputs, int(network.config.vocab_size))
    graph = _traceable(network, output)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    with torch.inference_mode():
        expected = graph(**sample)

    out.mkdir(parents=True, exist_ok=True)
    _copy_side_files(model_dir, out)
    with tempfile.TemporaryDirectory(prefix="onnx-export-", dir=out) as scratch:
        fp32_path = (Path(scratch) if quantize else out) / "model.onnx"
        # Inputs are passed by keyword and named by the exporter after forward()'s parameters.
        program = torch.onnx.export(
            graph, (), None, kwargs=sample, output_names=[output], opset_version=opset, dynamo=True,
            dynamic_shapes={name: {0: batch, 1: seq} for name in sample}, verbose=False,
        )
        assert program is not None, "the dynamo exporter returns the program when f is None"
        weight_bytes = sum(p.numel() * p.element_size() for p in network.parameters())
        program.save(str(fp32_path), external_data=weight_bytes > _EXTERNAL_DATA_BYTES)
        del program
        if quantize == "int8":
            _quantize_int8(fp32_path, out / "model.onnx", exclude_output=output if kind == "reranker" else None)
    diff = _max_abs_diff(out, inputs, output, sample, expected, sample["attention_mask"])
    return ExportResult(out_dir=out, kind=kind, inputs=inputs, output=output, quantized=quantize, max_abs_diff=diff)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="transformers / sentence-transformers folder (or hub id) to export")
    parser.add_argument("out_dir", help="folder to write model.onnx and the tokenizer/config files into")
    parser.add_argument("--kind", choices=["reranker", "embedding"],
                        help="default: embedding when the folder has modules.json, else reranker")
    parser.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization of the MatMul weights")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")


def run(args: argparse.Namespace) -> int:
    import logging
    import warnings

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=FutureWarning)
    result = export_onnx(args.model_dir, args.out_dir, kind=args.kind, quantize=args.quantize, opset=args.opset)
    precision = result.quantized or "float32"
    print(f"wrote {result.kind} ONNX model ({precision}) to {result.out_dir}: inputs {', '.join(result.inputs)} -> "
          f"{result.output}; max |onnxruntime - torch| on a check batch: {result.max_abs_diff:.2e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.engine.onnx_export",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
