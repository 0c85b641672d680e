"""Checks of what GenMix is called with: the batch, the synthetic mask and the targets.

Every check raises a ValueError that says what was wrong and how to pass it instead;
:func:`soft_targets` also turns class indices or probability rows into the smoothed
probability rows that GenMix mixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["check_batch", "check_mask", "check_quality", "soft_targets"]


def check_batch(x: Any) -> None:
    """Raise a ValueError unless ``x`` is a floating ``(B, C, H, W)`` tensor."""
    if not torch.is_tensor(x):
        raise ValueError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"x must have shape (B, C, H, W), got {tuple(x.shape)}; "
            "add the batch dimension with x.unsqueeze(0) for a single image"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"x must be a floating-point tensor, got dtype {x.dtype}; mixing integer "
            "images would truncate them, convert first (e.g. x.float() / 255)"
        )


def check_mask(mask: torch.Tensor | Sequence[bool] | None, n: int) -> np.ndarray:
    """The ``(n,)`` synthetic mask as a NumPy bool array; ``None`` means all real."""
    if mask is None:
        return np.zeros(n, dtype=bool)
    mask = mask if torch.is_tensor(mask) else torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise ValueError(
            f"synthetic_mask must be a bool tensor (True = synthetic), got dtype {mask.dtype}; "
            "convert 0/1 flags with mask.bool()"
        )
    if mask.shape != (n,):
        raise ValueError(
            f"synthetic_mask must have shape ({n},), one flag per sample of x, got "
            f"{tuple(mask.shape)}"
        )
    return mask.cpu().numpy()


def check_quality(quality: torch.Tensor | Sequence[float], n: int) -> np.ndarray:
    """Per-row quality scores as an ``(n,)`` float64 array of values in [0, 1].

    Raises:
        ValueError: On another shape, or a value that is not finite or outside [0, 1].

    Example:
        >>> check_quality([0.0, 0.5, 1.0], 3).tolist()
        [0.0, 0.5, 1.0]
    """
    values = quality.detach().cpu() if torch.is_tensor(quality) else quality
    q = np.asarray(values, dtype=np.float64)
    if q.shape != (n,):
        raise ValueError(
            f"quality needs one score per row of the batch: shape ({n},), got {q.shape}; "
            "pass e.g. a realism score or a classifier's confidence in the intended class, "
            "scaled to [0, 1] (any value for real rows)"
        )
    bad = np.flatnonzero(~np.isfinite(q) | (q < 0) | (q > 1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"quality of row {i} is {float(q[i])!r}; scores must be finite and in [0, 1] "
            "(1: keep the synthetic sample nearly pure, 0: mix it as the paper does)"
        )
    return q


def soft_targets(
    target: torch.Tensor | Sequence[Any],
    n: int,
    num_classes: int,
    label_smoothing: float,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Validate ``target`` and return smoothed probability rows ``(n, num_classes)``.

    Args:
        target: ``(n,)`` integer class indices or ``(n, num_classes)`` floating
            probability rows (a tensor, or a sequence of all ints or all rows).
        n: Rows of the batch.
        num_classes: Classes of the soft targets.
        label_smoothing: Smoothing ``s``: rows become ``y * (1 - s) + s / num_classes``.
        device: Device of the result.
        dtype: Floating dtype of the result.

    Raises:
        ValueError: On a wrong number of rows, dtype, shape or class index, or rows
            that are not probabilities.

    Example:
        >>> soft_targets([0, 2], 2, 3, 0.0, torch.device("cpu"), torch.float32)
        tensor([[1., 0., 0.],
                [0., 0., 1.]])
    """
    k = num_classes
    if not torch.is_tensor(target):
        target = _target_from_sequence(target, k)
    if target.shape[0:1] != (n,):
        raise ValueError(
            f"target has {target.shape[0] if target.ndim else 0} rows but x has {n}; "
            "pass one label (or one probability row) per sample"
        )
    if target.ndim == 1:
        if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
            raise ValueError(
                f"1-D target must hold integer class indices, got dtype {target.dtype}; "
                "use target.long() for class indices, or a (B, num_classes) float "
                "tensor for soft labels"
            )
        if n:
            low, high = int(target.min()), int(target.max())
            if low < 0 or high >= k:
                raise ValueError(
                    f"class indices must be in [0, {k - 1}] for num_classes={k}, got values "
                    f"in [{low}, {high}]; check num_classes or the dataset's labels"
                )
        y = torch.zeros(n, k, dtype=dtype, device=device)
        y.scatter_(1, target.to(device=device, dtype=torch.int64).view(-1, 1), 1.0)
    elif target.ndim == 2:
        if not target.is_floating_point():
            raise ValueError(
                f"2-D target must be floating probability rows, got dtype {target.dtype}; "
                "call .float() on one-hot integer targets, or pass a 1-D tensor of "
                "class indices"
            )
        if target.shape[1] != k:
            raise ValueError(
                f"soft target must have shape ({n}, {k}) for num_classes={k}, got "
                f"{tuple(target.shape)}"
            )
        _check_probability_rows(target, k)
        y = target.to(device=device, dtype=dtype)
    else:
        raise ValueError(
            f"target must be 1-D class indices (B,) or 2-D probability rows "
            f"(B, num_classes), got shape {tuple(target.shape)}"
        )
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / k
    return y


def _target_from_sequence(target: Sequence[Any], num_classes: int) -> torch.Tensor:
    """Turn a sequence of all class indices or all probability rows into a tensor.

    An element is a probability row when it has at least one dimension (list, tuple,
    array, tensor) and a class index when it is a scalar; a sequence holding both
    kinds is rejected because the two cannot be stacked without guessing.
    """
    if isinstance(target, (str, bytes)) or not isinstance(target, (Sequence, np.ndarray)):
        raise ValueError(
            f"target must be a tensor or a sequence of labels, got {type(target).__name__}"
        )
    items = list(target)
    if not items:
        return torch.zeros(0, dtype=torch.int64)
    is_row = [(item.ndim if torch.is_tensor(item) else np.ndim(item)) > 0 for item in items]
    if all(is_row):
        lengths = {len(item) for item in items}
        if lengths != {num_classes}:
            raise ValueError(
                f"soft label rows must each have num_classes={num_classes} entries, got "
                f"lengths {sorted(lengths)}"
            )
        return torch.stack([torch.as_tensor(item, dtype=torch.float64) for item in items])
    if any(is_row):
        rows = [i for i, row in enumerate(is_row) if row]
        hard = [i for i, row in enumerate(is_row) if not row]
        raise ValueError(
            f"target mixes class indices (positions {hard[:5]}) with soft label rows "
            f"(positions {rows[:5]}); use one form for the whole batch, e.g. one-hot the "
            "class indices"
        )
    return torch.as_tensor(items)


def _check_probability_rows(target: torch.Tensor, num_classes: int) -> None:
    values = target.detach().to(torch.float64)
    tolerance = max(1e-4, torch.finfo(target.dtype).eps * num_classes)
    sums = values.sum(dim=1)
    # Written so that NaN rows fail too.
    bad = ~((sums - 1.0).abs() <= tolerance) | (values < 0).any(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()[:5].tolist()
        raise ValueError(
            f"soft target rows must be non-negative and sum to 1; rows {rows} sum to "
            f"{[round(float(sums[i]), 4) for i in rows]}. This usually means hard and soft "
            "labels were mixed in one batch: pass either a 1-D tensor of class indices "
            "or a (B, num_classes) tensor of probabilities"
        )
