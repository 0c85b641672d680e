"""SeedPlan: sample seeds and label order keyed by (seed, stream tag, epoch, index)."""

import numpy as np
import pytest

from gdaload.seeding import SeedPlan, Stream, derive_rng, derive_seed


def test_sample_seeds_and_label_order_are_pinned_streams() -> None:
    plan = SeedPlan(3)
    assert plan.sample_seed(1, 5) == 6584029948177206076
    assert plan.sample_seed(1, 5) == derive_seed(3, Stream.PLAN_SAMPLE, 1, 5)
    assert plan.label_rng(2).integers(1000, size=3).tolist() == [765, 436, 20]
    assert (
        plan.label_rng(2).integers(1000, size=3).tolist()
        == derive_rng(3, Stream.PLAN_LABELS, 2).integers(1000, size=3).tolist()
    )
    assert plan.sample_seed(0, 0) != SeedPlan(4).sample_seed(0, 0)
    assert repr(plan) == "SeedPlan(3)"


@pytest.mark.reliability
@pytest.mark.parametrize("seed", [-1, 1.5, "0", None])
def test_bad_seeds_are_refused(seed) -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        SeedPlan(seed)


def test_numpy_integers_are_seeds() -> None:
    assert SeedPlan(np.int64(7)).seed == 7 and isinstance(SeedPlan(np.int64(7)).seed, int)
