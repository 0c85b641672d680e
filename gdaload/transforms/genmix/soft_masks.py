"""Segmentation masks mixed as GenMix mixed their images: soft masks.

A mixed image is a weighted sum (mixup) or a paste (cutmix) of two rows; its mask is the
same combination of the two rows' one-hot masks, so each pixel's soft mask says how much
of each label the mixed pixel holds, and sums to 1 over the labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gdaload.generators.masks import check_mask
from gdaload.transforms.genmix.record import MixRecord

__all__ = ["mix_masks"]


def mix_masks(
    record: MixRecord, masks: torch.Tensor, num_mask_classes: int | None, like: torch.Tensor
) -> torch.Tensor:
    """The soft masks ``(B, K, H, W)`` of a batch mixed as ``record`` says.

    Args:
        record: How the images were mixed (``GenMix.last_mix``).
        masks: ``(B, H, W)`` integer labels ``0..K-1``, one mask per row of the images.
        num_mask_classes: ``K``, the channels of the soft masks (fixed for the run: a
            batch may hold no pixel of some label).
        like: The image batch: the soft masks get its dtype, size and device.

    Raises:
        ValueError: Without ``num_mask_classes``, or for masks of another dtype, count
            or size, or with labels outside ``0..K-1``.

    Example:
        >>> ident = torch.arange(2)
        >>> record = MixRecord(ident, ident.flip(0), torch.tensor([0.25, 0.25]), None, "real-union")
        >>> soft = mix_masks(record, torch.tensor([[[0]], [[1]]]), 2, torch.zeros(2, 1, 1, 1))
        >>> soft[0, :, 0, 0].tolist()
        [0.75, 0.25]
    """
    if num_mask_classes is None or int(num_mask_classes) < 1:
        raise ValueError(
            "GenMix mixes masks as one-hot soft masks and needs num_mask_classes= (the "
            f"labels 0..K-1 masks may hold, fixed for the run), got {num_mask_classes!r}"
        )
    k = int(num_mask_classes)
    labels = check_mask(
        masks.as_subclass(torch.Tensor), len(like), like.shape[-2:], k, what="GenMix masks"
    )
    dtype = like.dtype if like.dtype.is_floating_point else torch.float32
    one_hot = F.one_hot(labels.to(like.device), k).permute(0, 3, 1, 2).to(dtype)
    if record.pairing == "identity":
        return one_hot
    anchor, partner = record.anchor.to(like.device), record.partner.to(like.device)
    if record.box is None:
        w = record.lam.to(dtype).to(like.device).view(-1, 1, 1, 1)
        return one_hot[anchor] * (1 - w) + one_hot[partner] * w
    height, width = like.shape[-2:]
    rows = torch.arange(height, device=like.device).view(1, -1, 1)
    cols = torch.arange(width, device=like.device).view(1, 1, -1)
    top, bottom, left, right = (e.view(-1, 1, 1) for e in record.box.to(like.device).unbind(1))
    inside = ((rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)).unsqueeze(1)
    return torch.where(inside, one_hot[partner], one_hot[anchor])
