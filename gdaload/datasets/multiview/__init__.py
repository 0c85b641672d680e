"""MultiViewShapes: procedural 3-D objects rendered from four views (no download).

:mod:`~gdaload.datasets.multiview.scene` defines the classes, their shapes and the
views; :mod:`~gdaload.datasets.multiview.render` ray casts them;
:mod:`~gdaload.datasets.multiview.dataset` serves them as PyTorch datasets.
"""

from gdaload.datasets.multiview.dataset import MultiViewShapes, SingleView
from gdaload.datasets.multiview.render import render_instance
from gdaload.datasets.multiview.scene import (
    CLASSES,
    ELEVATION_DEG,
    REVEALING_VIEWS,
    VIEW_AZIMUTHS_DEG,
    VIEW_NAMES,
    lookalikes,
)

__all__ = [
    "CLASSES",
    "ELEVATION_DEG",
    "REVEALING_VIEWS",
    "VIEW_AZIMUTHS_DEG",
    "VIEW_NAMES",
    "MultiViewShapes",
    "SingleView",
    "lookalikes",
    "render_instance",
]
