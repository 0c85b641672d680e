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

from .base import (
    EmptySelectionError,
    FeatureStage,
    SelectedGenerator,
    SelectionStage,
    describe,
)
from .clip import ClipFilter
from .cluster import ClusterSelect
from .realism import RealismScore
from .topk import TopK

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
