"""Datasets shipped with gdaload: no download needed."""

from gdaload.datasets.digits import DIGIT_CLASSES, DigitsSplits, digits_splits
from gdaload.datasets.multiview import MultiViewShapes, SingleView, lookalikes, render_instance

__all__ = [
    "DIGIT_CLASSES",
    "DigitsSplits",
    "MultiViewShapes",
    "SingleView",
    "digits_splits",
    "lookalikes",
    "render_instance",
]
