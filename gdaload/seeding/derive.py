"""Seeds and random generators derived from integer keys, with no global random state.

Seeds are derived with :class:`numpy.random.SeedSequence`, whose hashing makes nearby
keys (epoch 3 vs 4, index 10 vs 11) give unrelated streams. Nothing here touches a
global random state, so a seed never depends on batch size, worker, rank or timing.
The keys of a stream start with its owner's seed and a tag from
:class:`~gdaload.seeding.Stream`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_rng", "derive_seed"]


def derive_seed(*keys: int) -> int:
    """Return a seed in ``[0, 2**63)`` determined only by ``keys``.

    Raises:
        ValueError: If a key is negative.

    Example:
        >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 1, 3)
        True
    """
    if any(int(k) < 0 for k in keys):
        raise ValueError(f"seed keys must be non-negative integers, got {keys}")
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def derive_rng(*keys: int) -> np.random.Generator:
    """A private NumPy generator for the stream named by ``keys``.

    Example:
        >>> int(derive_rng(0, 1).integers(10**6)) == int(derive_rng(0, 1).integers(10**6))
        True
    """
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))
