"""What :class:`~gdaload.GenerativeAugment` does with a sample's spatial annotations.

A generated variation moves the image's content, so annotations that say where things
are stop describing it. A segmentation mask stays valid when the variation is made
*from* it: a :class:`~gdaload.MaskConditionedGenerator` (SDEdit under the mask) draws
the new image so that the mask keeps describing it. Bounding boxes and keypoints have no
such generator here, and are refused, naming their type.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors

from gdaload.generators.base import Generator
from gdaload.generators.masks import MaskConditionedGenerator, check_mask

__all__ = ["sample_mask", "mask_rows"]

# Annotations no generator here keeps aligned with a variation.
_UNKEPT = tuple(
    t for t in (tv_tensors.BoundingBoxes, getattr(tv_tensors, "KeyPoints", None)) if t is not None
)


def sample_mask(flat_inputs: list[Any], generator: Generator, num_images: int) -> Any:
    """The ``tv_tensors.Mask`` of a sample (or batch) that the variation is made from,
    or ``None`` when the sample has none and the generator needs none.

    Raises:
        ValueError: For bounding boxes or keypoints; for a mask with a generator that is
            not mask-conditioned, or a mask-conditioned generator without a mask; for
            several images or masks in one sample.

    Example:
        >>> sample_mask([torch.zeros(1, 2, 2), 3], object(), 1) is None
        True
    """
    unkept = sorted({type(x).__name__ for x in flat_inputs if isinstance(x, _UNKEPT)})
    if unkept:
        raise ValueError(
            f"GenerativeAugment replaces the image by a generated variation, but the sample "
            f"also holds {', '.join(unkept)} that would no longer match it (the variation "
            "moves the content, and no generator here keeps boxes or keypoints aligned). "
            "Apply GenerativeAugment before the annotations are attached, or use p=0 "
            "for detection data"
        )
    masks = [x for x in flat_inputs if isinstance(x, tv_tensors.Mask)]
    conditioned = isinstance(generator, MaskConditionedGenerator)
    name = type(generator).__name__
    if not masks:
        if conditioned:
            raise ValueError(
                f"GenerativeAugment's {name} makes each image from a segmentation mask, "
                "but the sample holds no tv_tensors.Mask; pass samples such as "
                "(image, tv_tensors.Mask(mask), label)"
            )
        return None
    if not conditioned:
        raise ValueError(
            f"the sample holds a tv_tensors.Mask, but {name} is not mask-conditioned: its "
            "variation would move the content and the Mask would stop describing the "
            "image. Use a MaskConditionedGenerator (gdaload.MaskDiffusion, trained with "
            "gdaload train-segmentation-generator), or p=0 for segmentation data"
        )
    if len(masks) != 1 or num_images != 1:
        raise ValueError(
            f"GenerativeAugment varies one image under one tv_tensors.Mask per sample (or "
            f"batch), got {num_images} images and {len(masks)} masks"
        )
    return masks[0]


def mask_rows(mask: Any, n: int, generator: MaskConditionedGenerator) -> torch.Tensor:
    """``mask`` as ``(n, H, W)`` int64 rows, checked against the generator's size and
    mask labels (a single sample's ``(H, W)`` mask becomes one row)."""
    rows = mask.as_subclass(torch.Tensor)
    if rows.dim() == 2:
        rows = rows.unsqueeze(0)
    return check_mask(
        rows,
        n,
        generator.image_shape[1:],
        generator.num_mask_classes,
        what="the sample's tv_tensors.Mask",
    )
