"""Finding a model's files and reading how it wants to be used.

A model is named by a local folder or a hub id. A hub id is first brought into the local
cache with `huggingface_hub.snapshot_download`, so everything after this module loads from a
folder through `from_pretrained`, whatever the source.

Embedding models describe their pooling and prompts in sentence-transformers files
(`modules.json`, `1_Pooling/config.json`, `config_sentence_transformers.json`,
`sentence_bert_config.json`). Reading them is what lets the engine serve any
sentence-transformers model, not only Qwen3.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ModelNotFoundError, UnsupportedModelError
from .prompts import DEFAULT_INSTRUCTION, embedding_query_prompt, instruction_from_query_prompt

__all__ = ["Pooling", "EmbeddingModelFiles", "resolve_model_dir", "source_problem", "read_config",
           "read_embedding_model_files"]

Pooling = Literal["lasttoken", "mean", "cls"]

# Weight formats we never load; skipping them keeps a hub download to what from_pretrained reads.
_IGNORED_HUB_FILES = ["*.bin", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.onnx", "*.gguf", "onnx/*", "openvino/*"]


def _looks_like_path(model: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else (absolute, relative, home, deeper) is a path.
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def resolve_model_dir(model: str) -> Path:
    """The local folder holding `model`, downloading a hub id into the cache when needed."""
    if not isinstance(model, str) or not model.strip():
        raise ModelNotFoundError("model must be a non-empty local folder or hub id", param="model")
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UnsupportedModelError(f"{model!r} is a file, not a model folder", param="model")
        return path.resolve()
    if _looks_like_path(model):
        raise ModelNotFoundError(f"model folder {model!r} does not exist", param="model")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=model, ignore_patterns=_IGNORED_HUB_FILES))
    except Exception as exc:  # the hub raises many types: offline, 404, gated, bad id
        raise ModelNotFoundError(
            f"model {model!r} is not a local folder and could not be fetched from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}); pass a local folder or check network access",
            param="model",
        ) from exc


def _offline(environ: dict[str, str] | None) -> bool:
    """$HF_HUB_OFFLINE of `environ`; of this process (as huggingface_hub read it at import, or now) by default."""
    if environ is None:
        from huggingface_hub import constants

        environ = dict(os.environ)
        if constants.is_offline_mode():
            return True
    return environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def source_problem(model: str, *, environ: dict[str, str] | None = None, probe_timeout_s: float = 5.0) -> str | None:
    """Why `resolve_model_dir(model)` is certain to fail on this machine, in one sentence; None when it may work.

    Downloads nothing: a hub id is looked up in the local cache, and only when it is not there
    (and $HF_HUB_OFFLINE is not set) is the hub asked about it once, within `probe_timeout_s`.
    """
    if not isinstance(model, str) or not model.strip():
        return "the model is empty; give a local folder or a hub id"
    path = Path(model).expanduser()
    if path.exists():
        return None if path.is_dir() else f"{model!r} is a file, not a model folder"
    if _looks_like_path(model):
        return f"the model folder {model!r} does not exist"
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, snapshot_download

    try:
        snapshot_download(repo_id=model, ignore_patterns=_IGNORED_HUB_FILES, local_files_only=True)
        return None  # cached
    except Exception:  # noqa: BLE001 - not cached (or not a valid id): ask the hub below
        pass
    cache = constants.HF_HUB_CACHE
    if _offline(environ):
        return f"hub model {model!r} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE forbids " \
               "downloading it"
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, HFValidationError, RepositoryNotFoundError

    try:
        get_hf_file_metadata(hf_hub_url(model, "config.json"), timeout=probe_timeout_s)
        return None  # the hub has it: the replica downloads it
    except GatedRepoError:
        return f"hub model {model!r} is gated: accept its terms on the hub and set HF_TOKEN"
    except (RepositoryNotFoundError, HFValidationError):
        return f"{model!r} is neither a local folder nor a model on the Hugging Face hub (if private, set HF_TOKEN)"
    except HfHubHTTPError:
        return None  # the hub answered (a missing file, a server error): the replica's to judge
    except Exception as exc:  # noqa: BLE001 - no answer: DNS, refused connection, a proxy error
        if "timeout" in type(exc).__name__.lower():
            return None  # slow, not absent: the replica waits longer
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"hub model {model!r} is not in the Hugging Face cache ({cache}) and the hub ({constants.ENDPOINT}) "
                f"cannot be reached ({type(exc).__name__}: {reason})")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(f"cannot read {path}: {exc}") from exc


def read_config(model_dir: Path) -> dict[str, Any]:
    """The transformers `config.json` of a model folder."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise UnsupportedModelError(f"{model_dir} has no config.json, so it is not a transformers model folder")
    config = _read_json(config_path)
    if not isinstance(config, dict):
        raise UnsupportedModelError(f"{config_path} does not hold a JSON object")
    return config


@dataclass(frozen=True)
class EmbeddingModelFiles:
    """What an embedding model folder says about itself."""

    transformer_dir: Path
    """Folder that `AutoModel.from_pretrained` loads (the first sentence-transformers module)."""
    model_type: str
    pooling: Pooling
    normalize: bool
    """True when the model's pipeline ends in a Normalize module (or is Qwen3)."""
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    max_seq_length: int | None = None
    """sentence-transformers' own cap on input length, when it sets one."""
    default_instruction: str | None = None
    """Set when queries take a Qwen3-style `Instruct: ...\\nQuery:` prompt."""


def _pooling_from_config(config: dict[str, Any], path: Path) -> Pooling:
    modes = {
        "lasttoken": bool(config.get("pooling_mode_lasttoken")),
        "mean": bool(config.get("pooling_mode_mean_tokens")),
        "cls": bool(config.get("pooling_mode_cls_token")),
    }
    others = [k for k in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                          "pooling_mode_weightedmean_tokens") if config.get(k)]
    chosen = [name for name, on in modes.items() if on]
    if others or len(chosen) != 1:
        raise UnsupportedModelError(
            f"{path}: pooling {chosen + others} is not supported; exactly one of lasttoken, mean or cls is"
        )
    return chosen[0]  # type: ignore[return-value]


def read_embedding_model_files(model_dir: Path) -> EmbeddingModelFiles:
    """Pooling, normalisation, prompts and length limit of an embedding model folder."""
    modules_path = model_dir / "modules.json"
    if not modules_path.is_file():
        config = read_config(model_dir)
        model_type = str(config.get("model_type", ""))
        if not model_type.startswith("qwen3"):
            raise UnsupportedModelError(
                f"{model_dir} is neither a sentence-transformers folder (no modules.json) nor a Qwen3 model "
                f"(model_type {model_type!r}); cannot tell how to pool it"
            )
        return EmbeddingModelFiles(
            transformer_dir=model_dir,
            model_type=model_type,
            pooling="lasttoken",
            normalize=True,
            prompts={"query": embedding_query_prompt(DEFAULT_INSTRUCTION), "document": ""},
            default_instruction=DEFAULT_INSTRUCTION,
        )

    modules = _read_json(modules_path)
    if not isinstance(modules, list) or not modules:
        raise UnsupportedModelError(f"{modules_path} lists no modules")
    transformer_dir: Path | None = None
    pooling: Pooling | None = None
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        module_dir = model_dir / str(module.get("path", ""))
        if kind == "Transformer" and transformer_dir is None:
            transformer_dir = module_dir
        elif kind == "Pooling":
            pooling = _pooling_from_config(_read_json(module_dir / "config.json"), module_dir)
        elif kind == "Normalize":
            normalize = True
        else:
            raise UnsupportedModelError(f"{modules_path}: module type {module.get('type')!r} is not supported")
    if transformer_dir is None or pooling is None:
        raise UnsupportedModelError(f"{modules_path} needs a Transformer and a Pooling module")

    config = read_config(transformer_dir)
    st_config_path = model_dir / "config_sentence_transformers.json"
    st_config = _read_json(st_config_path) if st_config_path.is_file() else {}
    prompts = {str(k): str(v) for k, v in (st_config.get("prompts") or {}).items()}
    bert_config_path = transformer_dir / "sentence_bert_config.json"
    max_seq_length = _read_json(bert_config_path).get("max_seq_length") if bert_config_path.is_file() else None
    model_type = str(config.get("model_type", ""))

    default_instruction = instruction_from_query_prompt(prompts.get("query", ""))
    if default_instruction is None and model_type.startswith("qwen3") and pooling == "lasttoken" and not prompts:
        default_instruction = DEFAULT_INSTRUCTION
        prompts = {"query": embedding_query_prompt(DEFAULT_INSTRUCTION), "document": ""}
    return EmbeddingModelFiles(
        transformer_dir=transformer_dir,
        model_type=model_type,
        pooling=pooling,
        # Qwen3-Embedding is defined with L2 normalisation even when a folder omits the module.
        normalize=normalize or model_type.startswith("qwen3"),
        prompts=prompts,
        default_prompt_name=st_config.get("default_prompt_name"),
        max_seq_length=int(max_seq_length) if max_seq_length else None,
        default_instruction=default_instruction,
    )
