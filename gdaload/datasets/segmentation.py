"""Digits with their stroke masks: a segmentation task that needs no download.

Each 8x8 digit of :func:`~gdaload.datasets.digits.digits_splits` gets a mask whose pixel
is ``digit + 1`` where the stroke is (ink at least :data:`STROKE_THRESHOLD`) and 0 on
the background, so the masks carry 11 labels, ``0..10``. The partition is the digits'
one: few labelled masks per class for training, a generator pool that only trains the
mask-aware generators, and a held-out test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from gdaload.datasets.digits import digits_splits

__all__ = [
    "MASK_CLASSES",
    "STROKE_THRESHOLD",
    "SegmentationSplits",
    "digit_segmentation_splits",
    "stroke_masks",
]

#: Mask labels: 0 is the background, ``d + 1`` the stroke of digit ``d``.
MASK_CLASSES = ["background", *(f"stroke {d}" for d in range(10))]
#: Ink (in [0, 1]) from which a pixel belongs to the stroke.
STROKE_THRESHOLD = 0.375


def stroke_masks(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The stroke masks of digit images: ``(B, H, W)`` int64, ``label + 1`` on the stroke.

    Example:
        >>> stroke_masks(torch.tensor([[[[0.0, 0.9]]]]), torch.tensor([3])).tolist()
        [[[0, 4]]]
    """
    stroke = images[:, 0] >= STROKE_THRESHOLD
    return stroke.long() * (labels.long().view(-1, 1, 1) + 1)


@dataclass
class SegmentationSplits:
    """Datasets of ``(image (1, 8, 8) float in [0, 1], mask (8, 8) int64, label)``.

    Attributes:
        train: The few labelled (image, mask) pairs per class of one experiment seed.
        generator_pool: Pairs kept for training the mask-aware generators only.
        test: The held-out pairs.

    Example:
        >>> splits = digit_segmentation_splits(shots=5, seed=1)
        >>> image, mask, label = splits.train[0]
        >>> len(splits.train), mask.shape, int(mask.max()) in (0, int(label) + 1)
        (50, torch.Size([8, 8]), True)
    """

    train: TensorDataset
    generator_pool: TensorDataset
    test: TensorDataset


def _with_masks(data: TensorDataset) -> TensorDataset:
    images, labels = data.tensors
    return TensorDataset(images, stroke_masks(images, labels), labels)


def digit_segmentation_splits(shots: int = 5, seed: int = 0) -> SegmentationSplits:
    """Split the digits into few-shot (image, mask) pairs, a generator pool and a test set.

    Args:
        shots: Labelled pairs per class, drawn by ``seed`` (as in
            :func:`~gdaload.datasets.digits.digits_splits`).
        seed: Experiment seed; the test set and the generator pool do not depend on it.

    Example:
        >>> digit_segmentation_splits(shots=2).train.tensors[1].dtype
        torch.int64
    """
    splits = digits_splits(shots=shots, seed=seed)
    return SegmentationSplits(
        _with_masks(splits.train), _with_masks(splits.generator_pool), _with_masks(splits.test)
    )
