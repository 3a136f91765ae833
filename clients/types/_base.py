"""Base classes of the wire types."""

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictRequest", "WireModel"]


class StrictRequest(BaseModel):
    """A request body: unknown fields are rejected, so a typo (`dimension`) is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class WireModel(BaseModel):
    """A response body: tolerant of fields added by newer servers."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
