"""The token-budget micro-batch planner."""

import random

import pytest

from deployments.engine.batching import plan_micro_batches


@pytest.mark.parametrize("seed", range(20))
def test_batches_cover_every_index_once_within_budget(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 600) for _ in range(rng.randint(1, 300))]
    budget, cap, overhead = rng.choice([512, 2048, 8192]), rng.choice([4, 32, 256]), rng.choice([0, 50])
    batches = plan_micro_batches(lengths, max_batch_tokens=budget, max_batch_size=cap, overhead=overhead)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= cap
        assert len(batch) == 1 or len(batch) * (overhead + longest) <= budget
    # Longest first, so each batch pads only up to its own first row.
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


def test_padding_is_small_on_a_mixed_workload():
    rng = random.Random(0)
    lengths = [rng.randint(16, 512) for _ in range(1000)]
    batches = plan_micro_batches(lengths, max_batch_tokens=16384, max_batch_size=256)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded / sum(lengths) < 1.1
    # A fixed-count batcher over the same shuffled inputs pads far more.
    fixed = sum(32 * max(lengths[i : i + 32]) for i in range(0, 1000, 32))
    assert fixed / sum(lengths) > 1.5


def test_an_item_over_budget_runs_alone_and_bad_limits_are_rejected():
    assert plan_micro_batches([10, 5000, 10], max_batch_tokens=100, max_batch_size=8) == [[1], [0, 2]]
    assert plan_micro_batches([], max_batch_tokens=100, max_batch_size=8) == []
    with pytest.raises(ValueError):
        plan_micro_batches([1], max_batch_tokens=0, max_batch_size=8)
