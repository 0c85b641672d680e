"""MultiViewShapes: procedural 3-D objects rendered from four views (no download)."""

from gdaload.datasets.multiview.dataset import (
    CLASSES,
    ELEVATION_DEG,
    REVEALING_VIEWS,
    VIEW_AZIMUTHS_DEG,
    VIEW_NAMES,
    MultiViewShapes,
    SingleView,
    lookalikes,
    render_instance,
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
