"""Single views of objects and the views a multi-view generator makes of them.

The tools of the view benchmark (:mod:`gdaload.bench.views`): a :class:`ViewSet` of
single views, :func:`generate_novel_views` for the missing views of each, training
batches that append those views to the real ones (:class:`ViewBatches`), and test
accuracy averaged over generated views (:func:`tta_accuracy`). The generator is told
which view each image shows: images are grouped by view and
:attr:`~gdaload.MultiViewDiffusion.observed_view` is set per group.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gdaload.generators.multiview.generator import MultiViewDiffusion
from gdaload.seeding import Stream, derive_seed
from gdaload.tta import GenerativeTTA

__all__ = ["ViewBatches", "ViewSet", "generate_novel_views", "tta_accuracy"]


@dataclass
class ViewSet:
    """Single views of objects: ``images (N, C, H, W)`` in [0, 1], ``labels (N,)`` and
    ``views (N,)``, the index of the view each image shows."""

    images: torch.Tensor
    labels: torch.Tensor
    views: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dim() != 4 or len(self.labels) != n or len(self.views) != n:
            raise ValueError(
                f"a ViewSet needs images (N, C, H, W) with N labels and N view "
                f"indices, got {tuple(self.images.shape)}, {len(self.labels)} and "
                f"{len(self.views)}"
            )


def _by_observed_view(
    generator: MultiViewDiffusion, views: torch.Tensor
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(view, indices of the images showing it)`` per view, with the generator's
    :attr:`~gdaload.MultiViewDiffusion.observed_view` set to it meanwhile (and restored)."""
    observed = generator.observed_view
    try:
        for view in views.unique().tolist():
            generator.observed_view = view
            yield view, (views == view).nonzero().flatten()
    finally:
        generator.observed_view = observed


def generate_novel_views(
    generator: MultiViewDiffusion, images: torch.Tensor, views: torch.Tensor, seeds: Sequence[int]
) -> torch.Tensor:
    """The ``V - 1`` missing views of each image, from the view it shows.

    Args:
        generator: The multi-view generator; its observed view is restored afterwards.
        images: ``(N, C, H, W)`` single views.
        views: ``(N,)`` index of the view each image shows.
        seeds: One seed per image.

    Returns:
        ``(N, V - 1, C, H, W)`` generated views, on the CPU.
    """
    out = torch.empty(len(images), generator.num_views - 1, *generator.image_shape)
    for _, index in _by_observed_view(generator, views):
        out[index] = generator.novel_views(images[index], [seeds[i] for i in index.tolist()]).cpu()
    return out


class ViewBatches:
    """Shuffled batches of real single views, each followed by the views generated from
    it, with a synthetic mask: ``(x, y, is_generated)``.

    Args:
        data: The real single views.
        novel: ``(N, K, C, H, W)`` generated views of each (``None``: real batches only).
        batch_size: Real images per batch.
        seed: Seeds the order (the same for every arm of a seed).
    """

    def __init__(
        self, data: ViewSet, novel: torch.Tensor | None, batch_size: int, seed: int
    ) -> None:
        self.data, self.novel, self.batch_size, self.seed = data, novel, batch_size, seed
        tensors = (data.images, data.labels) + (() if novel is None else (novel,))
        self._loader = DataLoader(
            TensorDataset(*tensors),
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(derive_seed(seed, Stream.BENCH_ORDER)),
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for x, y, *novel in self._loader:
            mask = torch.zeros(len(y), dtype=torch.bool)
            if novel:
                extra = novel[0].flatten(0, 1)
                x = torch.cat([x, extra])
                y = torch.cat([y, y.repeat_interleave(novel[0].shape[1])])
                mask = torch.cat([mask, torch.ones(len(extra), dtype=torch.bool)])
            yield x, y, mask

    def __len__(self) -> int:
        return len(self._loader)


def tta_accuracy(
    model: nn.Module,
    generator: MultiViewDiffusion,
    test: ViewSet,
    seed: int,
    cache: dict[int, GenerativeTTA] | None = None,
) -> tuple[float, float]:
    """Accuracy on single views and averaged over the real view and its generated views.

    Views of the test images depend on the generator and seed, not on the model: pass
    the same ``cache`` dict for several models and the wrappers kept in it (one per
    observed view) generate them once for all.

    Args:
        model: The classifier.
        generator: Generates the views averaged over.
        test: The test views.
        seed: Seeds the generated views.
        cache: ``{observed view: GenerativeTTA}`` shared between models of a seed.

    Returns:
        ``(single-view accuracy, averaged accuracy)``.
    """
    cache = {} if cache is None else cache
    hits = np.zeros(2)
    for view, index in _by_observed_view(generator, test.views):
        tta = cache.get(view)
        if tta is None:
            tta = cache[view] = GenerativeTTA(
                model, generator, views=generator.num_views - 1, seed=seed, cache_size=len(index)
            )
        tta.model = model
        report = tta.evaluate([(test.images[index], test.labels[index])])
        hits += np.array([report["single"], report["averaged"]]) * report["num_samples"]
    single, averaged = hits / len(test.images)
    return float(single), float(averaged)
