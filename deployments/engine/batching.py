"""Micro-batches sized by a token budget.

A transformer's cost is set by the padded batch (rows x longest row), not by the number
of rows. Sorting by length and cutting where the padded size would pass a budget keeps
padding small and memory bounded, whatever the mix of lengths.
"""

from collections.abc import Sequence

__all__ = ["plan_micro_batches"]


def plan_micro_batches(
    lengths: Sequence[int], *, max_batch_tokens: int, max_batch_size: int, overhead: int = 0
) -> list[list[int]]:
    """Indices into `lengths` grouped into micro-batches, longest first.

    Each batch satisfies `len(batch) * (overhead + longest) <= max_batch_tokens` and
    `len(batch) <= max_batch_size`; an item longer than the budget on its own gets a batch of
    one. `overhead` counts tokens every row carries besides its own (a shared cached prefix).
    """
    if max_batch_tokens < 1 or max_batch_size < 1:
        raise ValueError("max_batch_tokens and max_batch_size must be positive")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        if current and (
            len(current) >= max_batch_size or (len(current) + 1) * (overhead + longest) > max_batch_tokens
        ):
            batches.append(current)
            current = []
        if not current:
            longest = lengths[index]
        current.append(index)
    if current:
        batches.append(current)
    return batches
