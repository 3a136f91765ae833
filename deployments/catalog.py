"""The served models as the HTTP layer and the pipeline see them: names, kinds, handles."""

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import UnknownModel

__all__ = ["ModelKind", "ModelEntry", "resolve_entry"]

ModelKind = Literal["embedding", "reranker"]


@dataclass(frozen=True)
class ModelEntry:
    """One served model: its request name, weights source, deployment and (once bound) handle."""

    name: str
    kind: ModelKind
    source: str
    deployment: str
    default: bool
    backend: str = "auto"
    """The backend the config asked for (the replica reports the one it resolved to)."""
    accept_token_ids: bool = False
    """Embedding models: whether token-id inputs are taken (`EmbeddingModelConfig.accept_token_ids`)."""
    handle: Any = field(default=None, repr=False, compare=False)
    admits: int | None = None
    """Calls one caller may have in flight to this deployment, at most: max_ongoing_requests x the most
    replicas + max_queued_requests (None: unbounded). Past it a caller refuses at once (429), without
    asking Ray, whose own answer (BackPressureError) costs a round of routing under load."""
    retry_after_s: float = 1.0

    def bound(self, handles: dict[str, Any]) -> "ModelEntry":
        """This entry with the handle of its deployment (None when the deployment was not started)."""
        return replace(self, handle=handles.get(self.deployment))


def resolve_entry(entries: list[ModelEntry], kind: ModelKind, name: str | None) -> ModelEntry:
    """The model a request names (by served name or source), or the default one of that kind."""
    candidates = [e for e in entries if e.kind == kind]
    if name is None:
        return next(e for e in candidates if e.default)
    for entry in candidates:
        if name in (entry.name, entry.source):
            return entry
    known = ", ".join(e.name for e in candidates)
    raise UnknownModel(f"model {name!r} is not served here; {kind} models: {known}", param="model")
