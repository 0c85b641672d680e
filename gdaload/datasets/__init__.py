"""Datasets shipped with gdaload (no download needed), and a reader of a user's image folder."""

from gdaload.datasets.digits import DIGIT_CLASSES, DigitsSplits, digits_splits
from gdaload.datasets.folder import ClassImageFolder
from gdaload.datasets.multiview import MultiViewShapes, SingleView, lookalikes, render_instance

__all__ = [
    "ClassImageFolder",
    "DIGIT_CLASSES",
    "DigitsSplits",
    "MultiViewShapes",
    "SingleView",
    "digits_splits",
    "lookalikes",
    "render_instance",
]
