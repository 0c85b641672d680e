"""Random draws of GenMix besides ``lam``: partners dealt from a pool, and cutmix boxes.

Both take the transform's private NumPy generator, so that every draw comes from the
stream keyed by ``(seed, epoch, worker)``; the order of draws is part of the result.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["cutmix_boxes", "deal"]


def deal(rng: np.random.Generator, pool: np.ndarray, count: int) -> np.ndarray:
    """``count`` draws from ``pool``, dealt from shuffled copies so use stays balanced.

    Every element of ``pool`` is used once before any is used twice; ``pool`` must not
    be empty and ``count`` must be at least 1.

    Example:
        >>> picks = deal(np.random.default_rng(0), np.array([4, 5, 6]), 7)
        >>> sorted(picks[:3].tolist()), sorted(picks[3:6].tolist()), len(picks)
        ([4, 5, 6], [4, 5, 6], 7)
    """
    copies = -(-count // pool.size)
    return np.concatenate([rng.permutation(pool) for _ in range(copies)])[:count]


def cutmix_boxes(
    rng: np.random.Generator, lam: np.ndarray, height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes of about ``lam`` of the area, their pixel masks and covered fractions.

    A box of side ``sqrt(lam)`` times the image's is centred on a uniform pixel and
    clipped at the border, so the area it actually covers can be smaller than ``lam``.

    Args:
        rng: Generator the centres are drawn from (rows first, then columns).
        lam: ``(B,)`` target area fractions.
        height: Image height in pixels.
        width: Image width in pixels.
        device: Where the masks are built.

    Returns:
        ``(box, inside, area)``: ``(B, 4)`` int64 half-open bounds ``(top, bottom, left,
        right)`` on the CPU, ``(B, 1, height, width)`` bool masks on ``device``, and the
        ``(B,)`` float64 covered fractions on the CPU.

    Example:
        >>> box, inside, area = cutmix_boxes(
        ...     np.random.default_rng(0), np.array([0.25]), 8, 8, torch.device("cpu")
        ... )
        >>> int(inside.sum()) == int(area[0] * 64)
        True
    """
    n = lam.shape[0]
    side = np.sqrt(lam)
    cut_h = (height * side).astype(np.int64)
    cut_w = (width * side).astype(np.int64)
    cy = rng.integers(0, height, size=n)
    cx = rng.integers(0, width, size=n)
    top = np.clip(cy - cut_h // 2, 0, height)
    bottom = np.clip(cy + (cut_h + 1) // 2, 0, height)
    left = np.clip(cx - cut_w // 2, 0, width)
    right = np.clip(cx + (cut_w + 1) // 2, 0, width)
    box = torch.from_numpy(np.stack([top, bottom, left, right], axis=1).astype(np.int64))
    area = torch.from_numpy((bottom - top) * (right - left) / float(height * width))

    # Bounds as (B, 1, 1) columns, compared against every row and column index.
    top_b, bottom_b, left_b, right_b = (edge.view(-1, 1, 1) for edge in box.to(device).unbind(1))
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    inside = (rows >= top_b) & (rows < bottom_b) & (cols >= left_b) & (cols < right_b)
    return box, inside.unsqueeze(1), area.to(torch.float64)
