"""Typed errors of the model engine.

The HTTP layer maps each class to one status code in a single table; the engine never
knows about HTTP. Every error says what was wrong and, where it applies, which parameter
(`param`) and which input (`index`) caused it.
"""

__all__ = [
    "EngineError",
    "InvalidInputError",
    "InputTooLongError",
    "ModelLoadError",
    "ModelNotFoundError",
    "UnsupportedModelError",
]


class EngineError(Exception):
    """Base class of every error raised by the engine."""

    def __init__(self, message: str, *, param: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.index = index


class InvalidInputError(EngineError, ValueError):
    """The caller's input is malformed: empty, wrong type, out of range."""


class InputTooLongError(InvalidInputError):
    """An input is longer than the model's maximum length and truncation was refused."""

    # Defaults keep the error picklable (BaseException.__reduce__ re-calls it with the message only).
    def __init__(self, message: str, *, length: int = 0, max_length: int = 0, param: str | None = None,
                 index: int | None = None) -> None:
        super().__init__(message, param=param, index=index)
        self.length = length
        self.max_length = max_length


class ModelLoadError(EngineError):
    """A model could not be loaded."""


class ModelNotFoundError(ModelLoadError):
    """The model folder does not exist and the hub could not provide it."""


class UnsupportedModelError(ModelLoadError):
    """The folder exists but holds no model this engine can serve."""
