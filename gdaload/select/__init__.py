"""Selection of synthetic samples: stages composed onto any generator.

Wrap a generator in :class:`SelectedGenerator` with one or more stages; it over-generates
candidates per ``(label, seed)`` and returns the best survivor, one image per request.

Example:
    >>> import torch
    >>> from gdaload.select import ClusterSelect, RealismScore, SelectedGenerator
    >>> realism = RealismScore(torch.nn.Flatten())
    >>> realism = realism.fit(real_images, real_labels)  # doctest: +SKIP
    >>> stages = [realism, ClusterSelect(torch.nn.Flatten(), keep=0.5)]
    >>> gen = SelectedGenerator(generator, stages, candidates=8)  # doctest: +SKIP
"""

from gdaload.select.clip import ClipFilter
from gdaload.select.cluster import ClusterSelect
from gdaload.select.feature import FeatureStage
from gdaload.select.realism import RealismScore
from gdaload.select.selected import EmptySelectionError, SelectedGenerator
from gdaload.select.stage import SelectionStage, describe
from gdaload.select.topk import TopK

__all__ = [
    "ClipFilter",
    "ClusterSelect",
    "EmptySelectionError",
    "FeatureStage",
    "RealismScore",
    "SelectedGenerator",
    "SelectionStage",
    "TopK",
    "describe",
]
