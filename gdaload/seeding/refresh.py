"""Partial refresh: which epoch's sample a synthetic position holds.

With ``refresh=f``, each epoch gives a fraction ``f`` of the synthetic positions a fresh
seed, and the others keep the sample they held in the previous epoch (read back from a
store instead of generated again). Position ``j`` gets a phase ``h_j`` in [0, 1) from a
golden-ratio (Weyl) sequence and is refreshed in epoch ``e >= 1`` when ``e * f + h_j``
passes an integer. So every position is refreshed once every ``1 / f`` epochs on average,
the positions refreshed in one epoch are spread over the whole range of indices, and the
count refreshed per epoch stays within a few samples of ``f`` times the positions (the
sequence is equidistributed with low discrepancy), not just on average.

The epoch a position's sample comes from is a closed-form function of (epoch, index,
refresh): no history is kept, so resumed runs and ranks agree.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_refresh", "source_epochs"]

#: The golden ratio's fractional part: consecutive multiples of it are as evenly spread
#: over [0, 1) as any sequence can be.
_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def check_refresh(refresh: object) -> float:
    """``refresh`` as a float in [0, 1].

    Raises:
        ValueError: If it is not a real number in [0, 1].
    """
    if isinstance(refresh, bool) or not isinstance(refresh, (int, float, np.floating)):
        raise ValueError(
            f"refresh must be a number in [0, 1] (the fraction of synthetic samples made "
            f"fresh each epoch), got {refresh!r}"
        )
    value = float(refresh)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(
            f"refresh must be in [0, 1] (the fraction of synthetic samples made fresh each "
            f"epoch; 1 = all fresh, 0 = epoch 0's samples every epoch), got {refresh!r}"
        )
    return value


def source_epochs(epoch: int, indices: np.ndarray, refresh: float) -> np.ndarray:
    """The epoch whose sample each synthetic index holds in ``epoch``.

    Args:
        epoch: The epoch being served.
        indices: Synthetic indices (non-negative integers).
        refresh: Fraction of positions made fresh per epoch, in [0, 1].

    Returns:
        ``int64`` array, each entry in ``[0, epoch]``; all equal to ``epoch`` when
        ``refresh == 1`` and all 0 when ``refresh == 0``.

    Example:
        >>> source_epochs(3, np.arange(4), 1.0).tolist()
        [3, 3, 3, 3]
        >>> source_epochs(3, np.arange(4), 0.0).tolist()
        [0, 0, 0, 0]
        >>> bool((source_epochs(3, np.arange(100), 0.5) <= 3).all())
        True
    """
    indices = np.asarray(indices, dtype=np.int64)
    if refresh >= 1.0 or epoch == 0:
        return np.full(indices.shape, epoch, dtype=np.int64)
    if refresh <= 0.0:
        return np.zeros(indices.shape, dtype=np.int64)
    phase = np.modf((indices + 1) * _PHI)[0]
    # The last integer k that epoch * refresh + phase has reached, and the first epoch
    # that reached it: the last refresh of the position (or 0 if it was never refreshed).
    crossed = np.floor(epoch * refresh + phase)
    last = np.ceil((crossed - phase) / refresh)
    return np.clip(last, 0, epoch).astype(np.int64)
