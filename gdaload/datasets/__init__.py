"""Datasets shipped with gdaload (no download needed), and a reader of a user's image folder."""

from gdaload.datasets.digits import DIGIT_CLASSES, DigitsSplits, digits_splits, digits_subset
from gdaload.datasets.folder import ClassImageFolder
from gdaload.datasets.multiview import MultiViewShapes, SingleView, lookalikes, render_instance
from gdaload.datasets.segmentation import (
    MASK_CLASSES,
    SegmentationSplits,
    digit_segmentation_splits,
)

__all__ = [
    "ClassImageFolder",
    "DIGIT_CLASSES",
    "DigitsSplits",
    "MASK_CLASSES",
    "MultiViewShapes",
    "SegmentationSplits",
    "SingleView",
    "digit_segmentation_splits",
    "digits_splits",
    "digits_subset",
    "lookalikes",
    "render_instance",
]
