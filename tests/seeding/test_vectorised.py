"""Vectorised seeds agree with the scalar seed plan, key for key."""

import numpy as np
import pytest

from gdaload import GenerativeLoader, SeedPlan
from gdaload.seeding import derive_seed
from gdaload.seeding.vectorised import derive_seeds, plan_seeds


@pytest.mark.parametrize("prefix", [[0, 0, 0], [2**40 + 5, 0, 3], [7, 0, 2**33], [123456789, 1, 0]])
def test_derive_seeds_matches_derive_seed(prefix: list[int]) -> None:
    rng = np.random.default_rng(0)
    last = np.concatenate(
        [[0, 1, 2**32 - 1, 2**32], rng.integers(0, 2**32, 20), rng.integers(2**32, 2**62, 20)]
    )
    assert derive_seeds(prefix, last).tolist() == [derive_seed(*prefix, int(k)) for k in last]


def test_plan_seeds_and_loader_plan_match_the_seed_plan(seed_generator) -> None:
    plan = SeedPlan(9)
    indices = [0, 5, 1023, 1024, 5000, 3]
    assert plan_seeds(plan, 4, indices) == [plan.sample_seed(4, j) for j in indices]
    assert plan_seeds(plan, 4, []) == []
    batches = [(np.zeros((3, 1, 4, 4), dtype=np.float32), [0, 1, 2])]
    loader = GenerativeLoader(batches, seed_generator, ratio=1.0, seed=9, class_policy="uniform")
    source = loader._source()
    positions = [0, 1, 700, 1500, 2047, 2048]
    assert source.seeds(4, positions) == [plan.sample_seed(4, j) for j in positions]
    with pytest.raises(ValueError, match="non-negative"):
        derive_seeds([-1], [0])
