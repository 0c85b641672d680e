"""Class policies: which labels the synthetic samples of an epoch get.

* ``match``: synthetic class frequencies follow the real ones (default).
* ``uniform``: every class present in the real data gets the same number.
* ``balance``: minority classes are filled first, so real + synthetic counts become as
  even as possible (the class-imbalance case of the GenMix paper).
* ``feedback``: ``balance`` mixed with the model's per-class errors the training loop
  hands over each epoch (see :mod:`gdaload.data.feedback`).

Counts are exact (largest-remainder rounding), only their order is random.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gdaload.data.feedback import feedback_shares

__all__ = [
    "CLASS_POLICIES",
    "as_int_labels",
    "check_ratio",
    "dataset_labels",
    "largest_remainder",
    "plan_labels",
    "real_class_counts",
    "synthetic_counts",
]

logger = logging.getLogger(__name__)

CLASS_POLICIES = ("match", "uniform", "balance", "feedback")


#: Largest m_G/m_S: beyond it an epoch's synthetic count stops fitting the plan's
#: integer positions long before anyone could generate it.
MAX_RATIO = 1e6


def check_ratio(ratio: float) -> float:
    """Validate the synthetic-to-real ratio m_G/m_S."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"ratio must be a number (m_G/m_S), got {ratio!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"ratio must be a finite number >= 0 (synthetic samples per real sample), got {ratio!r}"
        )
    if value > MAX_RATIO:
        raise ValueError(
            f"ratio {ratio!r} is too large: at most {MAX_RATIO:g} synthetic samples per real "
            "sample can be planned; for a synthetic-only run, wrap a small real set with a "
            "large but bounded ratio, or use GenerativeDataset over the samples you need"
        )
    return value


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to ``weights`` that sum exactly to ``total``.

    Example:
        >>> largest_remainder(np.array([0.5, 0.3, 0.2]), 4).tolist()
        [2, 1, 1]
    """
    if total == 0 or weights.sum() == 0:
        return np.zeros_like(weights, dtype=np.int64)
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    # Ties go to the lower class index: stable sort keeps the order deterministic.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def synthetic_counts(
    policy: str,
    real_counts: Sequence[int] | np.ndarray,
    total: int,
    error: Sequence[float] | None = None,
) -> np.ndarray:
    """Number of synthetic samples per class.

    Args:
        policy: One of :data:`CLASS_POLICIES`.
        real_counts: Real samples per class (index = label).
        total: Number of synthetic samples to share out.
        error: ``feedback`` only: the smoothed per-class error (``None`` before any
            feedback, when the policy is ``balance``).

    Example:
        >>> synthetic_counts("balance", [8, 2, 0], 6).tolist()
        [0, 6, 0]
    """
    if policy not in CLASS_POLICIES:
        raise ValueError(f"unknown class_policy {policy!r}; valid ones are {list(CLASS_POLICIES)}")
    real = np.asarray(real_counts, dtype=np.int64)
    present = (real > 0).astype(np.float64)
    if total and not present.any():
        raise ValueError("the real data has no labelled sample to base the class policy on")
    if policy == "match":
        return largest_remainder(real.astype(np.float64), total)
    if policy == "uniform":
        return largest_remainder(present, total)
    if policy == "feedback":
        balance = synthetic_counts("balance", real, total)
        if error is None or total == 0:
            return balance
        return largest_remainder(feedback_shares(real, error, balance), total)
    # balance: raise the water level over the smallest classes until `total` is used up.
    classes = np.flatnonzero(real > 0)
    level_counts = real[classes].astype(np.float64)
    lo, hi = level_counts.min(), level_counts.max() + total
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.maximum(mid - level_counts, 0).sum() < total else (lo, mid)
    fill = np.floor(np.maximum(hi - level_counts, 0)).astype(np.int64)
    while fill.sum() > total:  # floor of a level just above the exact one can overshoot
        fill[np.argmax(level_counts + fill)] -= 1
    for _ in range(total - fill.sum()):
        # Lowest total first; on ties the class with fewer real samples, then lower index.
        fill[np.lexsort((np.arange(len(fill)), level_counts, level_counts + fill))[0]] += 1
    out = np.zeros_like(real)
    out[classes] = fill
    return out


def plan_labels(
    policy: str,
    real_counts: Sequence[int] | np.ndarray,
    total: int,
    rng: np.random.Generator,
    error: Sequence[float] | None = None,
) -> np.ndarray:
    """Labels of ``total`` synthetic samples with exact per-class counts, in random order."""
    counts = synthetic_counts(policy, real_counts, total, error)
    labels = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(labels)
    return labels


def as_int_labels(values: Any, source: str = "the dataset's labels") -> np.ndarray:
    """Class labels as a 1-D ``int64`` array, refusing anything that would be cast.

    Floats, booleans and nested or one-hot labels raise instead of being truncated, so
    a class policy never counts classes that are not the real ones.

    Args:
        values: One integer class index per sample (sequence, array or tensor).
        source: How the labels were given, for the error message.

    Raises:
        ValueError: On labels that are not a flat sequence of integers, naming the fix.

    Example:
        >>> as_int_labels([0, 2, 1]).tolist()
        [0, 2, 1]
    """
    arr = np.asarray(values.tolist() if isinstance(values, torch.Tensor) else values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"class policies need integer class labels, one per sample; {source} have shape "
            f"{arr.shape} and dtype {arr.dtype}. Convert them first (e.g. "
            "labels=[int(y) for y in ...], .long() on a tensor, .argmax(-1) on one-hot "
            "labels), or pass labels=[...] explicitly"
        )
    return arr.astype(np.int64)


def dataset_labels(dataset: Any) -> np.ndarray:
    """Integer labels of a map-style dataset, read without decoding images when possible.

    Looks for ``targets`` (torchvision datasets), ``TensorDataset`` tensors and
    ``Subset`` indices; otherwise reads every sample once and takes its second entry.
    """
    if isinstance(dataset, torch.utils.data.Subset):
        # int64 also for no indices, which NumPy would read as floats.
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) >= 2:
        return as_int_labels(dataset.tensors[1])
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return as_int_labels(targets)
    try:
        n = len(dataset)
    except TypeError:
        raise ValueError(
            f"cannot read labels of {type(dataset).__name__} (no len()); pass labels=[...]"
        ) from None
    logger.info("reading %d samples once to count labels; pass labels= to skip this", n)
    labels = []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(
                f"sample {i} of {type(dataset).__name__} is not an (input, label) pair; "
                "pass labels=[...] explicitly"
            )
        labels.append(int(item[1]))
    return as_int_labels(labels)


def real_class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class counts, checking that the generator can produce every real label."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = sorted(set(labels[(labels < 0) | (labels >= num_classes)].tolist()))
        raise ValueError(
            f"the real data has labels {bad[:10]} that the generator cannot produce (it has "
            f"classes 0..{num_classes - 1}); use a generator trained on these classes or "
            "remap the labels"
        )
    return np.bincount(labels, minlength=num_classes)
