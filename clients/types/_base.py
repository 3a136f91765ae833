"""Base classes of the wire types."""

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from ._checks import check_text_value

__all__ = ["StrictRequest", "WireModel"]


class StrictRequest(BaseModel):
    """A request body: unknown fields are rejected, so a typo (`dimension`) is an error, not ignored.

    Every string of every field must be valid Unicode: a lone surrogate (`"\\ud800"`, which JSON can
    spell) is refused with the field named, here, once, for every route (see `_checks.py`).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        return check_text_value(value)


class WireModel(BaseModel):
    """A response body: tolerant of fields added by newer servers."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
