"""The seed plan: every random choice in gdaload is a pure function of integer keys.

Seeds are derived with :class:`numpy.random.SeedSequence`, whose hashing makes nearby
keys (epoch 3 vs 4, index 10 vs 11) give unrelated streams. Nothing here touches a
global random state, so a sample's seed never depends on batch size, worker, rank or
timing.
"""

from __future__ import annotations

import numpy as np

from gdaload.seeding.streams import Stream

__all__ = ["SeedPlan", "derive_rng", "derive_seed"]


def derive_seed(*keys: int) -> int:
    """Return a seed in ``[0, 2**63)`` determined only by ``keys``.

    Example:
        >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 1, 3)
        True
    """
    if any(int(k) < 0 for k in keys):
        raise ValueError(f"seed keys must be non-negative integers, got {keys}")
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def derive_rng(*keys: int) -> np.random.Generator:
    """A private NumPy generator for the stream named by ``keys``."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


class SeedPlan:
    """Seeds of synthetic samples: a pure function of (base seed, epoch, synthetic index).

    Separate streams (sample noise, label order) are keyed by a tag so they never
    collide. The plan is what makes caches, resumed runs and ranks agree on samples.

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
