"""The seed plan: the seed of every synthetic sample, from (base seed, epoch, index)."""

from __future__ import annotations

import numpy as np

from gdaload.seeding.derive import derive_rng, derive_seed
from gdaload.seeding.streams import Stream

__all__ = ["SeedPlan"]


class SeedPlan:
    """Seeds of synthetic samples: a pure function of (base seed, epoch, synthetic index).

    Separate streams (sample noise, label order) are keyed by a tag so they never
    collide. The plan is what makes caches, resumed runs and ranks agree on samples.

    Args:
        seed: The base seed, a non-negative integer.

    Raises:
        ValueError: If ``seed`` is not a non-negative integer.

    Example:
        >>> plan = SeedPlan(0)
        >>> plan.sample_seed(epoch=1, index=5) == SeedPlan(0).sample_seed(1, 5)
        True
    """

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)

    def sample_seed(self, epoch: int, index: int) -> int:
        """Seed of synthetic sample ``index`` of ``epoch``."""
        return derive_seed(self.seed, Stream.PLAN_SAMPLE, epoch, index)

    def label_rng(self, epoch: int) -> np.random.Generator:
        """Generator that orders the synthetic labels of ``epoch``."""
        return derive_rng(self.seed, Stream.PLAN_LABELS, epoch)

    def __repr__(self) -> str:
        return f"SeedPlan({self.seed})"
