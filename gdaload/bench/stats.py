"""Summary statistics over seeds: means with Student-t intervals, gains paired by seed."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["mean_ci", "paired_gain"]


def mean_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean.

    Args:
        values: One value per seed.
        confidence: Coverage of the interval.

    Returns:
        ``(mean, half_width)``; the half-width is NaN for fewer than two values.

    Example:
        >>> mean, half = mean_ci([1.0, 2.0, 3.0])
        >>> mean, round(half, 4)
        (2.0, 2.4841)
    """
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) < 2:
        return float(arr.mean()), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))
    return float(arr.mean()), float(half)


def paired_gain(
    values: ArrayLike, baseline: ArrayLike, confidence: float = 0.95
) -> tuple[float, float]:
    """:func:`mean_ci` of the per-seed differences ``values - baseline``.

    Pairing by seed removes the variation that both arms of a seed share (split, order
    of the images, initial weights), so the interval is that of the gain itself.

    Args:
        values: One value per seed.
        baseline: The baseline's value for the same seeds, in the same order.
        confidence: Coverage of the interval.

    Returns:
        ``(mean gain, half_width)``.

    Example:
        >>> round(paired_gain([0.5, 0.7], [0.4, 0.6])[0], 4)
        0.1
    """
    return mean_ci(np.subtract(values, baseline), confidence)
