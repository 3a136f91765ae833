"""Settings of the ONNX Runtime backend: the `onnx:` block of a model entry.

Torch-free and onnxruntime-free, so the configuration layer can validate it anywhere. The
dict arrives in `BackendOptions.extra["onnx"]`; `OnnxOptions.from_extra` reads it back.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidInputError

__all__ = ["OnnxOptions", "GraphOptimizationLevel", "RerankOutput"]

GraphOptimizationLevel = Literal["disable", "basic", "extended", "all"]
RerankOutput = Literal["auto", "hidden_state", "logits"]


class OnnxOptions(BaseModel):
    """How ONNX Runtime runs a model folder's `model.onnx`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_file: str = Field(
        default="model.onnx",
        description="The graph to load, relative to the model folder (e.g. onnx/model_quantized.onnx). "
                    "`backend: auto` picks ONNX Runtime only when the folder holds model.onnx.",
    )
    providers: list[str] | None = Field(
        default=None,
        description="ONNX Runtime execution providers in order of preference, e.g. [CUDAExecutionProvider, "
                    "CPUExecutionProvider]. Default: CUDA (then CPU) when the entry's device is cuda or cuda:N, "
                    "else CPU only. A provider this onnxruntime build lacks is refused at load.",
    )
    intra_op_threads: int | None = Field(
        default=None, ge=1,
        description="Threads inside one operator (matrix products). Default: the entry's torch_threads, "
                    "else ONNX Runtime's default (one per physical core).",
    )
    inter_op_threads: int = Field(
        default=1, ge=1,
        description="Threads running independent operators at once; 1 (sequential) suits transformer graphs.",
    )
    graph_optimization_level: GraphOptimizationLevel = Field(
        default="all",
        description="ONNX Runtime graph optimisations applied at load: disable, basic, extended or all.",
    )
    allow_spinning: bool = Field(
        default=True,
        description="Let idle intra-op threads spin for the next operator (ONNX Runtime's default, lowest "
                    "latency); false frees the cores between operators for other replicas on a shared host.",
    )
    rerank_output: RerankOutput = Field(
        default="auto",
        description="Reranker graphs: hidden_state cuts the graph at the final norm and scores "
                    "h . (W[yes] - W[no]) with the lm_head rows read from its initializers (exact, no "
                    "full-vocabulary projection); logits runs the graph as released and reads the yes/no "
                    "logits at the last position. auto: hidden_state when the graph allows it, else logits.",
    )

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> "OnnxOptions":
        """The options from `BackendOptions.extra["onnx"]` (a dict or an OnnxOptions), errors typed."""
        value = extra.get("onnx") or {}
        if isinstance(value, OnnxOptions):
            return value
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid onnx options: {exc}", param="onnx") from exc
