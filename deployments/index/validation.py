"""Checks every backend applies to a write before storing it, so both refuse the same uploads the same way."""

from collections.abc import Iterable

from .errors import InvalidIndexRequest

__all__ = ["reject_duplicate_ids"]


def reject_duplicate_ids(ids: Iterable[str]) -> None:
    """InvalidIndexRequest (422) naming the first id that appears twice in one upload.

    One upload is one write of each document: with an id twice, which text should win would be
    an accident of order (and of sharding, where the two copies may land on different shards).
    """
    first_seen: dict[str, int] = {}
    for position, doc_id in enumerate(ids):
        earlier = first_seen.setdefault(doc_id, position)
        if earlier != position:
            raise InvalidIndexRequest(
                f"document id {doc_id!r} appears more than once in this upload (documents {earlier} and "
                f"{position}); send each id once", param="documents", index=position)
