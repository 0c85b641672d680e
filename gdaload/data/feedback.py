"""The ``feedback`` class policy: synthetic class counts from the model's per-class errors.

The training loop hands over one value per class after an epoch (validation recall, or
an error such as ``1 - recall``) for the *next* epoch. The share of class ``c`` in an
epoch's synthetic samples is::

    share_c = floor * uniform_c + (1 - floor) * ((1 - mix) * balance_c + mix * error_c)

where ``uniform_c`` is 1 / (classes present in the real data), ``balance_c`` the share
``class_policy="balance"`` gives the class, and ``error_c`` the class's share of the
smoothed error. Single-epoch recall of a class with two validation images jumps between
0, 0.5 and 1, so the error is an exponential moving average over every feedback given so
far: ``ema = smoothing * ema + (1 - smoothing) * error`` (the first feedback starts it).
Before any feedback, or with zero error everywhere, the policy is ``balance``. Counts
are exact (largest-remainder rounding). The plan of an epoch is a pure function of the
seed, the epoch and the feedback given for epochs up to it, so resumed runs and
distributed ranks that hold the same feedback serve the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "FEEDBACK_FLOOR",
    "FEEDBACK_MIX",
    "FEEDBACK_SMOOTHING",
    "FeedbackHistory",
    "check_feedback",
    "feedback_shares",
    "history_from_state",
    "smoothed_error",
]

#: Share of every epoch's synthetic samples spread uniformly over the present classes,
#: so no class stops being generated when its recall reaches 1.
FEEDBACK_FLOOR = 0.1
#: Weight of the error share against the ``balance`` share.
FEEDBACK_MIX = 0.5
#: Weight of the earlier errors in the moving average.
FEEDBACK_SMOOTHING = 0.5

#: ``((epoch, (error per class, ...)), ...)``, epochs increasing: hashable, so it can
#: be part of a frozen plan.
FeedbackHistory = tuple[tuple[int, tuple[float, ...]], ...]


def check_feedback(values: Any, num_classes: int, kind: str = "recall") -> tuple[float, ...]:
    """Per-class feedback as errors in [0, 1], one per class.

    Args:
        values: One value per class (sequence, array, tensor, or ``{class: value}``).
        num_classes: Classes of the generator.
        kind: ``"recall"`` (higher is better; the error is ``1 - recall``) or
            ``"error"`` (higher is worse).

    Raises:
        ValueError: On another length, a value that is not finite or outside [0, 1],
            or an unknown ``kind``; the message names the value and the fix.

    Example:
        >>> check_feedback([1.0, 0.5, 0.0], 3)
        (0.0, 0.5, 1.0)
    """
    if kind not in ("recall", "error"):
        raise ValueError(f"feedback kind must be 'recall' or 'error', got {kind!r}")
    if isinstance(values, Mapping):
        missing = sorted(set(range(num_classes)) - set(values))
        if missing or len(values) != num_classes:
            raise ValueError(
                f"feedback needs one value for each of the {num_classes} classes 0.."
                f"{num_classes - 1}; missing {missing[:10]}, got keys {sorted(values)[:10]}"
            )
        values = [values[c] for c in range(num_classes)]
    arr = np.asarray(values.tolist() if hasattr(values, "tolist") else values, dtype=np.float64)
    if arr.shape != (num_classes,):
        raise ValueError(
            f"feedback needs one {kind} per class: shape ({num_classes},), got {arr.shape}; "
            "pass e.g. the per-class recall of a validation pass (a class without "
            "validation images can repeat its last value)"
        )
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0) | (arr > 1))
    if bad.size:
        c = int(bad[0])
        raise ValueError(
            f"feedback {kind} of class {c} is {float(arr[c])!r}; every value must be a finite "
            f"number in [0, 1] ({kind} as a fraction, not a percentage or a loss)"
        )
    errors = 1.0 - arr if kind == "recall" else arr
    return tuple(float(e) for e in errors)


def smoothed_error(history: FeedbackHistory, epoch: int) -> tuple[float, ...] | None:
    """The moving average of the errors handed over for epochs up to ``epoch``
    (``None`` when there are none)."""
    ema: np.ndarray | None = None
    for for_epoch, errors in history:
        if for_epoch > epoch:
            break
        e = np.asarray(errors, dtype=np.float64)
        ema = e if ema is None else FEEDBACK_SMOOTHING * ema + (1 - FEEDBACK_SMOOTHING) * e
    return None if ema is None else tuple(float(v) for v in ema)


def feedback_shares(
    real_counts: Sequence[int] | np.ndarray, error: Sequence[float], balance: np.ndarray
) -> np.ndarray:
    """Each class's share of an epoch's synthetic samples under the module's rule.

    Args:
        real_counts: Real samples per class.
        error: Smoothed error per class.
        balance: The ``balance`` policy's counts for the epoch's total.

    Returns:
        Shares summing to 1 (the ``balance`` shares when no present class has an error).

    Example:
        >>> feedback_shares([5, 5], (0.0, 1.0), np.array([5, 5])).round(3).tolist()
        [0.275, 0.725]
    """
    present = (np.asarray(real_counts) > 0).astype(np.float64)
    bal = balance / max(int(balance.sum()), 1)
    err = np.asarray(error, dtype=np.float64) * present
    if err.sum() <= 0:
        return bal
    return FEEDBACK_FLOOR * present / present.sum() + (1 - FEEDBACK_FLOOR) * (
        (1 - FEEDBACK_MIX) * bal + FEEDBACK_MIX * err / err.sum()
    )


def history_from_state(value: Any, num_classes: int) -> FeedbackHistory:
    """Read the ``"feedback"`` entry of a saved state (``[[epoch, [errors...]], ...]``).

    Raises:
        ValueError: If it is not a list of ``[epoch, errors]`` pairs with increasing
            epochs and valid errors.
    """
    out: list[tuple[int, tuple[float, ...]]] = []
    try:
        pairs = [(int(epoch), errors) for epoch, errors in value]
    except (TypeError, ValueError):
        raise ValueError(
            "the state's 'feedback' must be a list of [epoch, [error per class]] pairs; "
            "pass a dict made by state_dict()"
        ) from None
    for epoch, errors in pairs:
        if out and epoch <= out[-1][0] or epoch < 0 or not math.isfinite(epoch):
            raise ValueError(
                f"the state's feedback epochs must increase from 0, got {epoch} after "
                f"{out[-1][0] if out else None}"
            )
        out.append((epoch, check_feedback(errors, num_classes, kind="error")))
    return tuple(out)
